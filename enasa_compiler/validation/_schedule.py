"""The schedule checks behind ``validate``: bookings, dependencies, contents, prices.

Each reads an indexed plan and yields every violation it finds. They re-derive what a
crossbar holds at each moment from the programming events, and what each event must
cost from the pricing step, so that a mapper's bug cannot hide by agreeing with
itself. Each runs in O(n log n) in the plan's events: sweeps in start order and binary
searches, never a scan of pairs.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import replace

from enasa_compiler._text import plural
from enasa_compiler.ir import OpKind, WeightMatrix
from enasa_compiler.plan import Plan, ProgramEvent
from enasa_compiler.plan.totals import compute_totals
from enasa_compiler.validation._checks import (
    DEPENDENCY,
    DOUBLE_BOOKED,
    DURATION,
    NOT_PROGRAMMED,
    PLACEMENT,
    TOTALS,
    Check,
    Holdings,
    PlanIndex,
    Violation,
    close_enough,
    compare_totals,
    quote_names,
)

logger = logging.getLogger(__name__)

__all__ = ["SCHEDULE_CHECKS"]


# ---- schedule ----------------------------------------------------------------------
# (start_ns, end_ns, is_compute, name): a tuple, its label written only when reported
_Busy = tuple[int, int, bool, str]


def _busy_text(item: _Busy) -> str:
    start_ns, end_ns, is_compute, name = item
    what = f"operator '{name}'" if is_compute else f"programming of tile '{name}'"
    return f"{what} [{start_ns}, {end_ns})"


def _overlaps(resource: str, intervals: list[_Busy]) -> Iterator[Violation]:
    """Report each interval that starts before an earlier one on the resource ends.

    A sweep in start order, O(n log n): each overlapping interval is reported once,
    with the one still running that ends last, not with every interval it overlaps.
    """
    latest: _Busy | None = None
    # Half-open intervals: an empty one holds nothing, one ending at t frees t.
    for item in sorted(i for i in intervals if i[1] > i[0]):
        if latest is not None and latest[1] > item[0]:
            yield Violation(DOUBLE_BOOKED, f"{resource}: {_busy_text(latest)} overlaps "
                                           f"{_busy_text(item)}")
        if latest is None or item[1] > latest[1]:
            latest = item


def _check_double_booking(index: PlanIndex) -> Iterator[Violation]:
    """Check no crossbar is run or written by two events at once, nor a unit shared."""
    crossbars: dict[int, list[_Busy]] = defaultdict(list)
    units: dict[int, list[_Busy]] = defaultdict(list)
    for write in index.plan.program:
        crossbars[write.crossbar].append((write.start_ns, write.end_ns, False, write.tile))
    for event in index.plan.compute:
        busy = (event.start_ns, event.end_ns, True, event.op)
        for crossbar in {p.crossbar for p in event.placements}:
            crossbars[crossbar].append(busy)
        if event.unit is not None:
            units[event.unit].append(busy)
    for crossbar in sorted(crossbars):
        yield from _overlaps(f"crossbar {crossbar}", crossbars[crossbar])
    for unit in sorted(units):
        yield from _overlaps(f"digital unit {unit}", units[unit])


def _on_cycles(graph: dict[str, set[str]]) -> list[str]:
    """Nodes left after peeling sources and sinks: those on (or between) cycles."""
    alive = set(graph)
    preds = {n: {d for d in graph[n] if d in alive} for n in alive}
    succs: dict[str, set[str]] = {n: set() for n in alive}
    for node, deps in preds.items():
        for dep in deps:
            succs[dep].add(node)
    for edges in (preds, succs):
        queue = [n for n in alive if not edges[n]]
        while queue:
            node = queue.pop()
            alive.discard(node)
            for other in (succs if edges is preds else preds)[node]:
                edges[other].discard(node)
                if other in alive and not edges[other]:
                    queue.append(other)
    return [op_id for op_id in graph if op_id in alive]


def _check_dependencies(index: PlanIndex) -> Iterator[Violation]:
    """Check operators start after their deps and their inputs' producers end."""
    graph: dict[str, set[str]] = {}
    for op in index.ops.values():
        producers = {index.producers[v] for v in op.inputs if v in index.producers}
        graph[op.id] = {d for d in (*op.deps, *producers) if d in index.ops}
    cycle = _on_cycles(graph)
    if cycle:
        yield Violation(DEPENDENCY, f"operators {quote_names(cycle)} depend on each other "
                                    "in a cycle")
    for op in index.ops.values():
        event = index.events.get(op.id)
        if event is None:
            continue
        reasons = {d: f"depends on '{d}'" for d in op.deps}
        for value in op.inputs:
            producer = index.producers.get(value)
            if producer is not None:
                reasons.setdefault(producer, f"reads '{value}' from '{producer}'")
        for dep, reason in reasons.items():
            before = index.events.get(dep)
            if dep != op.id and before is not None and event.start_ns < before.end_ns:
                yield Violation(DEPENDENCY, f"operator '{op.id}' starts at {event.start_ns} "
                                            f"ns but {reason}, which ends at "
                                            f"{before.end_ns} ns")


