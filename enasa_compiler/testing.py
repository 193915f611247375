"""Assertions for users' own test suites: plans they compile or commit must validate.

A project that compiles groups of subnets (or keeps plans in its repository) wants
its tests to fail, naming every violation, when a plan breaks the hardware's rules
or no longer matches its models. The helpers raise a plain :class:`AssertionError`,
so they work in pytest, unittest or a script, and importing this module does not
import pytest.

>>> from enasa_compiler.testing import assert_plan_valid, compile_and_check
>>> def test_group_compiles():  # doctest: +SKIP
...     compile_and_check(["a.onnx", "b.onnx"], mode="resident")
>>> def test_committed_plan():  # doctest: +SKIP
...     assert_plan_valid("plans/group.plan.json", models=["a.onnx", "b.onnx"])
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from enasa_compiler._text import plural
from enasa_compiler.plan import Plan

logger = logging.getLogger(__name__)

__all__ = ["assert_plan_valid", "compile_and_check"]


def _label(plan: Plan | dict[str, Any] | str | Path) -> str:
    if isinstance(plan, str | Path):
        return f"plan {plan}"
    if isinstance(plan, Plan):
        target = plan.target.get("name", "?") if isinstance(plan.target, dict) else "?"
        return f"plan of {plural(len(plan.subnets), 'subnet')} for target '{target}'"
    return "plan"


def assert_plan_valid(
    plan: Plan | dict[str, Any] | str | Path,
    models: Sequence[Any] | None = None,
    *,
    target: Any = None,
    initial_state: Any = None,
) -> None:
    """Fail with every violation, one per line, unless the plan validates.

    Args:
        plan: a :class:`~enasa_compiler.plan.Plan`, its parsed JSON, or a plan file.
        models: the subnets' source models, in subnet order (what
            :func:`~enasa_compiler.validation.validator.validate` takes); when given, the plan
            must also be the one these models compile to.
        target: the target the plan was made for (needed with ``models`` when it is
            not a shipped preset).
        initial_state: the previous plan, for an online plan checked with ``models``.

    Raises:
        AssertionError: the plan has violations; the message counts them and lists
            each as ``kind: message``.
        InputError: the plan file or a model file cannot be read (not an assertion:
            there was nothing to check).

    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this helper's
    from enasa_compiler.validation.validator import validate

    violations = validate(plan, models=models, target=target, initial_state=initial_state)
    if violations:
        against = " against its models" if models is not None else ""
        lines = "\n".join(f"  {violation}" for violation in violations)
        raise AssertionError(f"{_label(plan)} is not valid{against}: "
                             f"{plural(len(violations), 'violation')}\n{lines}")


def compile_and_check(
    models: Sequence[Any] | str | Path,
    target: Any = "neurosim-22nm",
    **compile_options: Any,
) -> Plan:
    """Compile a group, assert the plan validates against its models, and return it.

    Args:
        models: the group's ONNX subnets (files, ``onnx.ModelProto`` or
            ``onnx_ir.Model``), or one file.
        target: a preset name, a target file or a
            :class:`~enasa_compiler.targets.Target`.
        **compile_options: passed to :func:`enasa_compiler.compile` (``mode``,
            ``solver``, ``batch``, ``duplicate``...).

    Returns:
        The plan, for the test to check further (makespan, crossbars...).

    Raises:
        AssertionError: the compiled plan has violations (a compiler bug), listed.
        InputError: the models, target or options are bad input.

    """
    __tracebackhide__ = True
    from enasa_compiler.pipeline import compile as compile_group

    # One list for both steps: an iterator would be used up by the compile.
    sources = [models] if isinstance(models, str | Path) else list(models)
    plan = compile_group(sources, target, **compile_options)
    assert_plan_valid(plan, models=sources, target=target,
                      initial_state=compile_options.get("initial_state"))
    return plan
