"""Violations, their kinds, and the structural checks behind ``validate``.

Each check reads a schema-valid plan (and its parsed target, when that parsed) and
yields every violation it finds; none stops at the first. The checks re-derive what
they need from the plan alone (who produces which value, which tiles an operator
needs) so that a bug in the mapper cannot hide itself by also being in the
validator. This module holds the checks of ids, references, tiles and placements;
:mod:`._schedule` holds the schedule and cost checks, :mod:`._proof` the claims about
the outside world (target, tiling rule, initial state, bounds).
"""

from __future__ import annotations

import enum
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields

from enasa_compiler._text import plural
from enasa_compiler.ir import EventCost, OpKind, Tile, WeightMatrix
from enasa_compiler.passes.price import price_operators
from enasa_compiler.plan import ComputeEvent, Placement, Plan, PlanOperator, ProgramEvent
from enasa_compiler.targets.target import Target
from enasa_compiler.validation._tiles import is_exact_grid, overlapping_pairs, tile_in_weight

logger = logging.getLogger(__name__)

__all__ = [
    "STRUCTURE_CHECKS",
    "Check",
    "COVERAGE",
    "DEPENDENCY",
    "DOUBLE_BOOKED",
    "DUPLICATE_ID",
    "DURATION",
    "KINDS",
    "Holdings",
    "MISSING_OP",
    "MODELS",
    "NOT_PROGRAMMED",
    "PLACEMENT",
    "PROGRAM",
    "SCHEMA",
    "TARGET",
    "TILE_SIZE",
    "TOTALS",
    "UNKNOWN_REF",
    "PlanIndex",
    "Violation",
    "ViolationKind",
    "REL_TOL",
    "close_enough",
    "quote_names",
]

class ViolationKind(enum.StrEnum):
    """What a violation is about; the values are the names users and CI see."""

    SCHEMA = "schema"
    TARGET = "target"
    DUPLICATE_ID = "duplicate-id"
    UNKNOWN_REF = "unknown-ref"
    MISSING_OP = "missing-op"
    TILE_SIZE = "tile-size"
    COVERAGE = "coverage"
    PLACEMENT = "placement"
    DOUBLE_BOOKED = "double-booked"
    DEPENDENCY = "dependency"
    NOT_PROGRAMMED = "not-programmed"
    DURATION = "duration"
    TOTALS = "totals"
    PROGRAM = "program"
    PIPELINE = "pipeline"
    MODELS = "models"


SCHEMA = ViolationKind.SCHEMA
TARGET = ViolationKind.TARGET
DUPLICATE_ID = ViolationKind.DUPLICATE_ID
UNKNOWN_REF = ViolationKind.UNKNOWN_REF
MISSING_OP = ViolationKind.MISSING_OP
TILE_SIZE = ViolationKind.TILE_SIZE
COVERAGE = ViolationKind.COVERAGE
PLACEMENT = ViolationKind.PLACEMENT
DOUBLE_BOOKED = ViolationKind.DOUBLE_BOOKED
DEPENDENCY = ViolationKind.DEPENDENCY
NOT_PROGRAMMED = ViolationKind.NOT_PROGRAMMED
DURATION = ViolationKind.DURATION
TOTALS = ViolationKind.TOTALS
PROGRAM = ViolationKind.PROGRAM
PIPELINE = ViolationKind.PIPELINE
MODELS = ViolationKind.MODELS

KINDS = tuple(ViolationKind)
"""Every violation kind, in the order the validator reports them."""

# Every recomputed figure is compared relatively (docs/validation.md, "Tolerances").
# Plans store energies rounded to 3 decimals, so an energy may also differ by half a
# unit of the last place per rounded term summed into it; ratios (utilizations, the
# gap) are stored unrounded and get no absolute allowance at all.
REL_TOL = 1e-6
_ROUNDING_PJ = 5e-4


@dataclass(frozen=True)
class Violation:
    """One way a plan breaks the format or the hardware's rules.

    Attributes:
        kind: one of :data:`KINDS` (``"double-booked"``, ``"dependency"``...).
        message: names the operator, tile or crossbar involved.

    """

    kind: ViolationKind
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