def _check_programming(index: PlanIndex) -> Iterator[Violation]:
    """Check each tile an MVM reads is the last one written into its crossbar."""
    writes: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
    for held in index.plan.initial:  # left by a previous plan: written before time 0
        writes[held.crossbar].append((-1, -1, held.tile))
    for write in index.plan.program:
        writes[write.crossbar].append((write.end_ns, write.start_ns, write.tile))
    for history in writes.values():
        history.sort()
    packed: dict[int, list[ProgramEvent]] = defaultdict(list)
    for write in index.plan.program:
        if write.packed:
            packed[write.crossbar].append(write)
    for events in packed.values():
        events.sort(key=lambda w: (w.end_ns, w.start_ns, w.tile))
    for event in index.plan.compute:
        for p in event.placements:
            history = writes.get(p.crossbar, [])
            last = bisect.bisect_right(history, (event.start_ns, math.inf, "")) - 1
            if last >= 0 and history[last][2] == p.tile:
                continue
            if p.crossbar in packed and _packed_holds(index, writes[p.crossbar],
                                                      packed[p.crossbar], last, p.tile):
                continue
            where = (f"operator '{event.op}' reads tile '{p.tile}' on crossbar {p.crossbar} "
                     f"at {event.start_ns} ns")
            if last < 0:
                yield Violation(NOT_PROGRAMMED, f"{where}, before anything was written there")
            else:
                end_ns, start_ns, tile = history[last]
                yield Violation(NOT_PROGRAMMED, f"{where}, which then holds tile '{tile}' "
                                                f"(written [{start_ns}, {end_ns}))")


def _packed_holds(index: PlanIndex, history: list[tuple[int, int, str]],
                  packed: list[ProgramEvent], last: int, tile_id: str) -> bool:
    """Whether the crossbar holds ``tile_id`` after its first ``last + 1`` writes.

    ``history`` is the crossbar's (end, start, tile) list sorted, ``packed`` its packed
    writes in the same order; a packed write replaces only what its region overlaps.
    """
    if last < 0:
        return False
    done = history[: last + 1]
    by_key = {(w.end_ns, w.start_ns, w.tile): w for w in packed}
    holdings = Holdings(index.tiles)
    for end_ns, start_ns, tile in done:
        write = by_key.get((end_ns, start_ns, tile))
        if write is None:  # a plain write (or the initial state): the whole crossbar
            holdings.place(0, tile)
        else:
            holdings.apply(replace(write, crossbar=0))
    return holdings.holds(0, tile_id)


def _writing(write: ProgramEvent) -> str:
    return f"programming of tile '{write.tile}' on crossbar {write.crossbar}"


def _check_durations(index: PlanIndex) -> Iterator[Violation]:
    """Check events last as long as the cost model says; operators record its price."""
    target = index.target
    for write in index.plan.program:
        length = write.end_ns - write.start_ns
        tile = index.tiles.get(write.tile)
        if length < 0:
            yield Violation(DURATION, f"{_writing(write)} ends at {write.end_ns} ns, before "
                                      f"it starts at {write.start_ns} ns")
        if target is None or tile is None:
            continue
        write_cost = index.write_costs[tile.id]
        if length >= 0 and length < write_cost.latency_ns:
            yield Violation(DURATION, f"{_writing(write)} lasts {length} ns, the cost model "
                                      f"needs {write_cost.latency_ns} ns")
        if not close_enough(write.energy_pj, write_cost.energy_pj):
            yield Violation(DURATION, f"{_writing(write)} records {write.energy_pj} pJ, the "
                                      f"cost model gives {write_cost.energy_pj:.3f} pJ")
    for event in index.plan.compute:
        length = event.end_ns - event.start_ns
        cost = index.costs.get(event.op)
        if length < 0:
            yield Violation(DURATION, f"operator '{event.op}' ends at {event.end_ns} ns, "
                                      f"before it starts at {event.start_ns} ns")
        elif cost is not None and length < cost.latency_ns:
            yield Violation(DURATION, f"operator '{event.op}' runs {length} ns, the cost "
                                      f"model needs {cost.latency_ns} ns")
    for op in index.ops.values():
        cost = index.costs.get(op.id)
        if cost is None:
            continue
        if op.latency_ns != cost.latency_ns:
            yield Violation(DURATION, f"operator '{op.id}' records latency_ns "
                                      f"{op.latency_ns}, the cost model gives "
                                      f"{cost.latency_ns}")
        if not close_enough(op.energy_pj, cost.energy_pj):
            yield Violation(DURATION, f"operator '{op.id}' records energy_pj {op.energy_pj},"
                                      f" the cost model gives {cost.energy_pj:.3f}")


