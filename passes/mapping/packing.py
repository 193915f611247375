"""Tile packing for resident pipelines: several small tiles share one crossbar.

A resident pipelined plan gives every tile a crossbar of its own, and a crossbar
whose operators need it for a small part of the initiation interval (II) stays idle
the rest of the period. Packing puts the tiles of several crossbars into one, where

* space allows: their cell regions (``phys_rows x phys_cols``) fit side by side in
  the crossbar's ``rows x cols`` without overlapping (each keeps its row and column
  offset), and
* time allows: the crossbars' busy phases within the period, as the periodic schedule
  already has them, are disjoint modulo II. Their per-image busy times then add up to
  at most II, and the operators time-multiplex the shared crossbar as weight-sharing
  operators already do, with no slot moved: the II, every offset and the latency stay
  what they were. A packing that re-timed the slots could pack more (it would need
  only the sums under II) but could also have to raise II; this one never does.

The heuristic is first-fit decreasing over the crossbars with small tiles (a full
``rows x cols`` tile cannot share), largest first by the larger of their share of the
period and of the crossbar's cells; a crossbar is placed in the first packed crossbar
whose busy phases it misses and where its region fits at the lowest free corner
(bottom-left rule over the corners of the regions already there). Its result is
reported beside two lower bounds: for any packing (slots re-timed too), the full
tiles plus the larger of the small tiles' summed busy time over II and their summed
cells over a crossbar's; for a packing that keeps the phases, as this one does, the
full tiles plus the larger of the most small tiles busy at one moment and their cells.

This module sits at the mapping layer: it reads and returns the IR's schedules only.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from enasa_compiler.ir import (
    ComputeEvent,
    CrossbarProgram,
    PeriodicSchedule,
    PeriodicSlot,
    Placement,
    ProgramEvent,
    Schedule,
    Tile,
)

logger = logging.getLogger(__name__)

__all__ = [
    "PackItem",
    "PackSpot",
    "Packing",
    "busy_phases",
    "pack_items",
    "pack_resident",
    "packing_lower_bound",
    "phase_lower_bound",
]


@dataclass(frozen=True)
class PackItem:
    """What one crossbar of the unpacked plan needs: its tile's region and busy phases.

    Attributes:
        key: the crossbar in the unpacked plan.
        rows, cols: the tile's physical rows and columns (its cell region).
        phases: busy intervals within one period ``[0, II)``, sorted and disjoint.

    """

    key: int
    rows: int
    cols: int
    phases: tuple[tuple[int, int], ...]

    @property
    def busy_ns(self) -> int:
        """Busy time per period."""
        return sum(end - start for start, end in self.phases)


@dataclass(frozen=True)
class PackSpot:
    """Where an unpacked crossbar's tile goes: a crossbar and the region's corner."""

    crossbar: int
    row_offset: int
    col_offset: int


@dataclass(frozen=True)
class Packing:
    """A packing of items into crossbars, and how it compares with its lower bound.

    Attributes:
        spots: item key -> where its tile sits.
        crossbars_before: items (crossbars of the unpacked plan).
        crossbars_after: crossbars the packing uses.
        lower_bound: no packing of these items uses fewer crossbars
            (:func:`packing_lower_bound`).
        phase_lower_bound: no packing that keeps the busy phases (as this one does)
            uses fewer crossbars (:func:`phase_lower_bound`).

    """

    spots: dict[int, PackSpot]
    crossbars_before: int
    crossbars_after: int
    lower_bound: int
    phase_lower_bound: int = 0


def _merge(pieces: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(p for p in pieces if p[1] > p[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)


def busy_phases(slots: Sequence[PeriodicSlot],
                ii: int) -> dict[int, tuple[tuple[int, int], ...]]:
    """Each crossbar's busy intervals within one period of ``ii``, merged and sorted."""
    pieces: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for slot in slots:
        phase = slot.offset_ns % ii
        end = phase + slot.duration_ns
        parts = [(phase, end)] if end <= ii else [(phase, ii), (0, end - ii)]
        for crossbar in {p.crossbar for p in slot.placements}:
            pieces[crossbar].extend(parts)
    return {crossbar: _merge(parts) for crossbar, parts in pieces.items()}


def _is_full(item: PackItem, rows: int, cols: int) -> bool:
    return item.rows >= rows and item.cols >= cols


