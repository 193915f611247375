"""The compile driver: ONNX subnets in, a validated-by-construction plan out.

``compile`` runs the stages of architecture.md in order: frontend, graph passes
(canonicalize each subnet, merge the group, deduplicate, annotate weight sharing),
lowering to the crossbar program, mapping, and plan assembly with the cost model.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import onnx_ir as ir
from onnx_ir.passes import PassManager
from tqdm import tqdm

from enasa_compiler._gc import collector_paused
from enasa_compiler.errors import InputError
from enasa_compiler.frontend import ModelSource, SubnetModel, load_group
from enasa_compiler.ir import (
    CostTable,
    CrossbarProgram,
    MappingMode,
    MvmOp,
    OpKind,
    PeriodicSchedule,
    PipelineSegment,
    ProgramEvent,
    Schedule,
)
from enasa_compiler.passes import (
    CanonicalizePass,
    DedupPass,
    FoldBatchNormPass,
    MergeGroupPass,
    WeightSharePass,
)
from enasa_compiler.passes.dedup import read_dedup_stats
from enasa_compiler.passes.duplicate import (
    Duplication,
    DuplicationPolicy,
    apply_duplication,
    duplicate,
)
from enasa_compiler.passes.lower import lower
from enasa_compiler.passes.mapping import RankingPolicy, resolve_mode, schedule_ops
from enasa_compiler.passes.mapping.bounds import makespan_lower_bound
from enasa_compiler.passes.mapping.online import initial_state as initial_state_from
from enasa_compiler.passes.mapping.packing import pack_resident
from enasa_compiler.passes.mapping.periodic import (
    balance_lanes,
    balance_throughput,
    best_allocated_utilization,
    ii_lower_bound,
    image_costs,
    schedule_periodic,
    slot_durations,
    utilization_copies,
)
from enasa_compiler.passes.mapping.segments import segment_of, segmented_pipelines
from enasa_compiler.passes.price import price
from enasa_compiler.plan import Pipeline, Plan, PlanOperator, SubnetInfo
from enasa_compiler.plan.totals import compute_pipeline_totals, compute_totals, crossing_bytes
from enasa_compiler.targets.target import Target, load_target

logger = logging.getLogger(__name__)

__all__ = [
    "SOLVERS",
    "CompileOptions",
    "CompileResult",
    "Solver",
    "build_group_model",
    "compile",
    "compile_detailed",
]

# The stages of a compile, in the order they run; ``cost`` prices every operator and
# puts the plan together.
STAGES = ("frontend", "passes", "lower", "mapping", "cost")


class Solver(enum.StrEnum):
    """Which mapper makes the schedule.

    ``OPS``: the operator-parallel scheduler. ``CPSAT``: the exact model, started from
    the OPS plan. ``AUTO``: OPS, improved by CP-SAT within the time limit when the group
    is small enough. ``FCFS``: OPS with its ranking replaced by first-come-first-served,
    the ablation baseline for what the ranking buys, not a solver to ship plans with.
    """

    OPS = "ops"
    CPSAT = "cpsat"
    AUTO = "auto"
    FCFS = "fcfs"


SOLVERS = tuple(s.value for s in Solver)
# ``auto`` tries CP-SAT after OPS only below this many operators: above it the model
# takes longer to build than OPS takes to schedule, for little gain.
AUTO_CPSAT_MAX_OPS = 2000
# Images a pipelined plan runs unless told otherwise: the ENASA paper's setting.
DEFAULT_IMAGES = 10_000
MAX_IMAGES = 1_000_000_000


@dataclass(frozen=True)
class CompileOptions:
    """Everything a compile can be asked to do besides which models and which target.

    Strings are accepted where enums are meant (``solver="cpsat"``, ``mode="dynamic"``,
    ``duplicate="auto"`` or ``4``) and converted, so the command line and Python callers
    share one set of checks.

    Attributes:
        solver: the mapper (:class:`Solver`).
        mode: resident, dynamic, or auto (resident when the weights fit).
        batch: images per run; fixes the models' batch dimension.
        time_limit_s: CP-SAT's budget (deterministic time units when deterministic).
        deterministic: one CP-SAT worker and a deterministic time limit, so the same
            inputs give a byte-identical plan.
        initial_state: online mapping: a previous plan (or its file) on the same
            target; tiles it left in crossbars are used in place, not written again.
        duplicate: weight duplication (:mod:`enasa_compiler.passes.duplicate`);
            ``throughput`` balances the pipelined schedule's II.
        images: images the pipelined schedule runs (the plan's size does not depend
            on it).
        dedup_operators: compute shared operators once (``False`` is the ablation that
            keeps every subnet's operators; weights are still stored once).
        extra_passes: the user's own graph passes (``onnx_ir`` passes), run on the
            group model after the project's graph passes (merge, dedup, BatchNorm
            folding, weight-share annotation) and before lowering. They must keep the
            ``enasa.*`` node metadata those passes set (see passes/_common.py).
        pack_tiles: a resident plan puts the small tiles of several crossbars into one
            where their cells fit side by side and their pipeline slots never overlap
            modulo II (:mod:`enasa_compiler.passes.mapping.packing`); the II stays.
            Dynamic plans and online mapping (``initial_state``) are not packed.

    """

    solver: Solver = Solver.OPS
    mode: MappingMode = MappingMode.AUTO
    batch: int = 1
    time_limit_s: float = 10.0
    deterministic: bool = True
    initial_state: Plan | str | Path | None = None
    duplicate: Duplication = field(
        default_factory=lambda: Duplication(DuplicationPolicy.THROUGHPUT))
    images: int = DEFAULT_IMAGES
    dedup_operators: bool = True
    extra_passes: tuple[ir.passes.PassBase, ...] = ()
    pack_tiles: bool = False

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise InputError(f"unknown solver '{self.solver}' (choose from "
                             f"{', '.join(SOLVERS)})")
        modes = tuple(m.value for m in MappingMode)
        if self.mode not in modes:
            raise InputError(f"unknown mapping mode '{self.mode}' (choose from "
                             f"{', '.join(modes)})")
        if (not isinstance(self.images, int) or isinstance(self.images, bool)
                or not 1 <= self.images <= MAX_IMAGES):
            raise InputError(f"images must be a whole number from 1 to {MAX_IMAGES:,}, "
                             f"not {self.images!r}")
        object.__setattr__(self, "solver", Solver(self.solver))
        object.__setattr__(self, "mode", MappingMode(self.mode))
        object.__setattr__(self, "duplicate", Duplication.parse(self.duplicate))
        object.__setattr__(self, "extra_passes", tuple(self.extra_passes))

    @classmethod
    def of(cls, options: CompileOptions | None = None, **changes: Any) -> CompileOptions:
        """Return ``options`` (or the defaults) with ``changes`` applied and checked.

        Raises:
            TypeError: a change names no option.

        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise TypeError(f"unknown compile option(s): {', '.join(unknown)}")
        return replace(options, **changes) if options is not None else cls(**changes)


