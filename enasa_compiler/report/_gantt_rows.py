"""Which Gantt row each used crossbar and digital unit is drawn on.

Both Gantt charts (the page's SVG in :mod:`enasa_compiler.report._gantt_svg`, the PNG in
:mod:`enasa_compiler.report._charts`) draw the same rows, so a row is chosen once, here,
from the chip's hierarchy: a reader can name every row (a crossbar, a PE, a tile)
and see where one tile ends and the next begins.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass

from enasa_compiler.plan import Plan
from enasa_compiler.targets.target import target_from_dict

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_GANTT_ROWS",
    "GanttRows",
    "gantt_note",
    "gantt_rows",
    "tile_boundaries",
    "time_origin_ns",
]

MAX_GANTT_ROWS = 256
"""Above this many used crossbars the Gantt chart draws one row per PE (then per tile)."""


@dataclass(frozen=True)
class GanttRows:
    """Which Gantt row each used crossbar and digital unit is drawn on.

    Rows follow the chip's hierarchy, so a row is something a reader can name: one
    row per used crossbar when they fit in :data:`MAX_GANTT_ROWS`, else one per used
    PE, else one per used tile, else bands of consecutive used tiles. Crossbar ``c``
    sits in PE ``c // crossbars_per_pe`` and tile ``c // crossbars_per_tile``, as the
    target's PE and tile counts assume (``pes = ceil(crossbars / crossbars_per_pe)``).

    Attributes:
        crossbar_row: crossbar id -> row index (0 = top).
        level: what one row holds: ``"crossbar"``, ``"PE"`` or ``"tile"``.
        per_row: units of ``level`` per row (1 unless even the used tiles are too many).
        row_first: the first crossbar id of each row.
        row_last: the last crossbar id of each row.
        units: the digital units used, sorted; unit ``units[i]`` is drawn on row ``i``.
        crossbars_per_pe: the target's PE size.
        crossbars_per_tile: the target's tile size, in crossbars.

    """

    crossbar_row: dict[int, int]
    level: str
    per_row: int
    row_first: tuple[int, ...]
    row_last: tuple[int, ...]
    units: tuple[int, ...]
    crossbars_per_pe: int = 1
    crossbars_per_tile: int = 1

    @property
    def crossbar_rows(self) -> int:
        """Number of crossbar rows."""
        return len(self.row_first)

    def pe_of(self, crossbar: int) -> int:
        """Return the PE holding a crossbar."""
        return crossbar // self.crossbars_per_pe

    def tile_of(self, crossbar: int) -> int:
        """Return the chip tile holding a crossbar."""
        return crossbar // self.crossbars_per_tile

    def row_label(self, row: int) -> str:
        """Name a crossbar row after what it holds, e.g. ``xb 12``, ``PE 3``, ``tiles 0-3``."""
        first, last = self.row_first[row], self.row_last[row]
        if self.level == "crossbar":
            return f"xb {first}"
        if self.level == "PE":
            return f"PE {self.pe_of(first)}"
        low, high = self.tile_of(first), self.tile_of(last)
        return f"tile {low}" if low == high else f"tiles {low}\u2013{high}"


def gantt_rows(plan: Plan, max_rows: int = MAX_GANTT_ROWS) -> GanttRows:
    """Assign the plan's used crossbars to rows: the finest hierarchy level that fits.

    Args:
        plan: a validated plan (its embedded target gives the PE and tile sizes).
        max_rows: the most crossbar rows to draw.

    """
    target = target_from_dict(plan.target, origin="plan: embedded target")
    per_pe, per_tile = target.pe.crossbars_per_pe, target.crossbars_per_tile
    used = sorted({p.crossbar for e in plan.compute for p in e.placements}
                  | {e.crossbar for e in plan.program})
    level, size, per_row = "tile", per_tile, 1
    for name, crossbars in (("crossbar", 1), ("PE", per_pe), ("tile", per_tile)):
        if len({xb // crossbars for xb in used}) <= max_rows:
            level, size = name, crossbars
            break
    else:
        per_row = math.ceil(len({xb // per_tile for xb in used}) / max_rows)
    keys = sorted({xb // size for xb in used})
    key_row = {key: i // per_row for i, key in enumerate(keys)}
    crossbar_row = {xb: key_row[xb // size] for xb in used}
    members: dict[int, list[int]] = defaultdict(list)
    for xb in used:
        members[crossbar_row[xb]].append(xb)
    units = tuple(sorted({e.unit for e in plan.compute if e.unit is not None}))
    return GanttRows(crossbar_row=crossbar_row, level=level, per_row=per_row,
                     row_first=tuple(members[r][0] for r in range(len(members))),
                     row_last=tuple(members[r][-1] for r in range(len(members))),
                     units=units, crossbars_per_pe=per_pe, crossbars_per_tile=per_tile)


def tile_boundaries(rows: GanttRows) -> list[int]:
    """Rows that start a new chip tile (after the first), where the chart draws a rule."""
    return [r for r in range(1, rows.crossbar_rows)
            if rows.tile_of(rows.row_first[r]) != rows.tile_of(rows.row_last[r - 1])]


def time_origin_ns(plan: Plan) -> int:
    """Return the first event's start (report times count from it, as cost_report's do)."""
    starts = [e.start_ns for e in plan.compute] + [e.start_ns for e in plan.program]
    return min(starts, default=0)


def gantt_note(rows: GanttRows) -> str:
    """One sentence on how the crossbar rows were chosen."""
    used = len(rows.crossbar_row)
    grouping = (f"PEs of {rows.crossbars_per_pe} crossbars, tiles of "
                f"{rows.crossbars_per_tile}")
    if rows.level == "crossbar":
        return f"One row per used crossbar ({used}), grouped by tile and PE ({grouping})."
    if rows.per_row == 1:
        return (f"The plan uses {used} crossbars: one row per used {rows.level} "
                f"({rows.crossbar_rows} rows; {grouping}), shown busy while any of its "
                "crossbars is.")
    return (f"The plan uses {used} crossbars: rows are bands of {rows.per_row} consecutive "
            f"used tiles ({rows.crossbar_rows} rows; {grouping}), shown busy while any of "
            "their crossbars is.")
