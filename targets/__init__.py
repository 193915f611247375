"""ReRAM targets: typed target files, presets and the cost model."""

from __future__ import annotations

from enasa_compiler.targets.cost import EventCost, digital_cost, mvm_cost, program_cost
from enasa_compiler.targets.target import Target, list_presets, load_target, target_from_dict

__all__ = [
    "EventCost",
    "Target",
    "digital_cost",
    "list_presets",
    "load_target",
    "mvm_cost",
    "program_cost",
    "target_from_dict",
]
