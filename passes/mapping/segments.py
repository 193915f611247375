"""Segmented pipelining: a group whose weights do not fit the chip, run over many images.

When the weights do not fit at once (dynamic mapping, the ``edge`` target), the
operators are split into *segments* whose tiles fit the crossbars. A micro-batch of
images runs through the segments one after another: each segment writes the tiles it
needs that an earlier segment of the same pass did not leave in place, then pipelines
the micro-batch's images (a periodic schedule, :mod:`.periodic`). Activations that
cross a segment boundary wait in the on-chip buffer, or off chip when a micro-batch's
do not fit (the compile driver picks the micro-batch size that minimises time: larger
ones write less often per image but buffer more).

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

__all__ = ["SegmentedPlan", "form_segments", "segment_order", "segmented_pipeline"]


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


def _assign(segments: Sequence[Sequence[Op]], capacity: int,
            write_costs: CostTable) -> list[tuple[tuple[ProgramEvent, ...], dict[str, int]]]:
    """Crossbars for each segment's tiles; the writes a pass needs (relative times)."""
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
    result = []
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
        writes = []
        for tile, crossbar in zip(missing, free, strict=False):
            cost = write_costs.writes[tile]
            writes.append(ProgramEvent(tile=tile, crossbar=crossbar, start_ns=0,
                                       end_ns=cost.latency_ns, energy_pj=cost.energy_pj))
            where[tile] = crossbar
            holder[crossbar] = tile
        result.append((tuple(writes), where))
    return result


def segmented_pipeline(program: CrossbarProgram, target: Target, costs: CostTable,
                       image_costs: CostTable,
                       policy: RankingPolicy = RankingPolicy.OPS) -> SegmentedPlan:
    """Split ``program`` into segments that fit the chip and pipeline each.

    ``costs`` price the program over its batch (for the critical-path ranking and the
    tile writes), ``image_costs`` per image (the slots).
    """
    capacity = target.chip.crossbars
    groups = form_segments(segment_order(program, costs, policy), capacity)
    assigned = _assign(groups, capacity, costs)
    segments, bounds = [], []
    for ops, (writes, where) in zip(groups, assigned, strict=True):
        sub = sub_program(program, (op.id for op in ops))
        placements: dict[str, tuple[Placement, ...]] = {
            op.id: tuple(Placement(t.id, where[t.id]) for t in op.tiles)
            for op in sub.mvm_ops()}
        lanes = balance_lanes(sub, target, image_costs, placements)
        start = max((w.end_ns for w in writes), default=0)
        schedule, bound = schedule_periodic(sub, target, image_costs, lanes, placements,
                                            start_ns=start)
        segments.append(PipelineSegment(writes=writes, schedule=schedule))
        bounds.append(bound)
    logger.info("segmented pipeline (%s): %d segments, %d tile writes per pass", policy,
                len(segments), sum(len(s.writes) for s in segments))
    return SegmentedPlan(tuple(segments), tuple(bounds))


def segment_of(plan: SegmentedPlan) -> Mapping[str, int]:
    """Operator id -> the index of the segment that runs it."""
    return {slot.op: index for index, seg in enumerate(plan.segments)
            for slot in seg.schedule.slots}
