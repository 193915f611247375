"""Check a mapping plan against its format, its target and the hardware's rules.

The validator is the compiler's referee: every plan the compiler writes must pass
it, and CI runs it (``enasa validate``) on plans it did not make. So it trusts
nothing in the plan but the plan's own records: it re-derives who produces which
value, what each crossbar holds at each moment and what each event must cost, and
it reports *every* violation, not the first, so one run shows all that is wrong.

A plan that fails the JSON Schema is reported as schema violations only (the other
checks would stumble over the same holes). Checks that need hardware figures (chip
size, crossbar shape, costs, totals) skip when the embedded target does not parse,
which is itself reported.

Given the subnets' ONNX files, it also checks that the plan computes every node of
every subnet, walking each file by its own route (:mod:`._subnet_work`,
:mod:`._coverage`), never with the compiler's graph passes, lowering or mapper: they
are what it checks (docs/validation.md).
"""

from __future__ import annotations

import bisect
import logging
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from enasa_compiler._text import plural
from enasa_compiler.errors import InputError
from enasa_compiler.ir import OpKind, WeightMatrix
from enasa_compiler.plan import Plan, read_plan_json
from enasa_compiler.plan.schema import check_schema
from enasa_compiler.plan.totals import compute_totals
from enasa_compiler.targets.target import Target, target_from_dict
from enasa_compiler.validation._checks import (
    COVERAGE,
    DEPENDENCY,
    DOUBLE_BOOKED,
    DUPLICATE_ID,
    DURATION,
    KINDS,
    MISSING_OP,
    MODELS,
    NOT_PROGRAMMED,
    PLACEMENT,
    PROGRAM,
    SCHEMA,
    STRUCTURE_CHECKS,
    TARGET,
    TILE_SIZE,
    TOTALS,
    UNKNOWN_REF,
    Check,
    PlanIndex,
    Violation,
    ViolationKind,
    close_enough,
    quote_names,
)
from enasa_compiler.validation._coverage import check_coverage
from enasa_compiler.validation._model_source import GivenModel, parse_model, read_model
from enasa_compiler.validation._subnet_work import derive_work

logger = logging.getLogger(__name__)

__all__ = [
    "COVERAGE",
    "DEPENDENCY",
    "DOUBLE_BOOKED",
    "DUPLICATE_ID",
    "DURATION",
    "KINDS",
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
    "Violation",
    "ViolationKind",
    "describe_violations",
    "validate",
]


# ---- schedule ----------------------------------------------------------------------
@dataclass(frozen=True)
class _Busy:
    start_ns: int
    end_ns: int
    label: str

    def __str__(self) -> str:
        return f"{self.label} [{self.start_ns}, {self.end_ns})"


def _overlaps(resource: str, intervals: list[_Busy]) -> Iterator[Violation]:
    active: list[_Busy] = []
    # Half-open intervals: an empty one holds nothing, one ending at t frees t.
    for item in sorted((i for i in intervals if i.end_ns > i.start_ns),
                       key=lambda i: (i.start_ns, i.end_ns)):
        active = [a for a in active if a.end_ns > item.start_ns]
        for other in active:
            yield Violation(DOUBLE_BOOKED, f"{resource}: {other} overlaps {item}")
        active.append(item)


def _check_double_booking(index: PlanIndex) -> Iterator[Violation]:
    """Check no crossbar is run or written by two events at once, nor a unit shared."""
    crossbars: dict[int, list[_Busy]] = defaultdict(list)
    units: dict[int, list[_Busy]] = defaultdict(list)
    for write in index.plan.program:
        crossbars[write.crossbar].append(
            _Busy(write.start_ns, write.end_ns, f"programming of tile '{write.tile}'"))
    for event in index.plan.compute:
        busy = _Busy(event.start_ns, event.end_ns, f"operator '{event.op}'")
        for crossbar in dict.fromkeys(p.crossbar for p in event.placements):
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
    for event in index.plan.compute:
        for p in event.placements:
            history = writes.get(p.crossbar, [])
            last = bisect.bisect_right(history, (event.start_ns, math.inf, "")) - 1
            where = (f"operator '{event.op}' reads tile '{p.tile}' on crossbar {p.crossbar} "
                     f"at {event.start_ns} ns")
            if last < 0:
                yield Violation(NOT_PROGRAMMED, f"{where}, before anything was written there")
            elif history[last][2] != p.tile:
                end_ns, start_ns, tile = history[last]
                yield Violation(NOT_PROGRAMMED, f"{where}, which then holds tile '{tile}' "
                                                f"(written [{start_ns}, {end_ns}))")


def _check_durations(index: PlanIndex) -> Iterator[Violation]:
    """Check events last as long as the cost model says; operators record its price."""
    target = index.target
    for write in index.plan.program:
        where = f"programming of tile '{write.tile}' on crossbar {write.crossbar}"
        length = write.end_ns - write.start_ns
        tile = index.tiles.get(write.tile)
        if length < 0:
            yield Violation(DURATION, f"{where} ends at {write.end_ns} ns, before it starts "
                                      f"at {write.start_ns} ns")
        if target is None or tile is None:
            continue
        write_cost = index.write_costs[tile.id]
        if length >= 0 and length < write_cost.latency_ns:
            yield Violation(DURATION, f"{where} lasts {length} ns, the cost model needs "
                                      f"{write_cost.latency_ns} ns")
        if not close_enough(write.energy_pj, write_cost.energy_pj):
            yield Violation(DURATION, f"{where} records {write.energy_pj} pJ, the cost model "
                                      f"gives {write_cost.energy_pj:.3f} pJ")
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
    rounded_terms = {"compute_energy_pj": len(plan.operators),
                     "write_energy_pj": len(plan.program),
                     "energy_pj": len(plan.operators) + len(plan.program)}
    for f in fields(derived):
        recorded, expected = getattr(plan.totals, f.name), getattr(derived, f.name)
        if isinstance(expected, int):
            wrong = recorded != expected
        else:
            wrong = not (math.isfinite(recorded)
                         and close_enough(recorded, expected, rounded_terms.get(f.name, 1)))
        if wrong:
            yield Violation(TOTALS, f"totals.{f.name} is {recorded}, the schedule gives "
                                    f"{expected}")
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


