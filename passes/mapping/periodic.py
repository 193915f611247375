"""Pipelined execution of many images: periodic (modulo) schedules and their II bound.

One batch schedule runs the group layer by layer: a successor waits for all images of
its predecessors, so along a subnet one layer's crossbars work at a time. CIM
accelerators get their throughput from an inter-layer pipeline instead (ISAAC,
PipeLayer, NeuroSim's pipeline mode): every operator takes a new image every
*initiation interval* (II) while its successors work on the previous ones.

This module makes such a schedule for a resident mapping. Image ``i`` of operator
``o`` runs at ``offset(o) + i * II`` for ``duration(o)``, the operator's time for one
image on its copies (MVM) or lanes (digital). The schedule keeps:

* per-image dependencies: ``offset(o) >= offset(p) + duration(p)`` for each producer;
* no crossbar and no digital unit used twice at the same time modulo II: operators
  sharing weights (different subnets, one weight matrix) time-multiplex its crossbars
  within the period, and each digital unit serves several operators per period;
* every operator fits the period: ``duration <= II``.

The lower bound on II (:func:`ii_lower_bound`) is each resource's work per image over
its capacity: every crossbar's summed operator durations, the digital units' summed
lane-time over the units, and the longest operator. :func:`schedule_periodic` starts at
the bound and raises II until modulo list scheduling places every operator.

Throughput-balanced duplication (:func:`balance_throughput`) picks copies per weight
matrix and lanes per digital operator to minimise that bound within the chip's
crossbars: for a candidate II it gives each group of weight-sharing operators the
fewest copies that fit their summed durations in the period and each digital operator
the fewest lanes under it, and checks the crossbars and the digital lane-time fit;
the smallest such II is found by bisection (feasibility is monotone in II). It
duplicates the bottleneck, not the slowest operator. Its II is a lower bound for any
whole-copy duplication and lane choice under the cost model's copy rule
(:meth:`~enasa_compiler.ir.EventCost.latency_with_copies`).
"""

from __future__ import annotations

import bisect
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from enasa_compiler._sets import DisjointSets
from enasa_compiler.errors import InputError
from enasa_compiler.ir import (
    CostTable,
    CrossbarProgram,
    DigitalOp,
    EventCost,
    MvmOp,
    PeriodicSchedule,
    PeriodicSlot,
    Placement,
)
from enasa_compiler.passes.price import price
from enasa_compiler.targets.cost import digital_lanes_ns
from enasa_compiler.targets.target import Target

logger = logging.getLogger(__name__)

__all__ = [
    "IIBound",
    "ThroughputChoice",
    "balance_lanes",
    "balance_throughput",
    "best_allocated_utilization",
    "ii_lower_bound",
    "image_costs",
    "schedule_periodic",
    "slot_durations",
    "sub_program",
    "utilization_copies",
]

# How far above the bound modulo scheduling may raise II before giving up (a safety
# net: in practice the first or second try fits).
_MAX_II_FACTOR = 4.0


def image_costs(program: CrossbarProgram, target: Target) -> CostTable:
    """Price every operator for one image (the pipeline's unit of work)."""
    return price(replace(program, batch=1), target)


@dataclass(frozen=True)
class ThroughputChoice:
    """Copies per MVM operator and lanes per digital operator, and the II they allow.

    ``ii_ns`` is the lowest II any whole-copy duplication and lane choice reaches on
    the chip (the resource bound of the relaxation, see the module docstring).
    """

    copies: dict[str, int]
    lanes: dict[str, int]
    ii_ns: int


@dataclass(frozen=True)
class IIBound:
    """The lower bound on the initiation interval and what sets it."""

    bound_ns: int
    crossbar_ns: int
    digital_ns: int
    operator_ns: int
    binding: str


def _weight_groups(ops: Iterable[MvmOp]) -> list[list[MvmOp]]:
    """Operators that share a weight matrix, directly or through another operator."""
    sets: DisjointSets[str] = DisjointSets()
    ops = list(ops)
    for op in ops:
        ids = [w.id for w in op.base_weights]
        for other in ids[1:]:
            sets.join(other, ids[0])
    groups: dict[str, list[MvmOp]] = defaultdict(list)
    for op in ops:
        groups[sets.find(op.base_weights[0].id)].append(op)
    return list(groups.values())