@dataclass(frozen=True)
class MappingOutcome:
    """The schedule chosen, which solver produced it, and what is known of its quality."""

    schedule: Schedule
    solver: str
    bounds: dict[str, Any]


def _makespan(schedule: Schedule) -> int:
    return schedule.makespan_ns()


def map_program(
    program: CrossbarProgram,
    target: Target,
    *,
    solver: Solver | str = Solver.OPS,
    mode: MappingMode | str = MappingMode.AUTO,
    time_limit_s: float = 10.0,
    deterministic: bool = True,
    initial: dict[int, str] | None = None,
    costs: CostTable | None = None,
) -> MappingOutcome:
    """Schedule a lowered group with OPS, CP-SAT, or OPS improved by CP-SAT.

    OPS always runs: it is the fast answer and CP-SAT's starting hint. Every outcome
    carries a lower bound on the makespan (the analytic one, tightened by CP-SAT's
    when its time unit is 1 ns) and the optimality gap.

    ``initial`` (online mapping: crossbar -> tile already there) is honoured by OPS,
    and by CP-SAT in resident mode; with dynamic mapping ``auto`` keeps OPS's plan.
    ``costs`` is the program priced on the target (priced here when not given).

    Raises:
        InputError: unknown solver, ``cpsat`` found no schedule in time, or ``cpsat``
            asked for with an initial state and dynamic mapping.

    """
    if solver not in SOLVERS:
        raise InputError(f"unknown solver '{solver}' (choose from {', '.join(SOLVERS)})")
    solver = Solver(solver)
    costs = costs or price(program, target)
    policy = RankingPolicy.FCFS if solver is Solver.FCFS else RankingPolicy.OPS
    ops_schedule = schedule_ops(program, target, mode, initial, policy=policy, costs=costs)
    chosen, name = ops_schedule, policy.value
    lower_bound = makespan_lower_bound(program, target, (initial or {}).values(), costs)
    bounds: dict[str, Any] = {"analytic_bound_ns": lower_bound.bound_ns,
                              "solver_bound_ns": None, "time_unit_ns": None,
                              "solver_status": "not run"}
    proven = lower_bound.bound_ns
    cpsat_takes_state = not initial or ops_schedule.mode == MappingMode.RESIDENT
    if solver is Solver.CPSAT or (solver is Solver.AUTO and cpsat_takes_state
                             and len(program.ops) <= AUTO_CPSAT_MAX_OPS):
        # OR-Tools (with pandas) takes half a second to import: only when it runs.
        from enasa_compiler.passes.mapping.cpsat import schedule_cpsat

        result = schedule_cpsat(program, target, ops_schedule.mode, hint=ops_schedule,
                                time_limit_s=time_limit_s, deterministic=deterministic,
                                initial=initial, costs=costs)
        bounds.update(solver_status=result.status, time_unit_ns=result.unit_ns)
        if result.unit_ns == 1:
            # Only an unscaled model's bound holds for the real durations.
            bounds["solver_bound_ns"] = result.solver_bound_ns
            proven = max(proven, result.solver_bound_ns)
        if result.schedule is None:
            if solver is Solver.CPSAT:
                raise InputError(
                    f"CP-SAT found no schedule within {time_limit_s} s ({result.status}); "
                    "use --solver ops or a longer --time-limit")
        elif solver is Solver.CPSAT or _makespan(result.schedule) < _makespan(ops_schedule):
            chosen, name = result.schedule, "cpsat"
    makespan = _makespan(chosen)
    proven = min(proven, makespan)
    bounds["lower_bound_ns"] = proven
    bounds["gap"] = (makespan - proven) / makespan if makespan else 0.0
    return MappingOutcome(chosen, name, bounds)