_SCHEDULE_CHECKS: tuple[Check, ...] = (
    _check_copies,
    _check_double_booking, _check_dependencies, _check_programming, _check_durations,
    _check_totals,
)


# ---- the target and the models -----------------------------------------------------
def _check_target(plan: Plan) -> tuple[Target | None, list[Violation]]:
    try:
        target = target_from_dict(plan.target, origin="plan target")
    except InputError as exc:
        return None, [Violation(TARGET, str(exc))]
    if target.sha256 != plan.target_sha256:
        return target, [Violation(TARGET, f"target_sha256 {plan.target_sha256} does not match "
                                          f"the embedded target '{target.name}' "
                                          f"({target.sha256})")]
    return target, []


def _check_model_hashes(plan: Plan, models: Sequence[GivenModel]) -> Iterator[Violation]:
    if len(models) != len(plan.subnets):
        yield Violation(MODELS, f"{plural(len(models), 'model')} given for a plan of "
                                f"{plural(len(plan.subnets), 'subnet')}")
    for model, subnet in zip(models, plan.subnets, strict=False):
        if model.sha256 != subnet.source_sha256:
            yield Violation(MODELS, f"model {model.position} ({model.label}) has sha256 "
                                    f"{model.sha256}, subnet {subnet.index} ('{subnet.name}') "
                                    f"was compiled from {subnet.source_sha256}")


def _check_against_models(plan: Plan, models: Sequence[GivenModel]) -> Iterator[Violation]:
    """Check the plan's operators cover what each model computes, by the validator's route.

    Each model is read with ``onnx`` alone and walked on its own (:mod:`._subnet_work`);
    no compiler pass, lowering or mapping code runs, so a bug there cannot hide itself
    by reproducing the plan. This proves *every node of every subnet is computed*, in
    its data-flow order, by an operator that claims its work and weights.
    """
    works = [derive_work(parse_model(model, plan.batch), plan.batch) for model in models]
    yield from check_coverage(plan, works)


# ---- entry point -------------------------------------------------------------------
def validate(
    plan: Plan | dict[str, Any] | str | Path,
    models: Sequence[Any] | None = None,
) -> list[Violation]:
    """Check a plan and return every violation found (empty when the plan is valid).

    Args:
        plan: a :class:`Plan`, its parsed JSON, or the path of a plan file. A ``Plan``
            is checked in its JSON form (energies rounded as when saved).
        models: the subnets' source models, in subnet order (paths, raw bytes,
            ``onnx.ModelProto`` or ``onnx_ir.Model``); when given, their count and
            hashes must match the plan's subnets, and the plan's operators must cover
            every node each model computes, in its data-flow order, with the right
            op types, counts and weights (derived from the files by the validator's
            own route, docs/validation.md).

    Returns:
        The violations, grouped by check in the order of :data:`KINDS`.

    Raises:
        InputError: the plan file (or a model file) cannot be read, or is not JSON.

    """
    if isinstance(plan, str | Path):
        data = read_plan_json(plan)
    elif isinstance(plan, Plan):
        try:
            data = plan.to_dict()
        except (AttributeError, TypeError, ValueError) as exc:
            # A Plan built in code can hold what JSON cannot (a str for an OpKind...).
            return [Violation(SCHEMA, f"plan cannot be written as JSON: {exc}")]
    else:
        data = plan
    problems = check_schema(data)
    if problems:
        return [Violation(SCHEMA, problem) for problem in problems]
    try:
        typed = Plan.from_dict(data)
    except InputError as exc:
        return [Violation(SCHEMA, str(exc))]
    target, violations = _check_target(typed)
    index = PlanIndex.build(typed, target)
    for check in (*STRUCTURE_CHECKS, *_SCHEDULE_CHECKS):
        violations.extend(check(index))
    if models is not None:
        listed = [models] if isinstance(models, str | Path | bytes) else list(models)
        given = [read_model(model, position) for position, model in enumerate(listed)]
        model_violations = list(_check_model_hashes(typed, given))
        violations.extend(model_violations)
        if not model_violations:
            violations.extend(_check_against_models(typed, given))
    order = {kind: i for i, kind in enumerate(KINDS)}
    violations.sort(key=lambda v: order.get(v.kind, len(order)))
    logger.debug("plan validated: %s", plural(len(violations), "violation"))
    return violations


def describe_violations(violations: Sequence[Violation]) -> str:
    """Say how many violations there are and show the first, for a one-line refusal.

    ``simulate``, ``report`` and ``simulate --execute`` refuse an invalid plan with the
    same words; the full list is ``enasa validate``'s job.
    """
    return f"{plural(len(violations), 'violation')}; first: {violations[0]}"