def _lanes_for(op: DigitalOp, target: Target, limit_ns: int) -> int | None:
    """Return the fewest lanes that bring the operator under ``limit_ns`` (None: none do)."""
    for lanes in range(1, target.chip.digital_lanes_per_op + 1):
        if digital_lanes_ns(op, target, lanes) <= limit_ns:
            return lanes
    return None


def _lanes_within(digital: Sequence[DigitalOp], target: Target,
                  limit_ns: int) -> dict[str, int] | None:
    """Fewest lanes per digital operator under ``limit_ns``, if the units can hold them."""
    lanes: dict[str, int] = {}
    lane_ns = 0
    for op in digital:
        count = _lanes_for(op, target, limit_ns)
        if count is None:
            return None
        lanes[op.id] = count
        lane_ns += count * digital_lanes_ns(op, target, count)
    return lanes if lane_ns <= target.chip.digital_units * limit_ns else None


def balance_lanes(program: CrossbarProgram, target: Target, costs: CostTable,
                  placements: Mapping[str, Sequence[Placement]]) -> dict[str, int]:
    """Lanes per digital operator for the lowest II the placed crossbars allow.

    The copies and crossbars are fixed, so the MVM operators set a floor (each
    crossbar's summed per-image work, the longest MVM operator); above it, the
    smallest limit at which every digital operator fits on few enough lanes and the
    units hold the lane-time is found by bisection. ``costs`` are per-image prices.
    """
    single = slot_durations(program, target, costs, {})
    crossbars = ii_lower_bound(program, target, single, {}, placements).crossbar_ns
    floor_ns = max([crossbars, *(single[op.id] for op in program.mvm_ops())])
    digital = [op for op in program.ops if isinstance(op, DigitalOp)]
    one_lane = [digital_lanes_ns(op, target, 1) for op in digital]
    high = max(floor_ns, max(one_lane, default=1),
               math.ceil(sum(one_lane) / target.chip.digital_units), 1)
    low = max(1, floor_ns)
    while low < high:
        middle = (low + high) // 2
        if _lanes_within(digital, target, middle) is not None:
            high = middle
        else:
            low = middle + 1
    return _lanes_within(digital, target, low) or {op.id: 1 for op in digital}


class _Group:
    """A weight group's per-image time as a function of its copies (vectorised)."""

    def __init__(self, ops: Sequence[MvmOp], costs: CostTable) -> None:
        self.ops = list(ops)
        self.tiles = sum(len(w.tiles) for w in ops[0].base_weights)
        events = [costs.operators[o.id] for o in ops]
        self.max_copies = max(1, max(e.vectors for e in events))
        self._events: list[EventCost] = events
        self._times: dict[int, int] = {}  # the bisections ask for the same counts often

    def time_ns(self, copies: int) -> int:
        known = self._times.get(copies)
        if known is None:
            known = self._times[copies] = sum(e.latency_with_copies(copies)
                                              for e in self._events)
        return known

    def times_ns(self, copies: np.ndarray) -> np.ndarray:
        """Return the summed per-image durations for each entry of ``copies``."""
        total = np.zeros(copies.shape, dtype=np.int64)
        for e in self._events:
            exact = np.ceil(e.vectors / copies) * e.reads_per_vector * e.read_cycle_ns
            total += np.maximum(1, np.ceil(exact + e.fixed_ns - 1e-9)).astype(np.int64)
        return total

    def useful_copies(self) -> np.ndarray:
        """Copy counts that shorten some operator: ``ceil(vectors / c)`` drops there.

        Any other count adds crossbars that split no more work (its copies would hold
        the same per-copy vectors as the useful count below it).
        """
        found: set[int] = set()
        for e in self._events:
            per_copy = np.arange(1, max(1, e.vectors) + 1)
            found.update(np.unique(np.ceil(max(1, e.vectors) / per_copy)).astype(int).tolist())
        return np.array(sorted(c for c in found if c <= self.max_copies), dtype=np.int64)

    def fewest_copies(self, limit_ns: int) -> int | None:
        """Fewest copies whose summed durations fit ``limit_ns`` (None: none do)."""
        if self.time_ns(self.max_copies) > limit_ns:
            return None
        low, high = 1, self.max_copies  # time is non-increasing in copies
        while low < high:
            middle = (low + high) // 2
            if self.time_ns(middle) <= limit_ns:
                high = middle
            else:
                low = middle + 1
        return low