@dataclass(frozen=True)
class CompileResult:
    """Everything a compile produced, for callers that want more than the plan.

    ``stage_s`` holds the wall time of each stage of :data:`STAGES`. ``subnets`` keep
    each subnet's name, source hash and architecture; their ``model`` graphs were
    moved into ``group_model`` by the merge (no copy of every weight is made), so they
    are empty afterwards: load the files again to get a subnet's own graph.
    """

    plan: Plan
    group_model: ir.Model
    program: CrossbarProgram
    subnets: tuple[SubnetModel, ...]
    stage_s: dict[str, float] = field(default_factory=dict)


def build_group_model(
    subnets: Sequence[SubnetModel], *, dedup_operators: bool = True,
    timings: dict[str, float] | None = None,
) -> tuple[ir.Model, dict[str, int]]:
    """Run the graph passes: canonicalize each subnet, merge, dedup, fold BN, weight-share.

    BatchNorm is folded after merging (:class:`FoldBatchNormPass`), so subnets whose BN
    statistics differ still share the weights of a layer they have in common.
    ``dedup_operators=False`` keeps every subnet's operators (weights are still stored
    once): the ablation that shows what computing shared operators once buys.

    The subnets' models are consumed: canonicalized in place, then their nodes are moved
    into the group model (copying them would cost as much as the other passes together),
    which leaves them empty. Load the subnets again for another use of their models.

    ``timings``, when given, receives the seconds each step took (``canonicalize_merge``,
    ``dedup``, ``fold_batchnorm``, ``digest``, ``weight_share``), for benchmarks that
    ask where the passes' time goes.

    Returns:
        The group model and the dedup statistics (nodes and MACs before/after).

    """
    from enasa_compiler.passes._common import digest_now, digests_in_background

    dedup = DedupPass(merge_nodes=dedup_operators)
    names = [s.name for s in subnets]
    clock = time.perf_counter()

    def finished(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        if timings is not None:
            timings[step] = now - clock
        clock = now

    try:
        # Dedup compares weights by content; their hashes are computed on another core
        # while this one canonicalizes and merges.
        with digests_in_background(s.model for s in subnets):
            canonical = [PassManager([CanonicalizePass(fold_batchnorm=False)])(s.model).model
                         for s in subnets]
            merged = MergeGroupPass(canonical[1:], names=names, consume=True)(
                canonical[0]).model
        finished("canonicalize_merge")
        group = PassManager([dedup])(merged).model
        finished("dedup")
        group = PassManager([FoldBatchNormPass()])(group).model
        finished("fold_batchnorm")
        digest_now([group])  # the folded weights, which weight sharing compares
        finished("digest")
        group = WeightSharePass()(group).model
        finished("weight_share")
    except (ir.passes.PassError, ValueError) as exc:
        # The passes raise ValueError for models they cannot handle; report the root cause.
        root: BaseException = exc
        while root.__cause__ is not None:
            root = root.__cause__
        raise InputError(f"graph passes: {root}") from exc
    stats = read_dedup_stats(group)  # the PassManager returns its own result
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
    costs: CostTable,
    schedule: Schedule,
    target: Target,
    subnets: Sequence[SubnetModel],
    dedup: dict[str, int],
    solver: str,
    bounds: dict[str, Any] | None = None,
    pipeline: Pipeline | None = None,
) -> Plan:
    """Put the priced program, its schedules and the totals into one plan."""
    operators = plan_operators(program, costs)
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
        pipeline=pipeline,
    )