def packing_lower_bound(items: Sequence[PackItem], rows: int, cols: int, ii: int) -> int:
    """Fewest crossbars any packing of ``items`` can use.

    A full-size tile shares with nothing; the others need their summed busy time over
    II crossbars, and their summed cells over a crossbar's.
    """
    full = sum(1 for item in items if _is_full(item, rows, cols))
    small = [item for item in items if not _is_full(item, rows, cols)]
    if not small:
        return full
    by_time = math.ceil(sum(item.busy_ns for item in small) / ii)
    by_area = math.ceil(sum(item.rows * item.cols for item in small) / (rows * cols))
    return full + max(1, by_time, by_area)


def phase_lower_bound(items: Sequence[PackItem], rows: int, cols: int) -> int:
    """Fewest crossbars any packing that keeps the items' busy phases can use.

    Full-size tiles share with nothing; of the others, those busy at one moment of the
    period need a crossbar each, and their cells need their summed area.
    """
    full = sum(1 for item in items if _is_full(item, rows, cols))
    small = [item for item in items if not _is_full(item, rows, cols)]
    if not small:
        return full
    edges = sorted([(end, -1) for item in small for _, end in item.phases]
                   + [(start, 1) for item in small for start, _ in item.phases])
    busy = most = 0
    for _, step in edges:  # at one time, intervals ending there leave first
        busy += step
        most = max(most, busy)
    by_area = math.ceil(sum(item.rows * item.cols for item in small) / (rows * cols))
    return full + max(1, most, by_area)


class _Bin:
    """One packed crossbar: the regions placed in it and its busy phases."""

    __slots__ = ("ends", "items", "regions", "starts")

    def __init__(self) -> None:
        self.regions: list[tuple[int, int, int, int]] = []  # row, col, rows, cols
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.items: list[int] = []

    def time_fits(self, phases: Sequence[tuple[int, int]]) -> bool:
        for start, end in phases:
            at = bisect.bisect_left(self.starts, end) - 1
            if at >= 0 and self.ends[at] > start:
                return False
        return True

    def corner(self, rows: int, cols: int, max_rows: int, max_cols: int
               ) -> tuple[int, int] | None:
        """Return the lowest (then leftmost) free corner where the region fits, if any."""
        corners = {(0, 0)}
        for r, c, h, w in self.regions:
            corners.add((r + h, c))
            corners.add((r, c + w))
        for r, c in sorted(corners):
            if r + rows > max_rows or c + cols > max_cols:
                continue
            if all(r + rows <= r2 or r2 + h2 <= r or c + cols <= c2 or c2 + w2 <= c
                   for r2, c2, h2, w2 in self.regions):
                return r, c
        return None

    def add(self, item: PackItem, row: int, col: int) -> None:
        self.regions.append((row, col, item.rows, item.cols))
        self.items.append(item.key)
        for start, end in item.phases:
            at = bisect.bisect_left(self.starts, start)
            self.starts.insert(at, start)
            self.ends.insert(at, end)


def pack_items(items: Sequence[PackItem], rows: int, cols: int, ii: int) -> Packing:
    """Pack items into as few crossbars as the first-fit-decreasing heuristic finds.

    Each packed crossbar takes the smallest key of its items as its index, so the
    indices stay within those the unpacked plan used.
    """
    spots: dict[int, PackSpot] = {}
    bins: list[_Bin] = []
    open_bins: list[_Bin] = []  # bins that may still take something
    smallest_area = min((i.rows * i.cols for i in items if not _is_full(i, rows, cols)),
                        default=0)

    def size(item: PackItem) -> tuple[float, int]:
        return (max(item.busy_ns / ii, item.rows * item.cols / (rows * cols)), -item.key)

    for item in sorted(items, key=size, reverse=True):
        if item.rows > rows or item.cols > cols:
            raise ValueError(f"a {item.rows} x {item.cols} tile does not fit a {rows} x "
                             f"{cols} crossbar")
        placed = False
        if not _is_full(item, rows, cols):
            for target in open_bins:
                if not target.time_fits(item.phases):
                    continue
                corner = target.corner(item.rows, item.cols, rows, cols)
                if corner is None:
                    continue
                target.add(item, *corner)
                placed = True
                break
        if not placed:
            target = _Bin()
            target.add(item, 0, 0)
            bins.append(target)
            if not _is_full(item, rows, cols):
                open_bins.append(target)
        used = sum(h * w for _, _, h, w in target.regions)
        if used + smallest_area > rows * cols and target in open_bins:
            open_bins.remove(target)
    for target in bins:
        crossbar = min(target.items)
        for key, (row, col, _, _) in zip(target.items, target.regions, strict=True):
            spots[key] = PackSpot(crossbar, row, col)
    packing = Packing(spots=spots, crossbars_before=len(items), crossbars_after=len(bins),
                      lower_bound=packing_lower_bound(items, rows, cols, ii),
                      phase_lower_bound=phase_lower_bound(items, rows, cols))
    logger.info("packing: %d crossbars into %d (lower bound %d, %d keeping the phases)",
                packing.crossbars_before, packing.crossbars_after, packing.lower_bound,
                packing.phase_lower_bound)
    return packing