@dataclass(frozen=True)
class PlanIndex:
    """Lookups every check needs, built once per plan (first occurrence wins).

    Attributes:
        plan: the plan under check.
        target: its embedded target, or None when that target does not parse (the
            checks that need hardware figures then skip).
        ops: operators by id.
        weights: weight matrices by id.
        tiles: tiles by id.
        events: each operator's first compute event.
        producers: for each value name, the first operator that outputs it.
        costs: each operator's price (only when it can be priced), from the same
            pricing step the compile uses (:func:`~enasa_compiler.passes.price`).
        write_costs: each tile's programming price.

    """

    plan: Plan
    target: Target | None
    ops: dict[str, PlanOperator]
    weights: dict[str, WeightMatrix]
    tiles: dict[str, Tile]
    events: dict[str, ComputeEvent]
    producers: dict[str, str]
    costs: dict[str, EventCost]
    write_costs: dict[str, EventCost]

    @classmethod
    def build(cls, plan: Plan, target: Target | None) -> PlanIndex:
        """Index ``plan``; ``target`` is the parsed embedded target or None."""
        ops: dict[str, PlanOperator] = {}
        producers: dict[str, str] = {}
        for op in plan.operators:
            ops.setdefault(op.id, op)
            for value in op.outputs:
                producers.setdefault(value, op.id)
        weights: dict[str, WeightMatrix] = {}
        tiles: dict[str, Tile] = {}
        for w in plan.weights:
            weights.setdefault(w.id, w)
            for t in w.tiles:
                tiles.setdefault(t.id, t)
        events: dict[str, ComputeEvent] = {}
        for event in plan.compute:
            events.setdefault(event.op, event)
        index = cls(plan, target, ops, weights, tiles, events, producers, {}, {})
        if target is not None:
            priceable = [plan.to_ir_op(op) for op in ops.values() if index.priceable(op)]
            table = price_operators(priceable, tiles.values(), target, plan.batch)
            index.costs.update(table.operators)
            index.write_costs.update(table.writes)
        return index

    def priceable(self, op: PlanOperator) -> bool:
        """Return whether ``op`` can be priced: an MVM operator needs usable weights."""
        return op.kind is not OpKind.MVM or bool(op.weights) and all(
            w in self.weights and self.weights[w].tiles for w in op.weights)

    def expected_tiles(self, op: PlanOperator) -> list[str]:
        """Tile ids an MVM operator needs placed (all tiles of its known weights)."""
        return [t.id for w in op.weights if w in self.weights for t in self.weights[w].tiles]


Check = Callable[[PlanIndex], Iterator[Violation]]
"""A check: reads an indexed plan, yields its violations."""


def close_enough(recorded: float, expected: float, terms: int = 1) -> bool:
    """Tell whether a recorded float matches its recomputed value, allowing for rounding.

    Args:
        recorded: the value in the plan.
        expected: the value the validator derives.
        terms: how many values rounded to 3 decimals were summed into ``recorded``;
            0 for a value stored unrounded (a ratio), compared relatively only.

    """
    return abs(recorded - expected) <= REL_TOL * abs(expected) + _ROUNDING_PJ * terms


def compare_totals(recorded: object, derived: object, prefix: str, source: str,
                   rounded_terms: dict[str, int]) -> Iterator[Violation]:
    """Report each field of a recorded totals record that differs from its re-derivation.

    Integers must be equal; floats match within :func:`close_enough`, with
    ``rounded_terms`` rounded values summed into a field (0 for a stored ratio).
    """
    for f in fields(derived):  # type: ignore[arg-type]
        value, expected = getattr(recorded, f.name), getattr(derived, f.name)
        if isinstance(expected, int):
            wrong = value != expected
        else:
            wrong = not (math.isfinite(value)
                         and close_enough(value, expected, rounded_terms.get(f.name, 0)))
        if wrong:
            yield Violation(ViolationKind.TOTALS, f"{prefix}.{f.name} is {value}, {source} "
                                                  f"gives {expected}")


def quote_names(items: list[str]) -> str:
    """Quote ids for a message: ``'a', 'b'``."""
    return ", ".join(f"'{item}'" for item in items)