def plan_operators(program: CrossbarProgram, costs: CostTable) -> list[PlanOperator]:
    """Make the plan's operator records: each operator with its price over the batch."""
    operators = []
    for op in program.ops:
        is_mvm = isinstance(op, MvmOp)
        cost = costs.operators[op.id]
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
    return operators


@dataclass(frozen=True)
class _Best:
    """What the chip allows: the lowest II bound, and the utilisation bound at that II."""

    ii_ns: int
    utilization: float


def _throughput_duplicate(program: CrossbarProgram, target: Target,
                          costs: CostTable) -> tuple[CrossbarProgram, _Best]:
    """Copy for the lowest II, then, at that II, for the highest utilisation that fits."""
    choice = balance_throughput(program, target, costs)
    copies, bound = utilization_copies(program, costs, choice.ii_ns, target.chip.crossbars)
    return (duplicate(program, choice.copies if copies is None else copies),
            _Best(choice.ii_ns, bound))


def build_pipeline(program: CrossbarProgram, target: Target, schedule: Schedule,
                   images: int, lowered: CrossbarProgram | None = None,
                   lowered_image_costs: CostTable | None = None,
                   best: _Best | None = None) -> Pipeline:
    """Make the pipelined schedule of ``images`` images on a resident mapping.

    Every MVM operator keeps the crossbars the batch schedule placed it on (they are
    programmed once, before the first image); digital operators get the lanes that
    minimise II (:func:`balance_lanes`). ``lowered`` (the program before duplication,
    and its per-image prices) gives the best II and utilisation any duplication could
    reach on the chip, reported beside the plan's own.
    """
    lowered = lowered or program
    lowered_image_costs = lowered_image_costs or image_costs(lowered, target)
    # Without duplication the program is the lowered one, already priced per image.
    costs = lowered_image_costs if program is lowered else image_costs(program, target)
    placements = {e.op: e.placements for e in schedule.compute}
    lanes = balance_lanes(program, target, costs, placements)
    periodic, bound = schedule_periodic(program, target, costs, lanes, placements)
    ii = periodic.ii_ns
    best_ii_ns = (best.ii_ns if best is not None
                  else balance_throughput(lowered, target, lowered_image_costs).ii_ns)
    utilization = (best.utilization if best is not None and best.ii_ns == ii
                   else best_allocated_utilization(lowered, lowered_image_costs, ii,
                                                   target.chip.crossbars))
    bounds = {
        "ii_lower_bound_ns": bound.bound_ns,
        "ii_binding": bound.binding,
        "gap": (ii - bound.bound_ns) / ii,
        # The bisection prices copies by the copy rule; the plan's own bound, priced on
        # the duplicated program, is an achieved bound for one choice, so never below.
        "best_ii_ns": min(best_ii_ns, bound.bound_ns),
        "best_allocated_utilization": min(1.0, utilization),
    }
    return _resident_pipeline(program, target, costs, periodic, schedule.program, images,
                              bounds)