def _retime(program: CrossbarProgram, schedule: Schedule, spots: Mapping[int, PackSpot]
            ) -> tuple[tuple[ProgramEvent, ...], tuple[ComputeEvent, ...]]:
    """Move the batch schedule onto the packed crossbars, delaying events as needed.

    Writes and compute events keep their order (by start, writes first at a tie); each
    starts no earlier than before, once its crossbars (and unit) are free, and a
    compute event also after its producers and after its tiles are written. The order
    was feasible on the unpacked crossbars, so only the shared crossbars delay.
    """
    def moved_to(crossbar: int) -> int:
        return spots[crossbar].crossbar if crossbar in spots else crossbar

    crossbar_free: dict[int, int] = defaultdict(int)
    unit_free: dict[int, int] = defaultdict(int)
    ready: dict[str, int] = {}
    ends: dict[str, int] = {}
    writes: dict[int, ProgramEvent] = {}
    compute: dict[int, ComputeEvent] = {}
    order = sorted([(e.start_ns, 0, i) for i, e in enumerate(schedule.program)]
                   + [(e.start_ns, 1, i) for i, e in enumerate(schedule.compute)])
    for _, is_compute, index in order:
        if not is_compute:
            write = schedule.program[index]
            spot = spots.get(write.crossbar, PackSpot(write.crossbar, 0, 0))
            start = max(write.start_ns, crossbar_free[spot.crossbar])
            end = start + write.end_ns - write.start_ns
            crossbar_free[spot.crossbar] = end
            ready[write.tile] = end
            writes[index] = replace(write, crossbar=spot.crossbar, start_ns=start,
                                    end_ns=end, row_offset=spot.row_offset,
                                    col_offset=spot.col_offset)
            continue
        event = schedule.compute[index]
        placements = tuple(Placement(p.tile, moved_to(p.crossbar)) for p in event.placements)
        crossbars = {p.crossbar for p in placements}
        start = max([event.start_ns,
                     *(ends[d] for d in program.deps.get(event.op, ()) if d in ends),
                     *(ready.get(p.tile, 0) for p in placements),
                     *(crossbar_free[c] for c in crossbars),
                     unit_free[event.unit] if event.unit is not None else 0])
        end = start + event.end_ns - event.start_ns
        for crossbar in crossbars:
            crossbar_free[crossbar] = end
        if event.unit is not None:
            unit_free[event.unit] = end
        ends[event.op] = end
        compute[index] = replace(event, start_ns=start, end_ns=end, placements=placements)
    return (tuple(writes[i] for i in range(len(schedule.program))),
            tuple(compute[i] for i in range(len(schedule.compute))))


def pack_resident(program: CrossbarProgram, schedule: Schedule, periodic: PeriodicSchedule,
                  tiles: Mapping[str, Tile], rows: int,
                  cols: int) -> tuple[Schedule, PeriodicSchedule, Packing]:
    """Pack a resident plan's tiles, keeping its periodic schedule's II and offsets.

    ``schedule`` is the batch schedule (one tile written per crossbar), ``periodic``
    the pipelined schedule on the same crossbars and ``tiles`` every tile by id.
    Returns the batch schedule moved onto the packed crossbars (writes into one
    crossbar one after another, compute events delayed where packed crossbars or late
    writes make them wait), the periodic schedule with its placements moved (nothing
    else changes), and the packing.
    """
    ii = periodic.ii_ns
    phases = busy_phases(periodic.slots, ii)
    items = [PackItem(key=e.crossbar, rows=tiles[e.tile].phys_rows,
                      cols=tiles[e.tile].phys_cols, phases=phases.get(e.crossbar, ()))
             for e in schedule.program]
    if len({item.key for item in items}) != len(items) or schedule.initial:
        raise ValueError("packing needs a resident schedule writing one tile per crossbar")
    packing = pack_items(items, rows, cols, ii)
    writes, compute = _retime(program, schedule, packing.spots)
    slots = tuple(replace(slot, placements=tuple(
        Placement(p.tile, packing.spots[p.crossbar].crossbar) for p in slot.placements))
        for slot in periodic.slots)
    return (replace(schedule, program=writes, compute=compute),
            replace(periodic, slots=slots), packing)
