"""Where OPS's ranking matters: a chip too small for the group (issue #18, section 4).

In resident mode every operator has its crossbars, so the ranking of conflicting
operators changes nothing (the FCFS ablation of (a) is 1.00x). On a capacity-limited
target (``edge``) the group is mapped dynamically and pipelined in segments: the
ranking decides which operators share a segment, hence how many tiles are rewritten
on every pass and how many activations cross segments (off chip when they overflow
the buffer). This module compiles the same groups with OPS and with first come,
first served and reports makespan, writes per pass and off-chip bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from enasa_compiler.pipeline import compile_detailed
from enasa_compiler.plan import Plan
from enasa_compiler.targets import Target

from .systems import checked_plan, pipeline_energy_pj

logger = logging.getLogger(__name__)

__all__ = ["compare_ranking", "ranking_row"]


def ranking_row(plan: Plan, target: Target) -> dict[str, Any]:
    """Return the figures of one pipelined plan that the ranking can change."""
    assert plan.pipeline is not None
    pipeline = plan.pipeline
    totals = pipeline.totals
    cells = {t.id: t.cells for w in plan.weights for t in w.tiles}
    writes = [w for seg in pipeline.segments for w in seg.writes]
    return {
        "mode": plan.mode, "segments": len(pipeline.segments),
        "micro_batch": pipeline.micro_batch,
        "passes": -(-pipeline.images // pipeline.micro_batch),
        "makespan_ns": totals.makespan_ns, "ii_ns": totals.ii_ns,
        "tile_writes_per_pass": len(writes),
        "cell_writes_per_pass": sum(cells[w.tile] for w in writes),
        "write_energy_pj": totals.write_energy_pj, "write_ns": totals.write_ns,
        "offchip_bytes": totals.offchip_bytes,
        "offchip_energy_pj": totals.offchip_energy_pj,
        "energy_j": pipeline_energy_pj(plan, target) / 1e12,
    }


def compare_ranking(files: Sequence[Path], target: Target, group_sizes: Sequence[int],
                    images: int) -> list[dict[str, Any]]:
    """OPS vs FCFS on the first ``G`` of ``files`` for each G in ``group_sizes``.

    Returns:
        One row per group size: ``ops`` and ``fcfs`` figures (:func:`ranking_row`)
        and the ratios fcfs over ops of makespan, writes per pass, off-chip bytes and
        energy (> 1: OPS is better).

    """
    rows = []
    for size in group_sizes:
        if size > len(files):
            logger.warning("ranking: only %d subnets, skipping G=%d", len(files), size)
            continue
        row: dict[str, Any] = {"group_size": size}
        for solver in ("ops", "fcfs"):
            plan = compile_detailed(list(files[:size]), target, solver=solver,
                                    images=images).plan
            row[solver] = ranking_row(checked_plan(plan, f"ranking {solver} G={size}"), target)
        ops, fcfs = row["ops"], row["fcfs"]
        row["fcfs_over_ops"] = {
            key: (fcfs[key] / ops[key] if ops[key] else None)
            for key in ("makespan_ns", "cell_writes_per_pass", "offchip_bytes", "energy_j")}
        rows.append(row)
    return rows