def balance_throughput(program: CrossbarProgram, target: Target,
                       costs: CostTable | None = None,
                       crossbars: int | None = None) -> ThroughputChoice:
    """Choose copies and lanes that minimise the II bound within the chip.

    ``program`` is the lowered program without duplication and ``costs`` its
    per-image prices (:func:`image_costs`). ``crossbars`` defaults to the chip's.

    Raises:
        InputError: the weights do not fit the crossbars even with one copy each.

    """
    costs = costs or image_costs(program, target)
    capacity = target.chip.crossbars if crossbars is None else crossbars
    groups = [_Group(ops, costs) for ops in _weight_groups(program.mvm_ops())]
    digital = [op for op in program.ops if isinstance(op, DigitalOp)]
    units = target.chip.digital_units
    if sum(g.tiles for g in groups) > capacity:
        raise InputError(f"the group's weights need {sum(g.tiles for g in groups)} crossbars "
                         f"but {capacity} are available; a resident pipeline does not fit")

    def feasible(limit_ns: int) -> tuple[dict[int, int], dict[str, int]] | None:
        copies: dict[int, int] = {}
        used = 0
        for index, group in enumerate(groups):
            count = group.fewest_copies(limit_ns)
            if count is None:
                return None
            copies[index] = count
            used += count * group.tiles
            if used > capacity:
                return None
        lanes = _lanes_within(digital, target, limit_ns)
        return None if lanes is None else (copies, lanes)

    one_copy = max((g.time_ns(1) for g in groups), default=1)
    one_lane = [digital_lanes_ns(op, target, 1) for op in digital]
    high = max(one_copy, max(one_lane, default=1), math.ceil(sum(one_lane) / units), 1)
    low = 1
    while low < high:
        middle = (low + high) // 2
        if feasible(middle) is not None:
            high = middle
        else:
            low = middle + 1
    found = feasible(low)
    assert found is not None  # ``high`` started feasible and only moved to feasible values
    group_copies, lanes = found
    copies = {op.id: group_copies[i] for i, g in enumerate(groups) for op in g.ops
              if group_copies[i] > 1}
    logger.info("throughput duplication: II bound %d ns, %d crossbars", low,
                sum(group_copies[i] * g.tiles for i, g in enumerate(groups)))
    return ThroughputChoice(copies=copies, lanes=lanes, ii_ns=low)


def slot_durations(program: CrossbarProgram, target: Target, costs: CostTable,
                   lanes: Mapping[str, int]) -> dict[str, int]:
    """Per-image duration of every operator: MVM on its copies, digital on its lanes."""
    return {op.id: (costs.operators[op.id].latency_ns if isinstance(op, MvmOp)
                    else digital_lanes_ns(op, target, lanes.get(op.id, 1)))
            for op in program.ops}


