"""The compile driver: ONNX subnets in, a validated-by-construction plan out.

``compile`` runs the stages of architecture.md in order: frontend, graph passes
(canonicalize each subnet, merge the group, deduplicate, annotate weight sharing),
lowering to the crossbar program, mapping, and plan assembly with the cost model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import onnx_ir as ir
from onnx_ir.passes import PassManager

from enasa_compiler.errors import InputError
from enasa_compiler.frontend import ModelSource, SubnetModel, load_group
from enasa_compiler.ir import CrossbarProgram, MvmOp, OpKind
from enasa_compiler.passes import CanonicalizePass, DedupPass, MergeGroupPass, WeightSharePass
from enasa_compiler.passes.lower import lower
from enasa_compiler.passes.mapping import Schedule, schedule_ops
from enasa_compiler.plan import Plan, PlanOperator, SubnetInfo
from enasa_compiler.targets.cost import digital_cost, mvm_cost
from enasa_compiler.targets.target import Target, load_target
from enasa_compiler.totals import compute_totals

logger = logging.getLogger(__name__)

__all__ = ["CompileResult", "SOLVERS", "build_group_model", "compile", "compile_detailed"]

SOLVERS = ("ops",)


@dataclass(frozen=True)
class CompileResult:
    """Everything a compile produced, for callers that want more than the plan."""

    plan: Plan
    group_model: ir.Model
    program: CrossbarProgram
    subnets: tuple[SubnetModel, ...]


def build_group_model(subnets: Sequence[SubnetModel]) -> tuple[ir.Model, dict[str, int]]:
    """Run the graph passes: canonicalize each subnet, merge, dedup, weight-share.

    Returns:
        The group model and the dedup statistics (nodes and MACs before/after).

    """
    dedup = DedupPass()
    names = [s.name for s in subnets]
    try:
        canonical = [PassManager([CanonicalizePass()])(s.model).model for s in subnets]
        group = PassManager([MergeGroupPass(canonical[1:], names=names), dedup,
                             WeightSharePass()])(canonical[0]).model
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
) -> Plan:
    """Price every operator and put program, schedule and totals into one plan."""
    operators = []
    for op in program.ops:
        is_mvm = isinstance(op, MvmOp)
        cost = (mvm_cost(op, target, program.batch) if isinstance(op, MvmOp)
                else digital_cost(op, target, program.batch))
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
        totals=totals, dedup=dedup,
    )


def compile_detailed(
    models: Sequence[ModelSource],
    target: str | Target = "neurosim-22nm",
    *,
    solver: str = "ops",
    mode: str = "auto",
    batch: int = 1,
) -> CompileResult:
    """Compile a group and return the plan with the intermediate stages."""
    if solver not in SOLVERS:
        raise InputError(f"unknown solver '{solver}' (choose from {', '.join(SOLVERS)})")
    resolved_target = load_target(target)
    subnets = tuple(load_group(models, batch=batch))
    group, dedup = build_group_model(subnets)
    program = lower(group, resolved_target)
    schedule = schedule_ops(program, resolved_target, mode)
    plan = assemble_plan(program, schedule, resolved_target, subnets, dedup, solver)
    return CompileResult(plan=plan, group_model=group, program=program, subnets=subnets)


def compile(  # noqa: A001 - the public name mirrors the `enasa compile` command
    models: Sequence[ModelSource],
    target: str | Target = "neurosim-22nm",
    *,
    solver: str = "ops",
    mode: str = "auto",
    batch: int = 1,
) -> Plan:
    """Compile a group of ONNX subnets into a crossbar mapping plan.

    Args:
        models: ONNX files, ``onnx.ModelProto`` or ``onnx_ir.Model`` objects; all take
            the same input shape.
        target: a preset name (``enasa targets`` lists them), a target file or a
            :class:`~enasa_compiler.targets.Target`.
        solver: mapping algorithm; ``ops`` is the operator-parallel scheduler.
        mode: ``resident`` (all weights programmed once), ``dynamic`` (programmed
            before use into free crossbars) or ``auto`` (resident when they fit).
        batch: images per run; fixes the models' batch dimension.

    Raises:
        InputError: bad models, target or options (one line, safe to show users).

    """
    return compile_detailed(models, target, solver=solver, mode=mode, batch=batch).plan
