"""Segmented pipelining: a group whose weights do not fit the chip, run over many images.

When the weights do not fit at once (dynamic mapping, the ``edge`` target), the
operators are split into *segments* whose tiles fit the crossbars. A micro-batch of
images runs through the segments one after another: each segment writes the tiles it
needs that an earlier segment of the same pass did not leave in place, then pipelines
the micro-batch's images (a periodic schedule, :mod:`.periodic`). Activations that
cross a segment boundary wait in the on-chip buffer, or off chip when a micro-batch's
do not fit (the compile driver picks the micro-batch size that minimises time: larger
ones write less often per image but buffer more).

Writes overlap compute where crossbars allow: a segment's write into a crossbar the
previous segment does not use is *prefetched*, made while that segment computes (the
first segment's behind the last one of the previous pass), and the segment waits only
for what is not done by its first slot
(:meth:`~enasa_compiler.ir.PipelineSegment.wait_ns`). Every crossbar writes at once,
as in the batch schedule, so a segment's in-place writes cost its longest one;
prefetching never makes a segment wait longer.
:func:`segmented_pipelines` offers the compile driver candidates to price: the plain
crossbar choice with its prefetches, crossbars chosen to avoid the previous segment's,
and double buffering (segments of half the chip on alternate crossbars).

Which operators share a segment decides how often weights are written. The order
follows OPS's ranking (:func:`~.ops.rank_key`): among the ready operators the next one
is the one that reads what the segment's operators read (data reuse), belongs to the
same supernet layer (weight-sharing operators of different subnets land in one
segment and write their matrix once), then the most critical. ``fcfs`` takes the
operators in topological order instead, the ablation baseline.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from enasa_compiler.errors import InputError
from enasa_compiler.ir import (
    CostTable,
    CrossbarProgram,
    MvmOp,
    Op,
    PipelineSegment,
    Placement,
    ProgramEvent,
)
from enasa_compiler.passes.mapping.ops import RankingPolicy, rank_key
from enasa_compiler.passes.mapping.periodic import (
    IIBound,
    balance_lanes,
    schedule_periodic,
    sub_program,
)
from enasa_compiler.targets.target import Target

logger = logging.getLogger(__name__)

__all__ = [
    "SegmentedPlan",
    "form_segments",
    "segment_order",
    "segmented_pipeline",
    "segmented_pipelines",
]


@dataclass(frozen=True)
class SegmentedPlan:
    """The segments of a dynamic group and each one's II bound."""

    segments: tuple[PipelineSegment, ...]
    bounds: tuple[IIBound, ...]


def _critical_paths(program: CrossbarProgram, costs: CostTable) -> dict[str, int]:
    """Longest latency path from each operator to the end of the group."""
    consumers: dict[str, list[str]] = {op.id: [] for op in program.ops}
    for op in program.ops:
        for dep in program.deps[op.id]:
            consumers[dep].append(op.id)
    path: dict[str, int] = {}
    for op in reversed(program.ops):
        path[op.id] = costs.latency_ns(op.id) + max(
            (path[c] for c in consumers[op.id]), default=0)
    return path


def segment_order(program: CrossbarProgram, costs: CostTable,
                  policy: RankingPolicy = RankingPolicy.OPS) -> list[Op]:
    """Order the operators for segment forming: OPS's ranking or first come first served.

    Every order is topological. Under OPS the candidates are ranked against the
    operators taken since the last segment boundary could fall, approximated by the
    last 64 taken (the current segment's neighbourhood).
    """
    if policy is RankingPolicy.FCFS:
        return list(program.ops)
    index = {op.id: i for i, op in enumerate(program.ops)}
    critical = _critical_paths(program, costs)
    waiting = {op.id: len(set(program.deps[op.id])) for op in program.ops}
    consumers: dict[str, list[Op]] = {op.id: [] for op in program.ops}
    for op in program.ops:
        for dep in set(program.deps[op.id]):
            consumers[dep].append(op)
    ready = [op for op in program.ops if waiting[op.id] == 0]
    order: list[Op] = []
    while ready:
        recent = order[-64:]
        best = max(ready, key=lambda op: rank_key(op, recent, critical[op.id], index[op.id]))
        ready.remove(best)
        order.append(best)
        for consumer in consumers[best.id]:
            waiting[consumer.id] -= 1
            if waiting[consumer.id] == 0:
                ready.append(consumer)
    return order


def form_segments(order: Sequence[Op], capacity: int) -> list[list[Op]]:
    """Cut the ordered operators into runs whose distinct tiles fit ``capacity``.

    Raises:
        InputError: one operator needs more crossbars than the chip has.

    """
    segments: list[list[Op]] = [[]]
    tiles: set[str] = set()
    for op in order:
        needed = {t.id for t in op.tiles} if isinstance(op, MvmOp) else set()
        if len(needed) > capacity:
            raise InputError(f"operator '{op.id}' needs {len(needed)} crossbars at once but "
                             f"the chip has {capacity}; the model does not fit the chip")
        if len(tiles | needed) > capacity:
            segments.append([])
            tiles = set()
        segments[-1].append(op)
        tiles |= needed
    return [s for s in segments if s]


