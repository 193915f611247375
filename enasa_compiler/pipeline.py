"""The compile driver: ONNX subnets in, a validated-by-construction plan out.

``compile`` runs the stages of architecture.md in order: frontend, graph passes
(canonicalize each subnet, merge the group, deduplicate, annotate weight sharing),
lowering to the crossbar program, mapping, and plan assembly with the cost model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx_ir as ir
from onnx_ir.passes import PassManager
from tqdm import tqdm

from enasa_compiler.errors import InputError
from enasa_compiler.frontend import ModelSource, SubnetModel, load_group
from enasa_compiler.ir import CrossbarProgram, MvmOp, OpKind
from enasa_compiler.passes import (
    CanonicalizePass,
    DedupPass,
    FoldBatchNormPass,
    MergeGroupPass,
    WeightSharePass,
)
from enasa_compiler.passes.duplicate import apply_duplication
from enasa_compiler.passes.lower import lower
from enasa_compiler.passes.mapping import Schedule, schedule_ops
from enasa_compiler.passes.mapping.bounds import makespan_lower_bound
from enasa_compiler.passes.mapping.cpsat import schedule_cpsat
from enasa_compiler.passes.mapping.online import initial_state_from_plan
from enasa_compiler.plan import Plan, PlanOperator, SubnetInfo
from enasa_compiler.targets.cost import operator_cost
from enasa_compiler.targets.target import Target, load_target
from enasa_compiler.totals import compute_totals

logger = logging.getLogger(__name__)

__all__ = ["CompileResult", "SOLVERS", "build_group_model", "compile", "compile_detailed"]

# The stages of a compile, in the order they run; ``cost`` prices every operator and
# puts the plan together.
STAGES = ("frontend", "passes", "lower", "mapping", "cost")
SOLVERS = ("ops", "cpsat", "auto", "fcfs")
# ``fcfs`` is OPS with its ranking replaced by first-come-first-served: the ablation
# baseline for what the ranking buys, not a solver anyone should ship plans with.
# ``auto`` tries CP-SAT after OPS only below this many operators: above it the model
# takes longer to build than OPS takes to schedule, for little gain.
AUTO_CPSAT_MAX_OPS = 2000


@dataclass(frozen=True)
class MappingOutcome:
    """The schedule chosen, which solver produced it, and what is known of its quality."""

    schedule: Schedule
    solver: str
    bounds: dict[str, Any]


def _makespan(schedule: Schedule) -> int:
    events = (*schedule.compute, *schedule.program)
    return max(e.end_ns for e in events) - min(e.start_ns for e in events) if events else 0


def map_program(
    program: CrossbarProgram,
    target: Target,
    *,
    solver: str = "ops",
    mode: str = "auto",
    time_limit_s: float = 10.0,
    deterministic: bool = True,
    initial: dict[int, str] | None = None,
) -> MappingOutcome:
    """Schedule a lowered group with OPS, CP-SAT, or OPS improved by CP-SAT.

    OPS always runs: it is the fast answer and CP-SAT's starting hint. Every outcome
    carries a lower bound on the makespan (the analytic one, tightened by CP-SAT's
    when its time unit is 1 ns) and the optimality gap.

    ``initial`` (online mapping: crossbar -> tile already there) is honoured by OPS,
    and by CP-SAT in resident mode; with dynamic mapping ``auto`` keeps OPS's plan.

    Raises:
        InputError: unknown solver, ``cpsat`` found no schedule in time, or ``cpsat``
            asked for with an initial state and dynamic mapping.

    """
    if solver not in SOLVERS:
        raise InputError(f"unknown solver '{solver}' (choose from {', '.join(SOLVERS)})")
    policy = "fcfs" if solver == "fcfs" else "ops"
    ops_schedule = schedule_ops(program, target, mode, initial, policy=policy)
    chosen, name = ops_schedule, policy
    lower_bound = makespan_lower_bound(program, target, (initial or {}).values())
    bounds: dict[str, Any] = {"analytic_bound_ns": lower_bound.bound_ns,
                              "solver_bound_ns": None, "time_unit_ns": None,
                              "solver_status": "not run"}
    proven = lower_bound.bound_ns
    cpsat_takes_state = not initial or ops_schedule.mode == "resident"
    if solver == "cpsat" or (solver == "auto" and cpsat_takes_state
                             and len(program.ops) <= AUTO_CPSAT_MAX_OPS):
        result = schedule_cpsat(program, target, ops_schedule.mode, hint=ops_schedule,
                                time_limit_s=time_limit_s, deterministic=deterministic,
                                initial=initial)
        bounds.update(solver_status=result.status, time_unit_ns=result.unit_ns)
        if result.unit_ns == 1:
            # Only an unscaled model's bound holds for the real durations.
            bounds["solver_bound_ns"] = result.solver_bound_ns
            proven = max(proven, result.solver_bound_ns)
        if result.schedule is None:
            if solver == "cpsat":
                raise InputError(
                    f"CP-SAT found no schedule within {time_limit_s} s ({result.status}); "
                    "use --solver ops or a longer --time-limit")
        elif solver == "cpsat" or _makespan(result.schedule) < _makespan(ops_schedule):
            chosen, name = result.schedule, "cpsat"
    makespan = _makespan(chosen)
    proven = min(proven, makespan)
    bounds["lower_bound_ns"] = proven
    bounds["gap"] = (makespan - proven) / makespan if makespan else 0.0
    return MappingOutcome(chosen, name, bounds)


@dataclass(frozen=True)
class CompileResult:
    """Everything a compile produced, for callers that want more than the plan.

    ``stage_s`` holds the wall time of each stage of :data:`STAGES`.
    """

    plan: Plan
    group_model: ir.Model
    program: CrossbarProgram
    subnets: tuple[SubnetModel, ...]
    stage_s: dict[str, float] = field(default_factory=dict)


def build_group_model(
    subnets: Sequence[SubnetModel], *, dedup_operators: bool = True
) -> tuple[ir.Model, dict[str, int]]:
    """Run the graph passes: canonicalize each subnet, merge, dedup, fold BN, weight-share.

    BatchNorm is folded after merging (:class:`FoldBatchNormPass`), so subnets whose BN
    statistics differ still share the weights of a layer they have in common.
    ``dedup_operators=False`` keeps every subnet's operators (weights are still stored
    once): the ablation that shows what computing shared operators once buys.

    Returns:
        The group model and the dedup statistics (nodes and MACs before/after).

    """
    dedup = DedupPass(merge_nodes=dedup_operators)
    names = [s.name for s in subnets]
    try:
        canonical = [PassManager([CanonicalizePass(fold_batchnorm=False)])(s.model).model
                     for s in subnets]
        group = PassManager([MergeGroupPass(canonical[1:], names=names), dedup,
                             FoldBatchNormPass(), WeightSharePass()])(canonical[0]).model
    except (ir.passes.PassError, ValueError) as exc:
        # The passes raise ValueError for models they cannot handle; report the root cause.
        root: BaseException = exc
        while root.__cause__ is not None:
            root = root.__cause__
        raise InputError(f"graph passes: {root}") from exc
    stats = dedup.stats
    assert stats is not None
    return group, {
        "nodes_before": stats.nodes_before,
        "nodes_after": stats.nodes_after,
        "nodes_removed": stats.nodes_removed,
        "macs_before": stats.macs_before,
        "macs_after": stats.macs_after,
        "macs_removed": stats.macs_removed,
    }


def assemble_plan(
    program: CrossbarProgram,
    schedule: Schedule,
    target: Target,
    subnets: Sequence[SubnetModel],
    dedup: dict[str, int],
    solver: str,
    bounds: dict[str, Any] | None = None,
) -> Plan:
    """Price every operator and put program, schedule and totals into one plan."""
    operators = []
    for op in program.ops:
        is_mvm = isinstance(op, MvmOp)
        cost = operator_cost(op, target, program.batch)
        operators.append(PlanOperator(
            id=op.id, kind=OpKind.MVM if is_mvm else OpKind.DIGITAL, op_type=op.op_type,
            subnets=op.subnets, inputs=op.inputs, outputs=op.outputs,
            deps=program.deps[op.id],
            weights=tuple(w.id for w in op.weights) if isinstance(op, MvmOp) else (),
            macs=op.macs,
            vectors_per_image=op.vectors_per_image if isinstance(op, MvmOp) else 0,
            elements=0 if isinstance(op, MvmOp) else op.elements,
            ops=0 if isinstance(op, MvmOp) else op.ops,
            layer=op.layer, latency_ns=cost.latency_ns, energy_pj=cost.energy_pj,
            copies=op.copies if isinstance(op, MvmOp) else 1,
        ))
    weights = program.weight_matrices()
    tiles = {t.id: t for w in weights for t in w.tiles}
    totals = compute_totals(
        operators, tiles, schedule.program, schedule.compute,
        chip_crossbars=target.chip.crossbars,
        crossbar_cells=target.crossbar.rows * target.crossbar.cols,
    )
    infos = tuple(
        SubnetInfo(index=i, name=s.name, source_sha256=s.sha256,
                   outputs=program.subnet_outputs[i], arch=s.arch)
        for i, s in enumerate(subnets)
    )
    return Plan(
        target=target.to_dict(), target_sha256=target.sha256, mode=schedule.mode,
        solver=solver, batch=program.batch, input_name=program.input_name,
        input_shape=program.input_shape, subnets=infos, weights=weights,
        operators=tuple(operators), program=schedule.program, compute=schedule.compute,
        totals=totals, dedup=dedup, bounds=dict(bounds or {}), initial=schedule.initial,
    )


def compile_detailed(
    models: Sequence[ModelSource],
    target: str | Target = "neurosim-22nm",
    *,
    solver: str = "ops",
    mode: str = "auto",
    batch: int = 1,
    time_limit_s: float = 10.0,
    deterministic: bool = True,
    initial_state: Plan | str | Path | None = None,
    dedup_operators: bool = True,
    progress: bool = False,
    duplicate: str | int = "off",
) -> CompileResult:
    """Compile a group and return the plan with the intermediate stages.

    ``dedup_operators=False`` skips computing shared operators once (an ablation; see
    :func:`build_group_model`). ``progress`` shows a bar over the stages on stderr
    (large groups take seconds per stage). The other arguments are :func:`compile`'s.
    """
    if solver not in SOLVERS:
        raise InputError(f"unknown solver '{solver}' (choose from {', '.join(SOLVERS)})")
    resolved_target = load_target(target)
    stage_s: dict[str, float] = {}
    with tqdm(total=len(STAGES), disable=not progress, unit="stage", leave=False) as bar:
        clock = time.perf_counter()

        def finished(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            stage_s[stage], clock = now - clock, now
            bar.update()

        bar.set_description("load models")
        subnets = tuple(load_group(models, batch=batch))
        finished("frontend")
        bar.set_description("graph passes")
        group, dedup = build_group_model(subnets, dedup_operators=dedup_operators)
        finished("passes")
        bar.set_description("lower")
        program = apply_duplication(lower(group, resolved_target), resolved_target,
                                    duplicate, mode)
        finished("lower")
        initial = None
        if initial_state is not None:
            previous = (initial_state if isinstance(initial_state, Plan)
                        else Plan.load(initial_state))
            initial = initial_state_from_plan(previous, program, resolved_target)
        bar.set_description(f"map ({solver})")
        outcome = map_program(program, resolved_target, solver=solver, mode=mode,
                              time_limit_s=time_limit_s, deterministic=deterministic,
                              initial=initial)
        finished("mapping")
        bar.set_description("cost")
        plan = assemble_plan(program, outcome.schedule, resolved_target, subnets, dedup,
                             outcome.solver, outcome.bounds)
        finished("cost")
    return CompileResult(plan=plan, group_model=group, program=program, subnets=subnets,
                         stage_s=stage_s)


def compile(  # noqa: A001 - the public name mirrors the `enasa compile` command
    models: Sequence[ModelSource],
    target: str | Target = "neurosim-22nm",
    *,
    solver: str = "ops",
    mode: str = "auto",
    batch: int = 1,
    time_limit_s: float = 10.0,
    deterministic: bool = True,
    initial_state: Plan | str | Path | None = None,
    duplicate: str | int = "off",
) -> Plan:
    """Compile a group of ONNX subnets into a crossbar mapping plan.

    Args:
        models: ONNX files, ``onnx.ModelProto`` or ``onnx_ir.Model`` objects; all take
            the same input shape.
        target: a preset name (``enasa targets`` lists them), a target file or a
            :class:`~enasa_compiler.targets.Target`.
        solver: ``ops`` (the operator-parallel scheduler), ``cpsat`` (the exact
            model, started from the OPS plan) or ``auto`` (OPS, then CP-SAT improves
            it within the time limit when the group is small enough).
        mode: ``resident`` (all weights programmed once), ``dynamic`` (programmed
            before use into free crossbars) or ``auto`` (resident when they fit).
        batch: images per run; fixes the models' batch dimension.
        time_limit_s: CP-SAT's budget (deterministic time units in deterministic mode).
        deterministic: one CP-SAT worker and a deterministic time limit, so the same
            inputs give a byte-identical plan.
        initial_state: online mapping: a previous plan (or its file) on the same
            target; tiles it left in crossbars are used in place, not written again.
        duplicate: weight duplication (:mod:`enasa_compiler.passes.duplicate`):
            ``off``, ``auto`` (spare crossbars of a resident mapping go to the slowest
            operators) or a number of copies for every crossbar operator.

    Raises:
        InputError: bad models, target or options (one line, safe to show users).

    """
    return compile_detailed(models, target, solver=solver, mode=mode, batch=batch,
                            time_limit_s=time_limit_s, deterministic=deterministic,
                            initial_state=initial_state, duplicate=duplicate).plan