def _resident_pipeline(program: CrossbarProgram, target: Target, costs: CostTable,
                       periodic: PeriodicSchedule, writes: Sequence[ProgramEvent],
                       images: int, bounds: dict[str, Any]) -> Pipeline:
    """One segment without writes, started once the batch schedule's ``writes`` end."""
    segments = (PipelineSegment(writes=(), schedule=periodic),)
    start_ns = max((e.end_ns for e in writes), default=0)
    totals = compute_pipeline_totals(
        images=images, micro_batch=images, start_ns=start_ns, segments=segments,
        image_energy_pj=sum(costs.operators[op.id].energy_pj for op in program.ops),
        program=writes, moved_bytes_per_image=0, chip=target.chip)
    return Pipeline(images=images, micro_batch=images, start_ns=start_ns,
                    segments=segments, bounds=bounds, totals=totals)


def pack_pipeline(program: CrossbarProgram, target: Target, schedule: Schedule,
                  pipeline: Pipeline) -> tuple[Schedule, Pipeline]:
    """Pack a resident plan's small tiles (:func:`pack_resident`); II and offsets stay.

    Returns the batch schedule and the pipeline on the packed crossbars; the pipeline's
    bounds gain ``unpacked_crossbars`` and ``packed_crossbars_lower_bound``.
    """
    tiles = {t.id: t for w in program.weight_matrices() for t in w.tiles}
    packed, periodic, packing = pack_resident(program, schedule, pipeline.schedule, tiles,
                                              target.crossbar.rows, target.crossbar.cols)
    durations = {slot.op: slot.duration_ns for slot in periodic.slots}
    lanes = {slot.op: len(slot.units) for slot in periodic.slots if slot.units}
    bound = ii_lower_bound(program, target, durations, lanes,
                           {slot.op: slot.placements for slot in periodic.slots})
    ii = periodic.ii_ns
    bounds = {**pipeline.bounds, "ii_lower_bound_ns": bound.bound_ns,
              "ii_binding": bound.binding, "gap": (ii - bound.bound_ns) / ii,
              "unpacked_crossbars": packing.crossbars_before,
              "packed_crossbars_lower_bound": packing.lower_bound}
    return packed, _resident_pipeline(program, target, image_costs(program, target),
                                      periodic, packed.program, pipeline.images, bounds)


def _micro_batches(images: int) -> list[int]:
    sizes = {images}
    size = 1
    while size < images:
        sizes.add(size)
        size *= 2
    return sorted(sizes)