def _assign(segments: Sequence[Sequence[Op]], capacity: int, write_costs: CostTable,
            avoid_previous: bool = False,
            first_avoid: frozenset[int] = frozenset()) -> list[dict[str, int]]:
    """Crossbars for each segment's tiles (tile id -> crossbar), one pass.

    A segment keeps the tiles an earlier segment of the pass left in place; the others
    go into empty crossbars, then into those whose tile is needed latest. With
    ``avoid_previous``, crossbars the previous segment does not use come first (empty
    or not), so that more writes can overlap its images; ``first_avoid`` stands for the
    previous segment of the first one (the last one of the previous pass).
    """
    next_use: list[dict[str, int]] = []
    later: dict[str, int] = {}
    for position in range(len(segments) - 1, -1, -1):
        next_use.append(dict(later))
        for op in segments[position]:
            if isinstance(op, MvmOp):
                for used in op.tiles:
                    later[used.id] = position
    next_use.reverse()
    holder: dict[int, str] = {}
    result: list[dict[str, int]] = []
    previous: frozenset[int] = first_avoid
    for position, segment in enumerate(segments):
        needed = list(dict.fromkeys(t.id for op in segment if isinstance(op, MvmOp)
                                    for t in op.tiles))
        where = {tile: xb for xb, tile in holder.items() if tile in set(needed)}
        missing = [t for t in needed if t not in where]
        keep = set(where.values())
        empty = [xb for xb in range(capacity) if xb not in holder]
        reusable = sorted((xb for xb in holder if xb not in keep),
                          key=lambda xb: -next_use[position].get(holder[xb], len(segments)))
        free = empty + reusable
        if avoid_previous:
            free = ([xb for xb in free if xb not in previous]
                    + [xb for xb in free if xb in previous])
        for tile, crossbar in zip(missing, free, strict=False):
            where[tile] = crossbar
            holder[crossbar] = tile
        result.append(where)
        previous = frozenset(where.values())
    return result


def _writes(assigned: Sequence[dict[str, int]], kept: Sequence[set[str]],
            write_costs: CostTable, overlap: bool) -> list[tuple[ProgramEvent, ...]]:
    """Each segment's writes: prefetched where the previous segment leaves the crossbar.

    A write of segment ``k`` is prefetched (made while segment ``k - 1`` computes, from
    its start) when segment ``k - 1`` does not use its crossbar; the first segment's
    previous one is the last of the previous pass. One segment has no previous one.
    """
    result = []
    for position, where in enumerate(assigned):
        previous = (set(assigned[position - 1].values())
                    if overlap and len(assigned) > 1 else set(where.values()))
        writes = []
        for tile, crossbar in where.items():
            if tile in kept[position]:
                continue
            cost = write_costs.writes[tile]
            writes.append(ProgramEvent(tile=tile, crossbar=crossbar, start_ns=0,
                                       end_ns=cost.latency_ns, energy_pj=cost.energy_pj,
                                       prefetch=crossbar not in previous))
        result.append(tuple(writes))
    return result


def _kept(assigned: Sequence[dict[str, int]]) -> list[set[str]]:
    """Return the tiles each segment finds in place (left by an earlier one of the pass)."""
    kept: list[set[str]] = []
    holder: dict[int, str] = {}
    for where in assigned:
        kept.append({tile for tile, xb in where.items() if holder.get(xb) == tile})
        for tile, xb in where.items():
            holder[xb] = tile
    return kept


def _build(program: CrossbarProgram, target: Target, image_costs: CostTable,
           groups: Sequence[Sequence[Op]], assigned: Sequence[dict[str, int]],
           writes: Sequence[tuple[ProgramEvent, ...]]) -> SegmentedPlan:
    segments, bounds = [], []
    for ops, where, mine in zip(groups, assigned, writes, strict=True):
        sub = sub_program(program, (op.id for op in ops))
        placements: dict[str, tuple[Placement, ...]] = {
            op.id: tuple(Placement(t.id, where[t.id]) for t in op.tiles)
            for op in sub.mvm_ops()}
        lanes = balance_lanes(sub, target, image_costs, placements)
        start = max((w.end_ns for w in mine if not w.prefetch), default=0)
        schedule, bound = schedule_periodic(sub, target, image_costs, lanes, placements,
                                            start_ns=start)
        segments.append(PipelineSegment(writes=mine, schedule=schedule))
        bounds.append(bound)
    return SegmentedPlan(tuple(segments), tuple(bounds))