def _check_totals(index: PlanIndex) -> Iterator[Violation]:
    """Check the recorded totals equal the ones re-derived from the schedule."""
    plan, target = index.plan, index.target
    if target is None:
        return
    derived = compute_totals(
        plan.operators, plan.tiles(), plan.program, plan.compute,
        chip_crossbars=target.chip.crossbars,
        crossbar_cells=target.crossbar.rows * target.crossbar.cols,
    )
    # Energies are sums of terms rounded to 3 decimals; every other float is a ratio
    # stored unrounded and compared relatively only (docs/validation.md).
    rounded_terms = {"compute_energy_pj": len(plan.operators),
                     "write_energy_pj": len(plan.program),
                     "energy_pj": len(plan.operators) + len(plan.program)}
    yield from compare_totals(plan.totals, derived, "totals", "the schedule",
                              rounded_terms)
    yield from _check_bounds(plan)


def _check_bounds(plan: Plan) -> Iterator[Violation]:
    """Reject a lower bound above the plan's own makespan, or a wrong gap: false claims."""
    bound = plan.bounds.get("lower_bound_ns")
    if bound is None:
        return
    makespan = plan.totals.makespan_ns
    if bound > makespan:
        yield Violation(TOTALS, f"bounds.lower_bound_ns {bound} exceeds the makespan "
                                f"{makespan}")
    gap = plan.bounds.get("gap")
    expected = (makespan - bound) / makespan if makespan else 0.0
    if gap is not None and not math.isclose(gap, expected, rel_tol=1e-9, abs_tol=1e-12):
        yield Violation(TOTALS, f"bounds.gap is {gap}, makespan and bound give {expected}")


def _check_copies(index: PlanIndex) -> Iterator[Violation]:
    """Check a duplicated operator's weights are ``copies`` identical sets of matrices."""
    for op in index.ops.values():
        repeated = [w for w, n in Counter(op.weights).items() if n > 1]
        if repeated:
            # Two copies on one matrix are the same crossbars: no copy at all.
            yield Violation(PLACEMENT, f"operator '{op.id}' lists weights "
                                       f"{quote_names(repeated)} more than once")
        if op.copies == 1:
            continue
        where = f"operator '{op.id}' has copies {op.copies}"
        if op.kind is not OpKind.MVM or len(op.weights) % op.copies:
            yield Violation(PLACEMENT, f"{where} but "
                            f"{plural(len(op.weights), 'weight matrix', 'weight matrices')}"
                            + ("" if op.kind is OpKind.MVM else " and is not an MVM"))
            continue
        groups = len(op.weights) // op.copies
        for position, weight_id in enumerate(op.weights[groups:], start=groups):
            base, copy = (index.weights.get(op.weights[position % groups]),
                          index.weights.get(weight_id))
            if base is None or copy is None:
                continue  # an unknown weight is reported by the reference check
            if _layout(base) != _layout(copy):
                yield Violation(PLACEMENT, f"{where}: weight '{copy.id}' is not a copy of "
                                           f"'{base.id}' (other contents or tiling)")


def _layout(matrix: WeightMatrix) -> tuple[object, ...]:
    return (matrix.sha256, matrix.rows, matrix.cols, matrix.columns_per_weight,
            tuple((t.row_start, t.row_stop, t.col_start, t.col_stop) for t in matrix.tiles))


SCHEDULE_CHECKS: tuple[Check, ...] = (
    _check_copies,
    _check_double_booking, _check_dependencies, _check_programming, _check_durations,
    _check_totals,
)
"""The schedule, price and total checks, in report order."""