def ii_lower_bound(program: CrossbarProgram, target: Target,
                   durations: Mapping[str, int], lanes: Mapping[str, int],
                   placements: Mapping[str, Sequence[Placement]]) -> IIBound:
    """Lower bound on II for these durations, lanes and crossbar placements.

    Each crossbar serves every operator placed on it once per image; the digital
    units serve every digital operator's lanes once per image; no operator can start
    a new image before it has finished the last.
    """
    per_crossbar: dict[int, int] = defaultdict(int)
    for op in program.mvm_ops():
        for crossbar in {p.crossbar for p in placements[op.id]}:
            per_crossbar[crossbar] += durations[op.id]
    crossbar_ns, busiest = max(((ns, xb) for xb, ns in per_crossbar.items()),
                               default=(0, -1))
    lane_ns = sum(lanes.get(op.id, 1) * durations[op.id]
                  for op in program.ops if isinstance(op, DigitalOp))
    digital_ns = math.ceil(lane_ns / target.chip.digital_units)
    operator_ns, longest = max(((durations[op.id], op.id) for op in program.ops),
                               default=(0, ""))
    bound = max(crossbar_ns, digital_ns, operator_ns, 1)
    if bound == crossbar_ns:
        binding = f"crossbar {busiest}"
    elif bound == digital_ns:
        binding = "digital units"
    else:
        binding = f"operator {longest}"
    return IIBound(bound, crossbar_ns, digital_ns, operator_ns, binding)


class _Circle:
    """Busy intervals modulo II on one resource: sorted, non-overlapping segments."""

    __slots__ = ("ends", "starts")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def conflict_end(self, start: int, end: int) -> int | None:
        """End of a busy segment overlapping ``[start, end)``, or None if it is free."""
        index = bisect.bisect_left(self.starts, end) - 1
        if index >= 0 and self.ends[index] > start:
            return self.ends[index]
        return None

    def add(self, start: int, end: int) -> None:
        index = bisect.bisect_left(self.starts, start)
        self.starts.insert(index, start)
        self.ends.insert(index, end)


def _pieces(phase: int, duration: int, ii: int) -> tuple[tuple[int, int], ...]:
    """``[phase, phase + duration)`` modulo ``ii`` as one or two plain segments."""
    if phase + duration <= ii:
        return ((phase, phase + duration),)
    return ((phase, ii), (0, phase + duration - ii))


def _shift(circle: _Circle, phase: int, duration: int, ii: int) -> int:
    """0 if the circle is free at ``phase`` for ``duration``, else how far to move on."""
    for start, end in _pieces(phase, duration, ii):
        busy_end = circle.conflict_end(start, end)
        if busy_end is not None:
            return max(1, (busy_end - phase) % ii)
    return 0


def _try_schedule(program: CrossbarProgram, durations: Mapping[str, int],
                  lanes: Mapping[str, int], resource_of: Mapping[str, int],
                  units: int, start_ns: int,
                  ii: int) -> dict[str, tuple[int, tuple[int, ...]]] | None:
    """Modulo list scheduling at ``ii``: op -> (offset, digital units), or None."""
    shared: defaultdict[int, _Circle] = defaultdict(_Circle)
    unit_circles = [_Circle() for _ in range(units)]
    placed: dict[str, tuple[int, tuple[int, ...]]] = {}
    for op in program.ops:
        duration = durations[op.id]
        if duration > ii:
            return None
        earliest = max((placed[d][0] + durations[d] for d in program.deps[op.id]),
                       default=start_ns)
        time = earliest
        if isinstance(op, MvmOp):
            circle = shared[resource_of[op.id]]
            # Operators sharing crossbars are packed end to end (the first at its
            # earliest start, each next one where the busy block ends), so their
            # summed durations fill the period without holes between them.
            candidates = sorted(earliest + (end - earliest) % ii for end in circle.ends)
            for time in candidates or [earliest]:
                if _shift(circle, time % ii, duration, ii) == 0:
                    break
            else:
                return None
            for piece in _pieces(time % ii, duration, ii):
                circle.add(*piece)
            placed[op.id] = (time, ())
            continue
        wanted = lanes.get(op.id, 1)
        while True:
            phase = time % ii
            free, moves = [], []
            for index, circle in enumerate(unit_circles):
                move = _shift(circle, phase, duration, ii)
                if move == 0:
                    free.append(index)
                    if len(free) == wanted:
                        break
                else:
                    moves.append(move)
            if len(free) == wanted:
                break
            time += min(moves)
            if time - earliest >= ii:
                return None
        for index in free:
            for piece in _pieces(time % ii, duration, ii):
                unit_circles[index].add(*piece)
        placed[op.id] = (time, tuple(free))
    return placed