WRITES_WORTH_HIDING = 0.01
"""Other crossbar choices are tried only when one pass's writes take at least this share
of one image's compute time through the segments: hiding writes cannot save more than
their time, and building the choices costs seconds on a full-size group."""


def _writes_matter(plan: SegmentedPlan) -> bool:
    writes_ns = sum(max(seg.writes_end_ns(), seg.prefetch_end_ns()) for seg in plan.segments)
    compute_ns = sum(seg.schedule.latency_ns() for seg in plan.segments)
    return writes_ns >= WRITES_WORTH_HIDING * compute_ns


def segmented_pipelines(program: CrossbarProgram, target: Target, costs: CostTable,
                        image_costs: CostTable,
                        policy: RankingPolicy = RankingPolicy.OPS,
                        overlap: bool = True) -> list[SegmentedPlan]:
    """Return the candidate segmented pipelines of ``program``; keep the fastest.

    Without ``overlap``: one, every write in place (the sequential form). With it,
    first the same segments and crossbars with the writes the previous segment leaves
    room for prefetched (never slower than sequential: a segment waits for its
    prefetched writes at most what it waited for them in place). Then, unless one
    pass's writes take under :data:`WRITES_WORTH_HIDING` of one image's compute time,
    when that prefetches more writes, crossbars chosen to avoid the previous segment's
    (which may evict tiles needed sooner); then segments of at most half the chip on
    alternate crossbars (double buffering: more segments and writes, but all of them
    hidden when the images take longer than the writes).
    """
    capacity = target.chip.crossbars
    order = segment_order(program, costs, policy)
    groups = form_segments(order, capacity)
    plans = [_candidate(program, target, costs, image_costs, groups,
                        _assign(groups, capacity, costs), overlap)]
    if overlap and len(groups) > 1 and _writes_matter(plans[0]):
        avoiding = _avoiding(groups, capacity, costs)
        avoiding_writes = _writes(avoiding, _kept(avoiding), costs, True)
        if _prefetched(avoiding_writes) > _prefetched(
                [seg.writes for seg in plans[0].segments]):
            plans.append(_build(program, target, image_costs, groups, avoiding,
                                avoiding_writes))
        # Double buffering: segments of at most half the chip, on alternate crossbars,
        # so that each one's writes can all hide behind the previous one's images.
        try:
            halves = form_segments(order, capacity // 2)
        except InputError:
            halves = []
        if len(halves) > 1:
            plans.append(_candidate(program, target, costs, image_costs, halves,
                                    _avoiding(halves, capacity, costs), True))
    for plan in plans:
        logger.info("segmented pipeline (%s): %d segments, %d tile writes per pass, %d "
                    "prefetched", policy, len(plan.segments),
                    sum(len(s.writes) for s in plan.segments),
                    _prefetched([s.writes for s in plan.segments]))
    return plans


def _avoiding(groups: Sequence[Sequence[Op]], capacity: int,
              costs: CostTable) -> list[dict[str, int]]:
    """Crossbars that avoid the previous segment's, the first segment's included."""
    first = _assign(groups, capacity, costs, avoid_previous=True)
    return _assign(groups, capacity, costs, avoid_previous=True,
                   first_avoid=frozenset(first[-1].values()))


def _candidate(program: CrossbarProgram, target: Target, costs: CostTable,
               image_costs: CostTable, groups: Sequence[Sequence[Op]],
               assigned: Sequence[dict[str, int]], overlap: bool) -> SegmentedPlan:
    writes = _writes(assigned, _kept(assigned), costs, overlap)
    return _build(program, target, image_costs, groups, assigned, writes)


def _prefetched(writes: Sequence[Sequence[ProgramEvent]]) -> int:
    return sum(1 for mine in writes for w in mine if w.prefetch)


def segmented_pipeline(program: CrossbarProgram, target: Target, costs: CostTable,
                       image_costs: CostTable,
                       policy: RankingPolicy = RankingPolicy.OPS,
                       overlap: bool = True) -> SegmentedPlan:
    """Split ``program`` into segments that fit the chip and pipeline each.

    ``costs`` price the program over its batch (for the critical-path ranking and the
    tile writes), ``image_costs`` per image (the slots). The first candidate of
    :func:`segmented_pipelines` (the chip's crossbars chosen as without overlap),
    without building the others.
    """
    capacity = target.chip.crossbars
    groups = form_segments(segment_order(program, costs, policy), capacity)
    return _candidate(program, target, costs, image_costs, groups,
                      _assign(groups, capacity, costs), overlap)


def segment_of(plan: SegmentedPlan) -> Mapping[str, int]:
    """Operator id -> the index of the segment that runs it."""
    return {slot.op: index for index, seg in enumerate(plan.segments)
            for slot in seg.schedule.slots}
