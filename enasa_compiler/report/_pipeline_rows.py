"""Which row of the pipelined schedule's charts each slot is drawn on.

Both charts of a pipelined run (:mod:`enasa_compiler.report._pipeline_svg`) draw
*resource groups*, not operators, so plans of thousands of operators stay readable:
crossbars that slots share (directly or through another slot) form one row, drawn
busy while any of them is, and each used digital unit has its own row. Within a
valid plan no two slots of one group overlap modulo II, so a row reads as one
resource's timeline. Above :data:`MAX_PIPELINE_ROWS` groups, consecutive groups
share a row.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from enasa_compiler._sets import DisjointSets
from enasa_compiler.ir import PeriodicSlot
from enasa_compiler.report._gantt_svg import to_ranges

logger = logging.getLogger(__name__)

__all__ = ["MAX_PIPELINE_ROWS", "PipelineRows", "pipeline_rows"]

MAX_PIPELINE_ROWS = 160
"""Above this many resource groups, consecutive groups share a row."""


@dataclass(frozen=True)
class PipelineRows:
    """Which row each slot of a periodic schedule is drawn on.

    Attributes:
        labels: each row's label (``xb 12–40``, ``DU 3``), crossbar rows first.
        details: each row's hover text (its crossbars or unit, and its operators).
        crossbar_rows: how many rows are crossbar groups (the digital units follow).
        groups: crossbar groups (slots sharing crossbars, directly or not).
        per_row: crossbar groups per row (1 unless there are more than the cap).
        slot_rows: operator id -> the rows its slot occupies.

    """

    labels: tuple[str, ...]
    details: tuple[str, ...]
    crossbar_rows: int
    groups: int
    per_row: int
    slot_rows: dict[str, tuple[int, ...]]

    @property
    def count(self) -> int:
        """Number of rows."""
        return len(self.labels)


def _crossbar_groups(slots: Sequence[PeriodicSlot]) -> list[list[PeriodicSlot]]:
    """MVM slots grouped by the crossbars they share, in order of their first crossbar."""
    sets: DisjointSets[int] = DisjointSets()
    for slot in slots:
        crossbars = [p.crossbar for p in slot.placements]
        for crossbar in crossbars:
            sets.join(crossbar, crossbars[0])
    groups: dict[int, list[PeriodicSlot]] = defaultdict(list)
    for slot in slots:
        if slot.placements:
            groups[sets.find(slot.placements[0].crossbar)].append(slot)
    return sorted(groups.values(),
                  key=lambda g: min(p.crossbar for s in g for p in s.placements))


def _ops_text(op_ids: Sequence[str], shown: int = 4) -> str:
    more = f" and {len(op_ids) - shown} more" if len(op_ids) > shown else ""
    return ", ".join(op_ids[:shown]) + more


def pipeline_rows(slots: Sequence[PeriodicSlot],
                  max_rows: int = MAX_PIPELINE_ROWS) -> PipelineRows:
    """Assign slots to rows: crossbar groups (banded above ``max_rows``), then units."""
    groups = _crossbar_groups(slots)
    per_row = max(1, math.ceil(len(groups) / max_rows))
    slot_rows: dict[str, tuple[int, ...]] = {}
    labels: list[str] = []
    details: list[str] = []
    for row, first in enumerate(range(0, len(groups), per_row)):
        band = [s for group in groups[first:first + per_row] for s in group]
        crossbars = sorted({p.crossbar for s in band for p in s.placements})
        labels.append(f"xb {crossbars[0]}" if len(crossbars) == 1
                      else f"xb {crossbars[0]}\u2013{crossbars[-1]}")
        details.append(f"{len(crossbars)} crossbar{'s' if len(crossbars) > 1 else ''} "
                       f"({to_ranges(crossbars)}), {len(band)} operator"
                       f"{'s' if len(band) > 1 else ''}: {_ops_text([s.op for s in band])}")
        for slot in band:
            slot_rows[slot.op] = (row,)
    crossbar_rows = len(labels)
    units = sorted({u for s in slots for u in s.units})
    unit_row = {unit: crossbar_rows + i for i, unit in enumerate(units)}
    by_unit: dict[int, list[str]] = defaultdict(list)
    for slot in slots:
        if slot.units:
            slot_rows[slot.op] = tuple(sorted(unit_row[u] for u in set(slot.units)))
            for unit in slot.units:
                by_unit[unit].append(slot.op)
    for unit in units:
        labels.append(f"DU {unit}")
        details.append(f"digital unit {unit}, {len(by_unit[unit])} operators: "
                       f"{_ops_text(by_unit[unit])}")
    return PipelineRows(labels=tuple(labels), details=tuple(details),
                        crossbar_rows=crossbar_rows, groups=len(groups), per_row=per_row,
                        slot_rows=slot_rows)
