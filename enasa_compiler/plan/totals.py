"""Plan-wide figures derived from a schedule: makespan, energy, utilization.

One function serves the mapper (which writes the totals into the plan) and the
validator (which re-derives them from the schedule and compares), so the
definitions live in one place. Definitions follow domain.md section 2:

* makespan: last event end minus first event start (programming included);
* utilization: busy crossbar-time / (crossbars on chip x makespan), where a crossbar
  is busy while an operator computes on it;
* allocated utilization: the same over the crossbars the plan uses;
* spatial utilization: cells holding weight bits / cells of the crossbars written,
  summed over programming events.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from enasa_compiler.ir import Tile
from enasa_compiler.plan import ComputeEvent, PlanOperator, ProgramEvent, Totals

logger = logging.getLogger(__name__)

__all__ = ["compute_totals"]


def compute_totals(
    operators: Sequence[PlanOperator],
    tiles: dict[str, Tile],
    program: Sequence[ProgramEvent],
    compute: Sequence[ComputeEvent],
    *,
    chip_crossbars: int,
    crossbar_cells: int,
) -> Totals:
    """Derive the plan totals from its events.

    Args:
        operators: the plan's operators (their ``energy_pj`` and ``macs`` are summed).
        tiles: every tile by id (for cell counts).
        program: programming events.
        compute: compute events.
        chip_crossbars: crossbars on the chip.
        crossbar_cells: ``rows * cols`` of one crossbar.

    """
    events = [(e.start_ns, e.end_ns) for e in program] + [(e.start_ns, e.end_ns)
                                                         for e in compute]
    makespan_ns = (max(end for _, end in events) - min(start for start, _ in events)
                   if events else 0)
    busy_crossbar_ns = sum((e.end_ns - e.start_ns) * len({p.crossbar for p in e.placements})
                           for e in compute)
    used = {p.crossbar for e in compute for p in e.placements} | {e.crossbar for e in program}
    compute_energy_pj = sum(op.energy_pj for op in operators)
    write_energy_pj = sum(e.energy_pj for e in program)
    cell_writes = sum(tiles[e.tile].cells for e in program if e.tile in tiles)
    denominator = makespan_ns * chip_crossbars
    allocated = makespan_ns * len(used)
    return Totals(
        makespan_ns=makespan_ns,
        energy_pj=compute_energy_pj + write_energy_pj,
        compute_energy_pj=compute_energy_pj,
        write_energy_pj=write_energy_pj,
        cell_writes=cell_writes,
        program_events=len(program),
        crossbars_used=len(used),
        busy_crossbar_ns=busy_crossbar_ns,
        utilization=busy_crossbar_ns / denominator if denominator else 0.0,
        allocated_utilization=busy_crossbar_ns / allocated if allocated else 0.0,
        spatial_utilization=(cell_writes / (len(program) * crossbar_cells)
                             if program else 0.0),
        macs=sum(op.macs for op in operators),
    )
