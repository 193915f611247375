"""Compile time split by stage: frontend, graph passes, lowering, mapping, cost."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from enasa_compiler.frontend import load_group
from enasa_compiler.passes.duplicate import apply_duplication
from enasa_compiler.passes.lower import lower
from enasa_compiler.passes.mapping import crossbars_needed
from enasa_compiler.pipeline import assemble_plan, build_group_model, map_program
from enasa_compiler.plan import Plan
from enasa_compiler.targets import Target
from enasa_compiler.validator import validate

__all__ = ["STAGES", "time_compile_stages"]

# The stages of ``enasa compile`` in the order they run; ``cost`` prices every
# operator and puts the plan together.
STAGES = ("frontend", "passes", "lower", "mapping", "cost")


def time_compile_stages(
    files: Sequence[Path], target: Target, *, mode: str = "auto", batch: int = 1,
    solver: str = "ops", duplicate: str | int = "off",
) -> tuple[Plan, dict[str, Any]]:
    """Compile ``files`` stage by stage, timing each, and validate the plan.

    Returns:
        The plan and a row: ``<stage>_s`` per stage, ``compile_s`` (their sum),
        ``validate_s``, and the plan's headline figures.

    Raises:
        AssertionError: the plan does not validate (a compiler bug).

    """
    clock = [time.perf_counter()]
    subnets = load_group(files, batch=batch)
    clock.append(time.perf_counter())
    group, dedup = build_group_model(subnets)
    clock.append(time.perf_counter())
    program = apply_duplication(lower(group, target), target, duplicate, mode)
    clock.append(time.perf_counter())
    outcome = map_program(program, target, solver=solver, mode=mode)
    clock.append(time.perf_counter())
    plan = assemble_plan(program, outcome.schedule, target, subnets, dedup,
                         outcome.solver, outcome.bounds)
    clock.append(time.perf_counter())
    violations = validate(plan)
    validate_s = time.perf_counter() - clock[-1]
    assert not violations, [str(v) for v in violations[:3]]
    row: dict[str, Any] = {f"{stage}_s": clock[i + 1] - clock[i]
                           for i, stage in enumerate(STAGES)}
    row["compile_s"] = clock[-1] - clock[0]
    row["validate_s"] = validate_s
    row.update(mode=plan.mode, operators=len(plan.operators),
               crossbars_needed=crossbars_needed(program),
               crossbars_used=plan.totals.crossbars_used,
               makespan_ns=plan.totals.makespan_ns, energy_pj=plan.totals.energy_pj,
               utilization=plan.totals.utilization,
               allocated_utilization=plan.totals.allocated_utilization,
               cell_writes=plan.totals.cell_writes, **dedup)
    return plan, row
