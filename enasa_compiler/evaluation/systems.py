"""The modeled systems of the comparison: one workload, run as pipelined plans.

Every crossbar figure is *modeled*: it comes from the pipelined schedule
(``plan.pipeline``, docs/plan-format.md) of plans the compiler makes for the target,
for N images per subnet, priced by the target's cost model plus the chip's leakage
over the makespan; every plan is validated before it is used. Only distinct subnets
are run (:func:`~.workload.distinct_generations`).

* **enasa** (a): each generation's group compiled as one: merged, deduplicated,
  mapped by OPS, weights resident with throughput-balanced copies, started from the
  crossbar contents the previous generation left (online mapping), N images pipelined.
* **single** (b): the strongest one-network CIM flow this compiler makes: each
  distinct subnet compiled alone for the same target with the same pipelining and
  throughput duplication, programmed subnet by subnet (its writes counted every
  time), N images each, subnets one after another.
* **resident** (c): (a) without sharing: ``dedup_operators=False``, so every subnet
  computes its own operators (identical weights are still stored once).
* the ablations are (a) with one part switched off: stage-wise groups (members
  drawn uniformly) or the OPS ranking (first come, first served).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from enasa_compiler.pipeline import compile_detailed
from enasa_compiler.plan import Plan
from enasa_compiler.targets import Target
from enasa_compiler.targets.power import static_power_mw
from enasa_compiler.validation.validator import validate

logger = logging.getLogger(__name__)

__all__ = ["SystemRun", "checked_plan", "pipeline_cell_writes", "pipeline_energy_pj",
           "run_flow", "run_single"]

_PJ_PER_J = 1e12
_NS_PER_S = 1e9

PlanHook = Callable[[str, Plan], None]


@dataclass
class SystemRun:
    """Totals of one system over the whole workload (every distinct subnet, N images).

    Attributes:
        system: short name (``enasa``, ``single``, ``resident``, ``cpu``, ``nasa``...).
        label: what the tables print: the row's kind and its assumptions.
        kind: ``modeled`` (a cost model), ``measured`` (wall clock here) or
            ``estimated`` (measured here, then extrapolated or priced by an assumption).
        subnets: distinct subnets evaluated.
        images: images each subnet is evaluated on (N).
        time_s: time to evaluate every subnet on the N images.
        energy_j: energy for the same work (``None`` where nothing can price it).
        cell_writes: ReRAM cells programmed (crossbar systems only).
        busy_crossbar_ns: crossbar-time spent computing.
        crossbar_ns: crossbars on chip x time.
        steady_crossbar_ns: crossbars on chip x steady-state time (II x images).
        allocated_steady_crossbar_ns: crossbars holding weights x II x images.
        macs_before / macs_after: multiply-adds per image before and after dedup.
        plans: plans made (each validated).
        compile_s: wall time spent compiling them.
        spread: ``time_s``/``energy_j`` as min, median, max over repeats (measured rows).
        extra: system-specific details (modes, device, assumptions).

    """

    system: str
    label: str
    kind: str
    subnets: int
    images: int
    time_s: float = 0.0
    energy_j: float | None = 0.0
    cell_writes: int | None = 0
    busy_crossbar_ns: int = 0
    crossbar_ns: int = 0
    steady_crossbar_ns: int = 0
    allocated_steady_crossbar_ns: int = 0
    macs_before: int = 0
    macs_after: int = 0
    plans: int = 0
    compile_s: float = 0.0
    spread: dict[str, list[float]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def time_per_subnet_s(self) -> float:
        """Time to evaluate one subnet on the N images."""
        return self.time_s / self.subnets

    @property
    def energy_per_subnet_j(self) -> float | None:
        """Energy to evaluate one subnet on the N images."""
        return None if self.energy_j is None else self.energy_j / self.subnets

    @property
    def utilization(self) -> float | None:
        """Busy crossbar-time over all chip crossbars x the whole run, writes included."""
        return self.busy_crossbar_ns / self.crossbar_ns if self.crossbar_ns else None

    @property
    def steady_utilization(self) -> float | None:
        """Pipelined steady state: busy crossbar-time over chip crossbars x II x images."""
        return (self.busy_crossbar_ns / self.steady_crossbar_ns
                if self.steady_crossbar_ns else None)

    @property
    def allocated_steady_utilization(self) -> float | None:
        """Steady state over the crossbars that hold weights (the paper's > 90% figure)."""
        return (self.busy_crossbar_ns / self.allocated_steady_crossbar_ns
                if self.allocated_steady_crossbar_ns else None)

    @property
    def dedup_ratio(self) -> float | None:
        """Multiply-adds before dedup over after (1.0 when nothing is shared)."""
        return self.macs_before / self.macs_after if self.macs_after else None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON figures, derived ones included."""
        return {
            "system": self.system, "label": self.label, "kind": self.kind,
            "subnets": self.subnets, "images": self.images, "time_s": self.time_s,
            "energy_j": self.energy_j, "time_per_subnet_s": self.time_per_subnet_s,
            "energy_per_subnet_j": self.energy_per_subnet_j,
            "cell_writes": self.cell_writes, "utilization": self.utilization,
            "steady_utilization": self.steady_utilization,
            "allocated_steady_utilization": self.allocated_steady_utilization,
            "dedup_ratio": self.dedup_ratio, "macs_before": self.macs_before,
            "macs_after": self.macs_after, "plans": self.plans,
            "compile_s": self.compile_s, "spread": self.spread, **self.extra,
        }


def pipeline_energy_pj(plan: Plan, target: Target) -> float:
    """All the energy of a plan's pipelined run: compute, writes, off-chip, leakage.

    The pipeline's totals hold the dynamic energy; the chip leaks ``static_power_mw``
    for the whole makespan on top (1 mW for 1 ns is 1 pJ), as
    ``cost_report(plan)["pipeline"]`` counts it.
    """
    assert plan.pipeline is not None
    totals = plan.pipeline.totals
    return float(totals.energy_pj) + static_power_mw(target) * totals.makespan_ns


def pipeline_cell_writes(plan: Plan) -> int:
    """Cells a plan's pipelined run programs: the programming, then every pass's writes.

    A resident pipeline writes ``schedule.program`` once (the tiles the previous
    generation did not leave in place). A segmented one rewrites each segment's tiles
    on every pass of a micro-batch.
    """
    assert plan.pipeline is not None
    pipeline = plan.pipeline
    cells = {t.id: t.cells for w in plan.weights for t in w.tiles}
    programmed = sum(cells[e.tile] for e in plan.program) if plan.mode == "resident" else 0
    per_pass = sum(cells[w.tile] for seg in pipeline.segments for w in seg.writes)
    passes = -(-pipeline.images // pipeline.micro_batch)
    return programmed + per_pass * passes


def checked_plan(plan: Plan, what: str) -> Plan:
    """Return ``plan`` after checking it validates and has a pipelined schedule."""
    violations = validate(plan)
    if violations:
        raise AssertionError(f"{what}: the compiler made an invalid plan: {violations[0]}")
    if plan.pipeline is None:
        raise AssertionError(f"{what}: the plan has no pipelined schedule")
    return plan


def _add_plan(run: SystemRun, plan: Plan, target: Target) -> None:
    assert plan.pipeline is not None
    totals = plan.pipeline.totals
    chip_crossbars = target.chip.crossbars
    run.time_s += totals.makespan_ns / _NS_PER_S
    assert run.energy_j is not None and run.cell_writes is not None
    run.energy_j += pipeline_energy_pj(plan, target) / _PJ_PER_J
    leakage_j = static_power_mw(target) * totals.makespan_ns / _PJ_PER_J
    for key, value in (("leakage_j", leakage_j),
                       ("write_j", totals.write_energy_pj / _PJ_PER_J),
                       ("offchip_j", totals.offchip_energy_pj / _PJ_PER_J),
                       ("write_s", totals.write_ns / _NS_PER_S)):
        run.extra[key] = run.extra.get(key, 0.0) + value
    run.cell_writes += pipeline_cell_writes(plan)
    run.busy_crossbar_ns += totals.busy_crossbar_ns_per_image * totals.images
    run.crossbar_ns += chip_crossbars * totals.makespan_ns
    run.steady_crossbar_ns += chip_crossbars * totals.ii_ns * totals.images
    run.allocated_steady_crossbar_ns += totals.crossbars_used * totals.ii_ns * totals.images
    run.macs_before += plan.dedup["macs_before"]
    run.macs_after += plan.dedup["macs_after"]
    run.plans += 1
    modes = run.extra.setdefault("modes", {})
    modes[plan.mode] = modes.get(plan.mode, 0) + 1
    # Whether any duplication could shorten this II (best_ii_ns: the resource bound).
    best_ii_ns = plan.pipeline.bounds.get("best_ii_ns")
    run.extra.setdefault("ii_ns", []).append(totals.ii_ns)
    run.extra["plans_at_best_ii"] = run.extra.get("plans_at_best_ii", 0) + int(
        best_ii_ns is not None and totals.ii_ns <= best_ii_ns)


def run_flow(
    generations: Sequence[Sequence[Path]],
    target: Target,
    images: int,
    *,
    system: str = "enasa",
    label: str = "(a) ENASA flow",
    solver: str = "ops",
    time_limit_s: float = 2.0,
    dedup_operators: bool = True,
    online: bool = True,
    duplicate: str | int = "throughput",
    pack_tiles: bool = False,
    on_plan: PlanHook | None = None,
) -> SystemRun:
    """Run (a), (c) or an ablation: one pipelined group per generation, chained state.

    ``pack_tiles`` packs small tiles into shared crossbars; only plans that start from
    an empty chip are packed, so it is meant with ``online=False``.
    """
    run = SystemRun(system, label, "modeled", sum(len(g) for g in generations), images)
    previous: Plan | None = None
    solvers: set[str] = set()
    for files in generations:
        started = time.perf_counter()
        plan = compile_detailed(
            files, target, solver=solver, images=images, time_limit_s=time_limit_s,
            initial_state=previous if online else None,
            dedup_operators=dedup_operators, duplicate=duplicate,
            pack_tiles=pack_tiles).plan
        run.compile_s += time.perf_counter() - started
        _add_plan(run, checked_plan(plan, label), target)
        if on_plan is not None:
            on_plan(system, plan)
        previous = plan
        solvers.add(plan.solver)
    run.extra["solvers"] = sorted(solvers)
    return run


def run_single(
    generations: Sequence[Sequence[Path]],
    target: Target,
    images: int,
    *,
    duplicate: str | int = "throughput",
    on_plan: PlanHook | None = None,
) -> SystemRun:
    """Run (b): every distinct subnet compiled, programmed and pipelined on its own.

    Each plan starts from an empty chip, so its makespan includes writing all of the
    subnet's tiles before its N images stream through; the totals are the sums over
    the subnets.
    """
    run = SystemRun("single", "(b) one network at a time, pipelined, throughput copies",
                    "modeled", sum(len(g) for g in generations), images)
    for files in generations:
        for path in files:
            started = time.perf_counter()
            plan = compile_detailed([path], target, images=images,
                                    duplicate=duplicate).plan
            run.compile_s += time.perf_counter() - started
            _add_plan(run, checked_plan(plan, run.label), target)
            if on_plan is not None:
                on_plan("single", plan)
    return run
