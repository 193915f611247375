"""Compile time split by stage: frontend, graph passes, lowering, mapping, cost."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from enasa_compiler.passes.mapping import crossbars_needed
from enasa_compiler.pipeline import STAGES, compile_detailed
from enasa_compiler.plan import Plan
from enasa_compiler.targets import Target
from enasa_compiler.validation.validator import validate

__all__ = ["STAGES", "time_compile_stages"]


def time_compile_stages(
    files: Sequence[Path], target: Target, *, mode: str = "auto", batch: int = 1,
    solver: str = "ops", duplicate: str | int = "off", images: int = 10_000,
) -> tuple[Plan, dict[str, Any]]:
    """Compile ``files``, time each stage, and validate the plan.

    Returns:
        The plan and a row: ``<stage>_s`` per stage, ``compile_s`` (their sum),
        ``validate_s``, and the plan's headline figures (``pipeline_*``: the
        pipelined run of ``images`` images).

    Raises:
        AssertionError: the plan does not validate (a compiler bug).

    """
    result = compile_detailed(files, target, mode=mode, batch=batch, solver=solver,
                              duplicate=duplicate, images=images)
    plan = result.plan
    started = time.perf_counter()
    violations = validate(plan)
    validate_s = time.perf_counter() - started
    assert not violations, [str(v) for v in violations[:3]]
    row: dict[str, Any] = {f"{stage}_s": result.stage_s[stage] for stage in STAGES}
    row["compile_s"] = sum(result.stage_s.values())
    row["validate_s"] = validate_s
    row.update(mode=plan.mode, operators=len(plan.operators),
               crossbars_needed=crossbars_needed(result.program),
               crossbars_used=plan.totals.crossbars_used,
               makespan_ns=plan.totals.makespan_ns, energy_pj=plan.totals.energy_pj,
               utilization=plan.totals.utilization,
               allocated_utilization=plan.totals.allocated_utilization,
               cell_writes=plan.totals.cell_writes, **plan.dedup)
    if plan.pipeline is not None:
        pipe = plan.pipeline.totals
        row.update(pipeline_makespan_ns=pipe.makespan_ns, pipeline_ii_ns=pipe.ii_ns,
                   pipeline_energy_pj=pipe.energy_pj,
                   pipeline_utilization=pipe.utilization,
                   pipeline_allocated_utilization=pipe.allocated_utilization)
    return plan, row