# ---- identity and references -------------------------------------------------------
def check_duplicates(index: PlanIndex) -> Iterator[Violation]:
    """Find ids used twice, operators computed twice, values produced twice."""
    plan = index.plan
    groups = (("operator", [o.id for o in plan.operators]),
              ("weight", [w.id for w in plan.weights]),
              ("tile", [t.id for w in plan.weights for t in w.tiles]))
    for label, ids in groups:
        for name, count in Counter(ids).items():
            if count > 1:
                yield Violation(DUPLICATE_ID, f"{label} id '{name}' is used {count} times")
    for index_value, count in Counter(s.index for s in plan.subnets).items():
        if count > 1:
            yield Violation(DUPLICATE_ID, f"subnet index {index_value} is used {count} times")
    for op_id, count in Counter(e.op for e in plan.compute).items():
        if count > 1:
            yield Violation(DUPLICATE_ID, f"operator '{op_id}' has {count} compute events")
    makers: dict[str, list[str]] = defaultdict(list)
    for op in plan.operators:
        for value in op.outputs:
            makers[value].append(op.id)
    for value, op_ids in makers.items():
        if len(op_ids) > 1:
            yield Violation(DUPLICATE_ID,
                            f"value '{value}' is produced by operators {quote_names(op_ids)}")
        if value == plan.input_name:
            yield Violation(DUPLICATE_ID, f"plan input '{value}' is also produced by "
                                          f"operator '{op_ids[0]}'")


def _writing(write: ProgramEvent) -> str:
    return f"programming of tile '{write.tile}' on crossbar {write.crossbar}"


def _placing(op_id: str, p: Placement) -> str:
    return f"operator '{op_id}' places tile '{p.tile}' on crossbar {p.crossbar}"


def check_references(index: PlanIndex) -> Iterator[Violation]:
    """Find names and numbers that point at nothing: ops, weights, tiles, crossbars."""
    plan, target = index.plan, index.target
    group = len(plan.subnets)
    for s in plan.subnets:
        if s.index >= group:
            yield Violation(UNKNOWN_REF, f"subnet '{s.name}' has index {s.index}, outside "
                                         f"0..{group - 1}")
    for op in plan.operators:
        for dep in op.deps:
            if dep not in index.ops:
                yield Violation(UNKNOWN_REF, f"operator '{op.id}' depends on unknown "
                                             f"operator '{dep}'")
        for weight in op.weights:
            if weight not in index.weights:
                yield Violation(UNKNOWN_REF, f"operator '{op.id}' uses unknown weight "
                                             f"'{weight}'")
        for subnet in op.subnets:
            if subnet >= group:
                yield Violation(UNKNOWN_REF, f"operator '{op.id}' serves subnet {subnet}, "
                                             f"outside 0..{group - 1}")
    crossbars = target.chip.crossbars if target else None
    units = target.chip.digital_units if target else None
    for write in plan.program:
        # Messages are written only for what is reported: a plan has 100,000s of events.
        if write.tile not in index.tiles:
            yield Violation(UNKNOWN_REF, f"{_writing(write)}: unknown tile")
        if crossbars is not None and write.crossbar >= crossbars:
            yield Violation(UNKNOWN_REF, f"{_writing(write)}: the chip has crossbars "
                                         f"0..{crossbars - 1}")
    seen_initial: set[int] = set()
    for held in plan.initial:
        where = f"initial state: tile '{held.tile}' on crossbar {held.crossbar}"
        if held.tile not in index.tiles:
            yield Violation(UNKNOWN_REF, f"{where}: unknown tile")
        if crossbars is not None and held.crossbar >= crossbars:
            yield Violation(UNKNOWN_REF, f"{where}: the chip has crossbars 0..{crossbars - 1}")
        if held.crossbar in seen_initial:
            yield Violation(DUPLICATE_ID, f"{where}: the crossbar already holds another tile")
        seen_initial.add(held.crossbar)
    for event in plan.compute:
        if event.op not in index.ops:
            yield Violation(UNKNOWN_REF, f"compute event names unknown operator '{event.op}'")
        for p in event.placements:
            if p.tile not in index.tiles:
                yield Violation(UNKNOWN_REF, f"{_placing(event.op, p)}: unknown tile")
            if crossbars is not None and p.crossbar >= crossbars:
                yield Violation(UNKNOWN_REF, f"{_placing(event.op, p)}: the chip has "
                                             f"crossbars 0..{crossbars - 1}")
        if units is not None and event.unit is not None and event.unit >= units:
            yield Violation(UNKNOWN_REF, f"operator '{event.op}' runs on digital unit "
                                         f"{event.unit}: the chip has units 0..{units - 1}")


