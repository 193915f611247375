"""ReRAM targets: target files and presets, cost model, power/area sums, executor.

The executor's names (``execute_plan`` and its helpers) are imported on first use, so
importing the targets does not pay for onnxruntime.
"""

from __future__ import annotations

import importlib
from typing import Any

from enasa_compiler.targets import area, power, throughput
from enasa_compiler.targets.cost import EventCost, digital_cost, mvm_cost, program_cost
from enasa_compiler.targets.target import Target, list_presets, load_target, target_from_dict

_EXECUTOR_NAMES = (
    "ExecutionError",
    "ExecutionResult",
    "accuracy",
    "compare_with_onnxruntime",
    "execute_plan",
    "onnxruntime_outputs",
    "top1_agreement",
)

__all__ = [
    "EventCost",
    "Target",
    "area",
    "digital_cost",
    "list_presets",
    "load_target",
    "mvm_cost",
    "power",
    "program_cost",
    "target_from_dict",
    "throughput",
    *_EXECUTOR_NAMES,
]


def __getattr__(name: str) -> Any:
    if name not in _EXECUTOR_NAMES:
        raise AttributeError(f"module 'enasa_compiler.targets' has no attribute '{name}'")
    value = getattr(importlib.import_module("enasa_compiler.targets.executor"), name)
    globals()[name] = value
    return value
