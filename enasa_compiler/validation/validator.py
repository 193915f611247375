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

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from enasa_compiler._gc import collector_paused
from enasa_compiler._text import plural
from enasa_compiler.errors import InputError
from enasa_compiler.plan import Plan, read_plan_json
from enasa_compiler.plan.schema import check_schema
from enasa_compiler.targets.target import Target, load_target, target_from_dict
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
    PlanIndex,
    Violation,
    ViolationKind,
)
from enasa_compiler.validation._coverage import check_coverage
from enasa_compiler.validation._fast_schema import conforms
from enasa_compiler.validation._model_source import GivenModel, parse_model, read_model
from enasa_compiler.validation._pipeline import check_pipeline
from enasa_compiler.validation._proof import (
    UNCHECKED_INITIAL_STATE,
    UNCHECKED_TARGET,
    UNCHECKED_WITHOUT_MODELS,
    check_bounds_proof,
    check_initial_state,
    check_target_identity,
    check_tiling_rule,
)
from enasa_compiler.validation._schedule import SCHEDULE_CHECKS
from enasa_compiler.validation._subnet_work import derive_work

logger = logging.getLogger(__name__)

__all__ = [
    "COVERAGE",
    "DEPENDENCY",
    "DOUBLE_BOOKED",
    "DUPLICATE_ID",
    "DURATION",
    "KINDS",
    "MAX_PER_KIND",
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
    "unchecked_claims",
    "validate",
]


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
MAX_PER_KIND = 20
"""How many violations of one kind ``validate`` lists before summing up the rest."""


def unchecked_claims(models_checked: bool, *, target_given: bool = False,
                     initial_state_given: bool = False) -> tuple[str, ...]:
    """List what ``validate`` could not prove: everything the models would, without them.

    With the models nothing is left unchecked (the target, initial state and bounds
    are then always checked, against the preset, the previous plan or the recomputed
    bound; a claim that cannot be proven is a violation). Without them, a target or
    previous plan given is still checked.
    """
    if models_checked:
        return ()
    skipped = {UNCHECKED_TARGET} if target_given else set()
    if initial_state_given:
        skipped.add(UNCHECKED_INITIAL_STATE)
    return tuple(claim for claim in UNCHECKED_WITHOUT_MODELS if claim not in skipped)


def _cap(violations: list[Violation], limit: int | None) -> list[Violation]:
    """Keep the first ``limit`` violations of each kind; sum up the rest in one line."""
    if limit is None:
        return violations
    by_kind: dict[ViolationKind, list[Violation]] = {}
    for violation in violations:
        by_kind.setdefault(violation.kind, []).append(violation)
    result: list[Violation] = []
    for kind, found in by_kind.items():
        result.extend(found[:limit])
        if len(found) > limit:
            result.append(Violation(kind, f"... and {len(found) - limit:,} more {kind} "
                                          "violations"))
    return result


def _load_previous(previous: Plan | dict[str, Any] | str | Path) -> Plan:
    if isinstance(previous, Plan):
        return previous
    if isinstance(previous, dict):
        problems = check_schema(previous)
        if problems:
            raise InputError(f"previous plan: {problems[0]}")
        return Plan.from_dict(previous)
    return Plan.load(previous)


def validate(
    plan: Plan | dict[str, Any] | str | Path,
    models: Sequence[Any] | None = None,
    *,
    target: Target | str | Path | None = None,
    initial_state: Plan | dict[str, Any] | str | Path | None = None,
    max_per_kind: int | None = MAX_PER_KIND,
    prove: bool = True,
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
            own route, docs/validation.md). With them the plan is checked as a proof:
            the target against the shipped preset (or ``target``), the tiling rule,
            the initial state against ``initial_state`` and the bounds against the
            bound the validator recomputes.
        target: the target the plan claims to be made for (a preset name, a target
            file or a :class:`Target`); needed to prove a plan for a custom target.
        initial_state: the previous plan an online plan started from (its crossbars'
            final contents must be the plan's ``initial_state``).
        max_per_kind: list at most this many violations of a kind, then one line
            ``... and N more <kind> violations``; None lists them all.
        prove: with ``models``, also prove the target, the tiling rule, the initial
            state and the bounds (default). False checks the models' coverage only:
            what ``simulate --execute`` needs before it runs a plan it does not trust
            for its figures.

    Returns:
        The violations, grouped by check in the order of :data:`KINDS`.

    Raises:
        InputError: the plan file (or a model, target or previous plan file) cannot
            be read, or is not JSON.

    """
    with collector_paused():
        return _validate(plan, models, target, initial_state, max_per_kind, prove)


def _validate(
    plan: Plan | dict[str, Any] | str | Path,
    models: Sequence[Any] | None,
    target: Target | str | Path | None,
    initial_state: Plan | dict[str, Any] | str | Path | None,
    max_per_kind: int | None,
    prove: bool,
) -> list[Violation]:
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
    given_target = None if target is None else load_target(target)
    previous = None if initial_state is None else _load_previous(initial_state)
    # jsonschema costs ~1 ms a tile; it runs only on a plan the fast check rejects.
    problems = [] if conforms(data) else check_schema(data)
    if problems:
        return _cap([Violation(SCHEMA, problem) for problem in problems], max_per_kind)
    try:
        typed = Plan.from_dict(data)
    except InputError as exc:
        return [Violation(SCHEMA, str(exc))]
    embedded, violations = _check_target(typed)
    index = PlanIndex.build(typed, embedded)
    for check in (*STRUCTURE_CHECKS, *SCHEDULE_CHECKS, check_pipeline):
        violations.extend(check(index))
    proving = models is not None and prove
    if proving or given_target is not None:
        violations.extend(check_target_identity(embedded, given_target))
    if proving or previous is not None:
        violations.extend(check_initial_state(index, previous))
    if proving:
        violations.extend(check_tiling_rule(index))
        violations.extend(check_bounds_proof(index))
    if models is not None:
        listed = [models] if isinstance(models, str | Path | bytes) else list(models or ())
        given = [read_model(model, position) for position, model in enumerate(listed)]
        model_violations = list(_check_model_hashes(typed, given))
        violations.extend(model_violations)
        if not model_violations:
            violations.extend(_check_against_models(typed, given))
    order = {kind: i for i, kind in enumerate(KINDS)}
    violations.sort(key=lambda v: order.get(v.kind, len(order)))
    logger.debug("plan validated: %s", plural(len(violations), "violation"))
    return _cap(violations, max_per_kind)


def describe_violations(violations: Sequence[Violation]) -> str:
    """Say how many violations there are and show the first, for a one-line refusal.

    ``simulate``, ``report`` and ``simulate --execute`` refuse an invalid plan with the
    same words; the full list is ``enasa validate``'s job.
    """
    return f"{plural(len(violations), 'violation')}; first: {violations[0]}"