def check_missing(index: PlanIndex) -> Iterator[Violation]:
    """Find operators never run, subnets never served, values nobody produces."""
    plan = index.plan
    for op in index.ops.values():
        if op.id not in index.events:
            yield Violation(MISSING_OP, f"operator '{op.id}' has no compute event")
    served = {s for op in plan.operators for s in op.subnets}
    for i, subnet in enumerate(plan.subnets):
        if i not in served:
            yield Violation(MISSING_OP, f"subnet {i} ('{subnet.name}') is served by no "
                                        "operator")
        for value in subnet.outputs:
            if value not in index.producers:
                yield Violation(MISSING_OP, f"output '{value}' of subnet {i} is produced "
                                            "by no operator")
    for op in index.ops.values():
        for value in op.inputs:
            if value not in index.producers and value != plan.input_name:
                yield Violation(MISSING_OP, f"input '{value}' of operator '{op.id}' is "
                                            "produced by no operator and is not the plan "
                                            f"input '{plan.input_name}'")


# ---- tiles and placements ----------------------------------------------------------
def _coverage(weight: WeightMatrix) -> Iterator[Violation]:
    """Check the tiles inside a weight cover it exactly once: no overlap, no gap."""
    tiles = [t for t in weight.tiles if tile_in_weight(t, weight)]
    if is_exact_grid(tiles, weight):  # the usual tiling; any other goes through the sweep
        return
    overlapping = False
    for a, b in overlapping_pairs(tiles):
        overlapping = True
        yield Violation(COVERAGE, f"tiles '{a.id}' and '{b.id}' of weight "
                                  f"'{weight.id}' overlap")
    covered = sum((t.row_stop - t.row_start) * (t.col_stop - t.col_start) for t in tiles)
    if not overlapping and covered != weight.rows * weight.cols:
        yield Violation(COVERAGE, f"tiles of weight '{weight.id}' cover {covered} of its "
                                  f"{weight.rows} x {weight.cols} entries (a gap)")


def check_tiles(index: PlanIndex) -> Iterator[Violation]:
    """Check tiles fit their weight and the crossbar, and cover the weight exactly once."""
    target = index.target
    for weight in index.plan.weights:
        if target is not None and weight.columns_per_weight != target.columns_per_weight:
            yield Violation(TILE_SIZE, f"weight '{weight.id}' uses "
                                       f"{plural(weight.columns_per_weight, 'column')} "
                                       f"per weight, the target "
                                       f"{target.columns_per_weight}")
        for t in weight.tiles:
            if not tile_in_weight(t, weight):
                yield Violation(TILE_SIZE, f"tile '{t.id}' spans rows [{t.row_start}, "
                                           f"{t.row_stop}) x cols [{t.col_start}, "
                                           f"{t.col_stop}): empty or outside weight "
                                           f"'{weight.id}' ({weight.rows} x {weight.cols})")
            if t.phys_rows != t.row_stop - t.row_start:
                yield Violation(TILE_SIZE, f"tile '{t.id}' has "
                                           f"{plural(t.phys_rows, 'physical row')} for "
                                           f"{plural(t.row_stop - t.row_start, 'weight row')}")
            phys_cols = (t.col_stop - t.col_start) * weight.columns_per_weight
            if t.phys_cols != phys_cols:
                yield Violation(TILE_SIZE, f"tile '{t.id}' has "
                                           f"{plural(t.phys_cols, 'physical column')}, its "
                                           f"weight columns need {phys_cols}")
            if target is not None and (t.phys_rows > target.crossbar.rows
                                       or t.phys_cols > target.crossbar.cols):
                yield Violation(TILE_SIZE, f"tile '{t.id}' ({t.phys_rows} x {t.phys_cols}) "
                                           f"does not fit a {target.crossbar.rows} x "
                                           f"{target.crossbar.cols} crossbar")
        yield from _coverage(weight)