def build_segmented_pipeline(program: CrossbarProgram, target: Target, costs: CostTable,
                             images: int, policy: RankingPolicy,
                             overlap: bool = True) -> Pipeline:
    """Make the segmented pipeline of a group whose weights do not fit the chip.

    The micro-batch size is the one (powers of two and ``images``) with the shortest
    makespan: larger micro-batches write each segment's tiles less often per image but
    may overflow the activation buffer into off-chip memory. With ``overlap`` (the
    default) a segment's writes into crossbars the previous segment leaves alone are
    prefetched while it computes, on the candidate crossbar choice that runs fastest;
    without it every write waits for the previous segment (the sequential form).

    Raises:
        InputError: every micro-batch needs off-chip memory and the target has none.

    """
    per_image = image_costs(program, target)
    candidates = segmented_pipelines(program, target, costs, per_image, policy,
                                     overlap=overlap)
    operators = plan_operators(program, costs)
    weights = {w.id: w for w in program.weight_matrices()}
    image_energy_pj = sum(per_image.operators[op.id].energy_pj for op in program.ops)
    best: tuple[int, float, int, Any, Any] | None = None
    for plan in candidates:  # the fastest; ties keep the first (the plain crossbars)
        moved = crossing_bytes(operators, weights, segment_of(plan), target.precision.a_bits)
        for micro_batch in _micro_batches(images):
            totals = compute_pipeline_totals(
                images=images, micro_batch=micro_batch, start_ns=0, segments=plan.segments,
                image_energy_pj=image_energy_pj, program=(), moved_bytes_per_image=moved,
                chip=target.chip)
            if totals.offchip_bytes and target.chip.offchip_gb_per_s <= 0:
                continue
            key = (totals.makespan_ns, totals.energy_pj, micro_batch, totals, plan)
            if best is None or key[:2] < best[:2]:
                best = key
    if best is None:
        raise InputError(f"the activations between segments do not fit the "
                         f"{target.chip.buffer_kib:g} KiB buffer of target '{target.name}' "
                         "even one image at a time, and it has no off-chip memory")
    _, _, micro_batch, totals, plan = best
    sum_ii = sum(seg.schedule.ii_ns for seg in plan.segments)
    bound = sum(b.bound_ns for b in plan.bounds)
    bounds = {
        "ii_lower_bound_ns": bound,
        "ii_binding": (plan.bounds[0].binding if len(plan.bounds) == 1
                       else f"the sum over {len(plan.segments)} segments"),
        "gap": (sum_ii - bound) / sum_ii,
        "best_ii_ns": min(bound, _capacity_bound(program, target, per_image)),
        "best_allocated_utilization": 1.0,
    }
    return Pipeline(images=images, micro_batch=micro_batch, start_ns=0,
                    segments=plan.segments, bounds=bounds, totals=totals)