def _resources(program: CrossbarProgram,
               placements: Mapping[str, Sequence[Placement]]) -> dict[str, int]:
    """MVM op -> an id shared by every op it shares a crossbar with (directly or not)."""
    owner: dict[int, str] = {}
    sets: DisjointSets[str] = DisjointSets()
    for op in program.mvm_ops():
        for p in placements[op.id]:
            if p.crossbar in owner:
                sets.join(op.id, owner[p.crossbar])
            else:
                owner[p.crossbar] = op.id
    roots: dict[str, int] = {}
    return {op.id: roots.setdefault(sets.find(op.id), len(roots))
            for op in program.mvm_ops()}


def schedule_periodic(program: CrossbarProgram, target: Target, costs: CostTable,
                      lanes: Mapping[str, int],
                      placements: Mapping[str, Sequence[Placement]], *,
                      start_ns: int = 0) -> tuple[PeriodicSchedule, IIBound]:
    """Make a periodic schedule of ``program``'s operators, and the II bound it meets.

    ``costs`` are the per-image prices (:func:`image_costs`) of ``program`` (copies
    included), ``placements`` each MVM operator's crossbars, ``start_ns`` when its
    tiles are in place (offsets are measured from the same origin). ``program`` may
    be a segment of a larger one (:func:`sub_program`).

    Raises:
        InputError: no schedule within the II limit.

    """
    durations = slot_durations(program, target, costs, lanes)
    bound = ii_lower_bound(program, target, durations, lanes, placements)
    resource_of = _resources(program, placements)
    ii = bound.bound_ns
    while ii <= _MAX_II_FACTOR * bound.bound_ns:
        placed = _try_schedule(program, durations, lanes, resource_of,
                               target.chip.digital_units, start_ns, ii)
        if placed is not None:
            break
        ii += max(1, ii // 200)
    else:
        raise InputError(f"no periodic schedule within {_MAX_II_FACTOR:g}x the II bound "
                         f"({bound.bound_ns} ns)")
    slots = tuple(
        PeriodicSlot(op=op.id, offset_ns=placed[op.id][0], duration_ns=durations[op.id],
                     placements=tuple(placements[op.id]) if isinstance(op, MvmOp) else (),
                     units=placed[op.id][1])
        for op in program.ops
    )
    schedule = PeriodicSchedule(ii_ns=ii, slots=slots)
    logger.info("pipeline: II %d ns (bound %d ns, %s), one image %d ns", ii, bound.bound_ns,
                bound.binding, schedule.latency_ns())
    return schedule, bound


def sub_program(program: CrossbarProgram, op_ids: Iterable[str]) -> CrossbarProgram:
    """Return the operators ``op_ids`` of ``program`` as a program of their own.

    Dependencies on operators outside the set are dropped: a segment runs after the
    segments that produce its inputs.
    """
    wanted = set(op_ids)
    ops = tuple(op for op in program.ops if op.id in wanted)
    deps = {op.id: tuple(d for d in program.deps[op.id] if d in wanted) for op in ops}
    return replace(program, ops=ops, deps=deps)


def _utilization_choice(program: CrossbarProgram, costs: CostTable, ii_ns: int,
                        capacity: int) -> tuple[float, float, dict[str, int]]:
    """Best utilisation over copies per weight group with at most ``capacity`` crossbars.

    Lagrangian relaxation of the crossbar limit inside a bisection on the ratio: a
    ratio ``r`` is out of reach when, for some multiplier ``mu >= 0``, the best
    per-group choice of ``occupied - (r II + mu) allocated`` plus ``mu capacity`` is
    negative (every choice that fits would have to make it non-negative). The
    multiplier is minimised by bisection on the allocation it induces.

    Returns:
        An upper bound on the utilisation, a utilisation reached by a choice that fits,
        and that choice's copies (operators with more than one).

    """
    groups = [_Group(ops, costs) for ops in _weight_groups(program.mvm_ops())]
    if not groups:
        return 0.0, 0.0, {}
    useful = [group.useful_copies() for group in groups]
    width = max(len(u) for u in useful)
    counts = np.ones((len(groups), width), dtype=np.int64)
    allocated = np.zeros((len(groups), width))
    occupied = np.zeros((len(groups), width))
    valid = np.zeros((len(groups), width), dtype=bool)
    for row, (group, usable) in enumerate(zip(groups, useful, strict=True)):
        times = group.times_ns(usable)
        fits = times <= ii_ns
        if not fits.any():
            return 0.0, 0.0, {}
        size = len(usable)
        counts[row, :size] = usable
        valid[row, :size] = fits
        allocated[row, :size] = group.tiles * usable
        occupied[row, :size] = group.tiles * usable * times
    rows = np.arange(len(groups))

    def pick(price: float) -> np.ndarray:
        return np.argmax(np.where(valid, occupied - price * allocated, -np.inf), axis=1)

    def ratio_of(picks: np.ndarray) -> tuple[float, float]:
        alloc = float(allocated[rows, picks].sum())
        return float(occupied[rows, picks].sum()) / (ii_ns * alloc), alloc

    def dual(ratio: float) -> tuple[float, np.ndarray | None]:
        """Min over mu of the Lagrangian value, and a fitting choice met on the way."""
        low, high = 0.0, float(ii_ns) * 4
        best_value, fitting = np.inf, None
        for _ in range(40):
            mu = (low + high) / 2
            picks = pick(ratio * ii_ns + mu)
            alloc = float(allocated[rows, picks].sum())
            value = float((occupied - (ratio * ii_ns + mu) * allocated)[rows, picks].sum()
                          + mu * capacity)
            best_value = min(best_value, value)
            if alloc > capacity:
                low = mu
            else:
                high = mu
                fitting = picks
        return best_value, fitting

    fewest = np.argmax(valid, axis=1)  # minimal copies that fit the II
    best_ratio, alloc = ratio_of(fewest)
    best_picks = fewest if alloc <= capacity else None
    low, high = 0.0, 1.0
    for _ in range(30):
        middle = (low + high) / 2
        value, fitting = dual(middle)
        if fitting is not None:
            reached, alloc = ratio_of(fitting)
            if alloc <= capacity and reached > best_ratio:
                best_ratio, best_picks = reached, fitting
        if value < 0:
            high = middle
        else:
            low = middle
    bound = max(high, best_ratio)
    if best_picks is None:
        return bound, 0.0, {}
    copies = {op.id: int(counts[row, best_picks[row]]) for row, group in enumerate(groups)
              for op in group.ops if counts[row, best_picks[row]] > 1}
    return bound, best_ratio, copies


def best_allocated_utilization(program: CrossbarProgram, costs: CostTable, ii_ns: int,
                               crossbars: int) -> float:
    """Upper bound on steady-state utilisation of allocated crossbars at ``ii_ns``.

    ``program`` is the lowered program without duplication and ``costs`` its per-image
    prices. A weight group with ``c`` copies allocates ``tiles * c`` crossbars, each
    busy its operators' summed per-image time ``S(c)`` per period, so the utilisation
    is ``sum(tiles c S(c)) / (II sum(tiles c))`` over copy counts with ``S(c) <= II``
    and at most ``crossbars`` allocated. The bound holds for every whole-copy
    duplication on the chip (Lagrangian relaxation, :func:`_utilization_choice`).
    """
    return _utilization_choice(program, costs, ii_ns, crossbars)[0]


def utilization_copies(program: CrossbarProgram, costs: CostTable, ii_ns: int,
                       crossbars: int) -> tuple[dict[str, int] | None, float]:
    """Return copies that fit ``crossbars`` with the best utilisation found at ``ii_ns``.

    More copies than the II needs shorten each image's pass over a weight group (the
    copies split its vectors) while the part of its time copies do not divide (buffers,
    interconnect) is spent on every copy, so the crossbar-time a group occupies per
    image grows with its copies.

    Returns:
        The copies (None when no choice fits) and :func:`best_allocated_utilization`'s
        bound, computed on the way.

    """
    bound, reached, copies = _utilization_choice(program, costs, ii_ns, crossbars)
    return (copies if reached > 0 else None), bound