def check_placements(index: PlanIndex) -> Iterator[Violation]:
    """Check MVM events place each tile of their weights once; digital ones name a unit."""
    for op in index.ops.values():
        if op.kind is OpKind.MVM and not op.weights:
            yield Violation(PLACEMENT, f"mvm operator '{op.id}' has no weights")
        if op.kind is OpKind.DIGITAL and op.weights:
            yield Violation(PLACEMENT, f"digital operator '{op.id}' lists weights")
    for event in index.plan.compute:
        runs = index.ops.get(event.op)
        if runs is None:
            continue
        yield from _event_placements(index, runs, event)


def _event_placements(index: PlanIndex, op: PlanOperator,
                      event: ComputeEvent) -> Iterator[Violation]:
    if op.kind is OpKind.DIGITAL:
        if event.placements:
            yield Violation(PLACEMENT, f"digital operator '{op.id}' has crossbar placements")
        if event.unit is None:
            yield Violation(PLACEMENT, f"digital operator '{op.id}' names no digital unit")
        return
    if event.unit is not None:
        yield Violation(PLACEMENT, f"mvm operator '{op.id}' names digital unit {event.unit}")
    expected = index.expected_tiles(op)
    placed = Counter(p.tile for p in event.placements)
    needed = set(expected)
    missing = [t for t in dict.fromkeys(expected) if t not in placed]
    extra = [t for t in placed if t not in needed]
    twice = [t for t, n in placed.items() if n > 1]
    for label, tiles in (("does not place", missing), ("places foreign", extra),
                         ("places more than once", twice)):
        if tiles:
            yield Violation(PLACEMENT,
                            f"operator '{op.id}' {label} tiles {quote_names(tiles)}")
    holders: dict[int, list[str]] = defaultdict(list)
    for p in event.placements:
        holders[p.crossbar].append(p.tile)
    for crossbar, tiles in holders.items():
        if len(tiles) > 1:
            yield Violation(PLACEMENT, f"operator '{op.id}' places tiles {quote_names(tiles)} "
                                       f"on crossbar {crossbar}")


# ---- tile packing ------------------------------------------------------------------
Region = tuple[int, int, int, int]
"""A tile's cells in its crossbar: first row, first column, row stop, column stop."""


def write_region(write: ProgramEvent, tiles: dict[str, Tile]) -> Region | None:
    """Return the cells a packed write fills, or None for a plain write (all of them).

    A write naming one offset only counts as packed, the other offset 0 (the
    ``program`` check reports it).
    """
    if not write.packed:
        return None
    tile = tiles.get(write.tile)
    row, col = write.row_offset or 0, write.col_offset or 0
    rows, cols = (tile.phys_rows, tile.phys_cols) if tile is not None else (1, 1)
    return row, col, row + rows, col + cols