def _capacity_bound(program: CrossbarProgram, target: Target, per_image: CostTable) -> int:
    """Per-image time no schedule on this chip can beat: work over all resources."""
    crossbar_ns = sum(per_image.latency_ns(op.id) * len(op.tiles) for op in program.mvm_ops())
    durations = slot_durations(program, target, per_image, {})
    digital_ns = sum(durations[op.id] for op in program.ops if not isinstance(op, MvmOp))
    return max(1, -(-crossbar_ns // target.chip.crossbars),
               -(-digital_ns // target.chip.digital_units))


def compile_detailed(
    models: Sequence[ModelSource],
    target: str | Target = "neurosim-22nm",
    options: CompileOptions | None = None,
    *,
    progress: bool = False,
    **changes: Any,
) -> CompileResult:
    """Compile a group and return the plan with the intermediate stages.

    ``progress`` shows a bar over the stages on stderr (large groups take seconds per
    stage). The other arguments are :func:`compile`'s.
    """
    options = CompileOptions.of(options, **changes)
    resolved_target = load_target(target)
    stage_s: dict[str, float] = {}
    # The stages allocate millions of small objects that outlive them (graphs, tiles,
    # events); the collections that triggers took a tenth of a 16-subnet compile and
    # freed nothing that changes the peak (measured: 436 MB either way).
    with (collector_paused(),
          tqdm(total=len(STAGES), disable=not progress, unit="stage", leave=False) as bar):
        clock = time.perf_counter()

        def finished(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            stage_s[stage], clock = now - clock, now
            bar.update()

        bar.set_description("load models")
        subnets = tuple(load_group(models, batch=options.batch))
        finished("frontend")
        bar.set_description("graph passes")
        group, dedup = build_group_model(subnets, dedup_operators=options.dedup_operators)
        if options.extra_passes:
            group = _run_user_passes(group, options.extra_passes)
        finished("passes")
        bar.set_description("lower")
        lowered = lower(group, resolved_target)
        costs = price(lowered, resolved_target)
        lowered_image_costs = image_costs(lowered, resolved_target)
        best = None
        if options.duplicate.policy is DuplicationPolicy.THROUGHPUT:
            mode = resolve_mode(lowered, resolved_target, options.mode)
            program = lowered
            if mode is MappingMode.RESIDENT:
                program, best = _throughput_duplicate(lowered, resolved_target,
                                                      lowered_image_costs)
        else:
            program = apply_duplication(lowered, resolved_target, options.duplicate,
                                        options.mode, costs)
        if program is not lowered:  # copies change latencies and add tiles: price anew
            costs = price(program, resolved_target)
        finished("lower")
        initial = None
        if options.initial_state is not None:
            previous = (options.initial_state if isinstance(options.initial_state, Plan)
                        else Plan.load(options.initial_state))
            initial = initial_state_from(previous.final_contents(), program,
                                         resolved_target)
        bar.set_description(f"map ({options.solver})")
        outcome = map_program(program, resolved_target, solver=options.solver,
                              mode=options.mode, time_limit_s=options.time_limit_s,
                              deterministic=options.deterministic, initial=initial,
                              costs=costs)
        finished("mapping")
        bar.set_description("pipeline")
        schedule, bounds = outcome.schedule, outcome.bounds
        if outcome.schedule.mode is MappingMode.RESIDENT:
            pipeline = build_pipeline(program, resolved_target, outcome.schedule,
                                      options.images, lowered, lowered_image_costs, best)
            if options.pack_tiles and not schedule.initial:
                schedule, pipeline = pack_pipeline(program, resolved_target, schedule,
                                                   pipeline)
                makespan = schedule.makespan_ns()  # packed crossbars may delay the batch
                bounds = {**bounds, "gap": (makespan - bounds["lower_bound_ns"]) / makespan}
        else:
            pipeline = build_segmented_pipeline(
                program, resolved_target, costs, options.images,
                RankingPolicy.FCFS if options.solver is Solver.FCFS else RankingPolicy.OPS)
        bar.set_description("cost")
        plan = assemble_plan(program, costs, schedule, resolved_target, subnets,
                             dedup, outcome.solver, bounds, pipeline)
        finished("cost")
    return CompileResult(plan=plan, group_model=group, program=program, subnets=subnets,
                         stage_s=stage_s)


def _run_user_passes(group: ir.Model, passes: Sequence[ir.passes.PassBase]) -> ir.Model:
    try:
        return PassManager(list(passes))(group).model
    except (ir.passes.PassError, ValueError) as exc:
        raise InputError(f"user graph pass: {exc}") from exc


def compile(  # noqa: A001 - the public name mirrors the `enasa compile` command
    models: Sequence[ModelSource],
    target: str | Target = "neurosim-22nm",
    options: CompileOptions | None = None,
    **changes: Any,
) -> Plan:
    """Compile a group of ONNX subnets into a crossbar mapping plan.

    >>> compile(["a.onnx", "b.onnx"], solver="cpsat", mode="resident")  # doctest: +SKIP

    Args:
        models: ONNX files, ``onnx.ModelProto`` or ``onnx_ir.Model`` objects; all take
            the same input shape.
        target: a preset name (``enasa targets`` lists them), a target file or a
            :class:`~enasa_compiler.targets.Target`.
        options: the compile options (:class:`CompileOptions`); defaults when omitted.
        **changes: options given by name (``solver="cpsat"``, ``duplicate="auto"``,
            ``extra_passes=[MyPass()]``...), applied over ``options``.

    Raises:
        InputError: bad models, target or options (one line, safe to show users).
        TypeError: an option name that does not exist.

    """
    return compile_detailed(models, target, options, **changes).plan
