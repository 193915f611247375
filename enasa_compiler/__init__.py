"""enasa-compiler: compile groups of NAS subnets onto ReRAM compute-in-memory crossbars.

The public API mirrors the ``enasa`` command line:

>>> plan = enasa_compiler.compile(["a.onnx", "b.onnx"], "neurosim-22nm")  # doctest: +SKIP
>>> enasa_compiler.validate(plan)  # doctest: +SKIP
[]

The names below are imported on first use, so ``import enasa_compiler.passes`` (or
the CLI's ``--help``) does not pay for the whole pipeline.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "EnasaError": "enasa_compiler.errors",
    "InputError": "enasa_compiler.errors",
    "UnsupportedModelError": "enasa_compiler.errors",
    "Plan": "enasa_compiler.plan",
    "compile": "enasa_compiler.pipeline",
    "compile_detailed": "enasa_compiler.pipeline",
    "Violation": "enasa_compiler.validation.validator",
    "validate": "enasa_compiler.validation.validator",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'enasa_compiler' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