def regions_overlap(a: Region, b: Region) -> bool:
    """Tell whether two regions share a cell."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


class Holdings:
    """What each crossbar holds as writes are applied in order (packing-aware).

    A plain write replaces everything its crossbar held; a packed write (with
    offsets) replaces only the tiles whose regions its own overlaps.
    """

    def __init__(self, tiles: dict[str, Tile]) -> None:
        self.tiles = tiles
        self.held: dict[int, dict[str, Region | None]] = defaultdict(dict)

    def apply(self, write: ProgramEvent) -> None:
        """Carry out one write."""
        region = write_region(write, self.tiles)
        here = self.held[write.crossbar]
        if region is None:
            here.clear()
        else:
            for tile_id, other in list(here.items()):
                if other is None or regions_overlap(region, other):
                    del here[tile_id]
        here[write.tile] = region

    def place(self, crossbar: int, tile_id: str) -> None:
        """Put a tile in place over the whole crossbar (an initial state)."""
        self.held[crossbar] = {tile_id: None}

    def holds(self, crossbar: int, tile_id: str) -> bool:
        """Tell whether the crossbar now holds the tile."""
        return tile_id in self.held.get(crossbar, {})

    def describe(self, crossbar: int) -> str:
        """Name what the crossbar holds, for a message."""
        names = list(self.held.get(crossbar, {}))
        return quote_names(names) if names else "nothing"


def check_packing(index: PlanIndex) -> Iterator[Violation]:
    """Check packed writes: both offsets, regions inside the crossbar, no overlaps.

    In a resident plan every tile stays where it was written, so the regions packed
    into one crossbar must be disjoint; a plain write there would share it with
    nothing. (A dynamic plan's overlapping write replaces what it covers.)
    """
    plan, target = index.plan, index.target
    writes = list(plan.program)
    if plan.pipeline is not None:
        writes += [w for seg in plan.pipeline.segments for w in seg.writes]
    for write in writes:
        if not write.packed:
            continue
        if write.row_offset is None or write.col_offset is None:
            yield Violation(PROGRAM, f"{_writing(write)} names one offset only (packing "
                                     "needs row_offset and col_offset)")
        region = write_region(write, index.tiles)
        if target is not None and region is not None and (
                region[2] > target.crossbar.rows or region[3] > target.crossbar.cols):
            yield Violation(TILE_SIZE, f"{_writing(write)} at row {region[0]}, column "
                                       f"{region[1]} reaches row {region[2]} and column "
                                       f"{region[3]}, outside the {target.crossbar.rows} x "
                                       f"{target.crossbar.cols} crossbar")
    if plan.mode != "resident":
        return
    by_crossbar: dict[int, list[ProgramEvent]] = defaultdict(list)
    for write in plan.program:
        by_crossbar[write.crossbar].append(write)
    for crossbar, events in sorted(by_crossbar.items()):
        if len(events) < 2 or not any(e.packed for e in events):
            continue  # plain double writes are check_resident's
        plain = [e.tile for e in events if not e.packed]
        if plain:
            yield Violation(PROGRAM, f"crossbar {crossbar} holds packed tiles and tiles "
                                     f"{quote_names(plain[:5])} written without offsets")
            continue
        placed: list[tuple[Region, str]] = []
        for event in events:
            region = write_region(event, index.tiles)
            assert region is not None
            clash = next((name for other, name in placed
                          if regions_overlap(region, other)), None)
            if clash is not None:
                yield Violation(PROGRAM, f"crossbar {crossbar}: the cells of packed tiles "
                                         f"'{clash}' and '{event.tile}' overlap")
            placed.append((region, event.tile))


def check_resident(index: PlanIndex) -> Iterator[Violation]:
    """Check a resident plan writes each tile once, never two into one crossbar.

    A tile the initial state already holds counts as written. Tiles packed into one
    crossbar (every write there with offsets) are :func:`check_packing`'s.
    """
    plan = index.plan
    if plan.mode != "resident":
        return
    writes = Counter([e.tile for e in plan.program] + [p.tile for p in plan.initial])
    for tile_id in index.tiles:
        if writes[tile_id] != 1:
            yield Violation(PROGRAM, f"resident plan programs tile '{tile_id}' "
                                     f"{writes[tile_id]} times (must be once)")
    held: dict[int, dict[str, None]] = defaultdict(dict)
    holdings = [(p.crossbar, p.tile) for p in plan.initial]
    holdings += [(w.crossbar, w.tile) for w in plan.program]
    packed = {w.crossbar for w in plan.program if w.packed}
    for crossbar, tile in holdings:
        held[crossbar][tile] = None
    for crossbar, tiles in held.items():
        if len(tiles) > 1 and crossbar not in packed:
            named = list(tiles)
            more = f" and {len(named) - 5} more" if len(named) > 5 else ""
            yield Violation(PROGRAM, f"resident plan puts tiles {quote_names(named[:5])}"
                                     f"{more} on crossbar {crossbar}")


STRUCTURE_CHECKS: tuple[Check, ...] = (
    check_duplicates, check_references, check_missing, check_tiles, check_placements,
    check_resident, check_packing,
)
"""The checks of ids, references, tiles and placements, in report order."""
