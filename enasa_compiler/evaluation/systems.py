"""The systems of the comparison: one workload, four ways to run it.

Every crossbar figure is *modeled*: it comes from plans the compiler makes for the
target, priced by the target's cost model, and every plan is validated before it is
used. CPU (and GPU) figures are *measured* wall times (see :mod:`.host`).

* **enasa** (a): each generation is one group: merged, deduplicated, scheduled by
  OPS (or CP-SAT where it fits), weights resident, and started from the crossbar
  contents the previous generation left (online mapping).
* **single** (b): what a one-network CIM compiler does in a NAS loop: every subnet
  compiled on its own, its weights written into the crossbars before it runs, then
  the N images; subnets one after another.
* **resident** (c): every weight of the workload written once and kept (as if the
  supernet were resident), every subnet executed on its own, one after another: no
  writes per subnet, but no sharing of computation and no overlap between subnets.
* the ablations are (a) with one part switched off: stage-wise groups (members
  drawn uniformly), operator dedup, or the OPS ranking (first come, first served).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from enasa_compiler.passes.mapping.online import TileKey, tile_key
from enasa_compiler.pipeline import compile_detailed
from enasa_compiler.plan import Plan
from enasa_compiler.targets import Target
from enasa_compiler.targets.power import static_power_mw
from enasa_compiler.validation.validator import validate

__all__ = ["SystemRun", "pipelined_estimate_ns", "plan_energy_pj", "run_enasa",
           "run_single_and_resident"]

_PJ_PER_J = 1e12
_NS_PER_S = 1e9

PlanHook = Callable[[str, Plan], None]


@dataclass
class SystemRun:
    """Totals of one system over the whole workload (all generations, N images).

    Attributes:
        system: short name (``enasa``, ``single``, ``resident``, ``cpu``, ...).
        label: what the tables print.
        kind: ``modeled`` (crossbar cost model) or ``measured`` (wall clock).
        subnets: evaluated subnets (K x G).
        images: images each subnet is evaluated on (N).
        time_s: time to evaluate every subnet on the N images.
        energy_j: energy for the same work (``None`` where nothing can price it).
        cell_writes: ReRAM cells programmed (modeled systems only).
        busy_crossbar_ns: crossbar-time spent computing.
        crossbar_ns: crossbars on chip x time (the utilization denominator).
        allocated_crossbar_ns: crossbars holding weights x time.
        macs_before / macs_after: multiply-adds before and after dedup, per image.
        plans: plans made (each validated).
        compile_s: wall time spent compiling them.
        extra: system-specific details (device names, assumptions).

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
    allocated_crossbar_ns: int = 0
    macs_before: int = 0
    macs_after: int = 0
    plans: int = 0
    compile_s: float = 0.0
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
        """Busy crossbar-time over all crossbars on the chip x time (domain.md s. 2)."""
        return self.busy_crossbar_ns / self.crossbar_ns if self.crossbar_ns else None

    @property
    def allocated_utilization(self) -> float | None:
        """Busy crossbar-time over the crossbars that hold weights x time."""
        return (self.busy_crossbar_ns / self.allocated_crossbar_ns
                if self.allocated_crossbar_ns else None)

    @property
    def dedup_ratio(self) -> float | None:
        """Multiply-adds before dedup over after (1.0 when nothing is shared)."""
        return self.macs_before / self.macs_after if self.macs_after else None

    @property
    def pipelined_utilization(self) -> float | None:
        """Utilization had the plans streamed images through a layer pipeline (estimate)."""
        crossbar_ns = self.extra.get("pipelined_crossbar_ns")
        return self.busy_crossbar_ns / crossbar_ns if crossbar_ns else None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON figures, derived ones included."""
        derived = {} if self.pipelined_utilization is None else {
            "pipelined_utilization": self.pipelined_utilization}
        return {
            "system": self.system, "label": self.label, "kind": self.kind,
            "subnets": self.subnets, "images": self.images, "time_s": self.time_s,
            "energy_j": self.energy_j, "time_per_subnet_s": self.time_per_subnet_s,
            "energy_per_subnet_j": self.energy_per_subnet_j,
            "cell_writes": self.cell_writes, "utilization": self.utilization,
            "allocated_utilization": self.allocated_utilization,
            "dedup_ratio": self.dedup_ratio, "macs_before": self.macs_before,
            "macs_after": self.macs_after, "plans": self.plans,
            "compile_s": self.compile_s, **self.extra, **derived,
        }


def plan_energy_pj(plan: Plan, target: Target) -> float:
    """All the energy a plan's run costs: computation, writes, and leakage.

    The plan's totals hold the dynamic energy; the chip leaks ``static_power_mw``
    for the whole makespan on top (1 mW for 1 ns is 1 pJ).
    """
    return float(plan.totals.energy_pj) + static_power_mw(target) * plan.totals.makespan_ns


def _compute_span_ns(plan: Plan) -> int:
    if not plan.compute:
        return 0
    return (max(e.end_ns for e in plan.compute)
            - min(e.start_ns for e in plan.compute))


def _checked(plan: Plan, what: str) -> Plan:
    violations = validate(plan)
    if violations:
        raise AssertionError(f"{what}: the compiler made an invalid plan: {violations[0]}")
    return plan


def pipelined_estimate_ns(plan: Plan, target: Target) -> tuple[int, int]:
    """Analytic steady state of a layer pipeline over the plan's images.

    The plan runs its batch layer by layer. Were the images streamed through the
    same placement one after another (layer k on image i while layer k+1 works on
    image i-1), a new image could enter every ``bottleneck`` ns: the busiest
    crossbar's (or the digital units') work per image. This is an estimate from
    the plan's own busy times, not a scheduled and validated plan.

    Returns:
        ``(time_ns, bottleneck_ns)``: first image's latency plus one bottleneck per
        further image, and the bottleneck itself.

    """
    images = max(1, plan.batch)
    busy: dict[int, int] = {}
    digital_ns = 0
    for event in plan.compute:
        length = event.end_ns - event.start_ns
        if not event.placements:
            digital_ns += length
        for crossbar in {p.crossbar for p in event.placements}:
            busy[crossbar] = busy.get(crossbar, 0) + length
    per_image = max([max(busy.values(), default=0),
                     math.ceil(digital_ns / target.chip.digital_units)]) / images
    bottleneck_ns = math.ceil(per_image)
    first_ns = math.ceil(plan.totals.makespan_ns / images)
    return first_ns + (images - 1) * bottleneck_ns, bottleneck_ns


def _add_plan(run: SystemRun, plan: Plan, target: Target) -> None:
    totals = plan.totals
    chip_crossbars = target.chip.crossbars
    run.time_s += totals.makespan_ns / _NS_PER_S
    assert run.energy_j is not None and run.cell_writes is not None
    run.energy_j += plan_energy_pj(plan, target) / _PJ_PER_J
    run.extra["leakage_j"] = (run.extra.get("leakage_j", 0.0)
                              + static_power_mw(target) * totals.makespan_ns / _PJ_PER_J)
    run.extra["write_j"] = run.extra.get("write_j", 0.0) + totals.write_energy_pj / _PJ_PER_J
    run.cell_writes += totals.cell_writes
    run.busy_crossbar_ns += totals.busy_crossbar_ns
    run.crossbar_ns += chip_crossbars * totals.makespan_ns
    run.allocated_crossbar_ns += totals.crossbars_used * totals.makespan_ns
    run.macs_before += plan.dedup["macs_before"]
    run.macs_after += plan.dedup["macs_after"]
    run.plans += 1
    pipelined_ns, _ = pipelined_estimate_ns(plan, target)
    run.extra["pipelined_time_s"] = (run.extra.get("pipelined_time_s", 0.0)
                                     + pipelined_ns / _NS_PER_S)
    run.extra["pipelined_crossbar_ns"] = (run.extra.get("pipelined_crossbar_ns", 0)
                                          + chip_crossbars * pipelined_ns)


def run_enasa(
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
    duplicate: str | int = "off",
    on_plan: PlanHook | None = None,
) -> SystemRun:
    """Run (a) or one of its ablations: one group per generation, chained state."""
    run = SystemRun(system, label, "modeled", sum(len(g) for g in generations), images)
    previous: Plan | None = None
    solvers: set[str] = set()
    for files in generations:
        started = time.perf_counter()
        plan = compile_detailed(
            files, target, solver=solver, batch=images, time_limit_s=time_limit_s,
            initial_state=previous if online else None,
            dedup_operators=dedup_operators, duplicate=duplicate).plan
        run.compile_s += time.perf_counter() - started
        _add_plan(run, _checked(plan, label), target)
        if on_plan is not None:
            on_plan(system, plan)
        previous = plan
        solvers.add(plan.solver)
    run.extra["solvers"] = sorted(solvers)
    return run


def run_single_and_resident(
    generations: Sequence[Sequence[Path]],
    target: Target,
    images: int,
    *,
    duplicate: str | int = "off",
    on_plan: PlanHook | None = None,
) -> tuple[SystemRun, SystemRun]:
    """Run (b) and (c) from the same per-subnet plans.

    (b) takes each plan whole: the subnet's weights are written before it runs. (c)
    takes only its computation (first compute start to last compute end, compute
    energy and the leakage over that span) and adds, once for the whole workload,
    the writes of every distinct tile, all crossbars writing in parallel.
    """
    subnets = sum(len(g) for g in generations)
    single = SystemRun("single", "(b) one network at a time", "modeled", subnets, images)
    resident = SystemRun("resident", "(c) resident, no sharing", "modeled", subnets,
                         images)
    writes: dict[TileKey, tuple[int, float, int]] = {}
    chip = target.chip.crossbars
    for files in generations:
        for path in files:
            started = time.perf_counter()
            plan = _checked(compile_detailed([path], target, batch=images,
                                             duplicate=duplicate).plan, single.label)
            elapsed = time.perf_counter() - started
            single.compile_s += elapsed
            resident.compile_s += elapsed
            _add_plan(single, plan, target)
            if on_plan is not None:
                on_plan("single", plan)
            span_ns = _compute_span_ns(plan)
            totals = plan.totals
            resident.time_s += span_ns / _NS_PER_S
            assert resident.energy_j is not None
            resident.energy_j += (totals.compute_energy_pj
                                  + static_power_mw(target) * span_ns) / _PJ_PER_J
            resident.busy_crossbar_ns += totals.busy_crossbar_ns
            resident.crossbar_ns += chip * span_ns
            resident.allocated_crossbar_ns += totals.crossbars_used * span_ns
            resident.macs_before += plan.dedup["macs_before"]
            resident.macs_after += plan.dedup["macs_after"]
            resident.plans += 1
            tiles = {t.id: (w, t) for w in plan.weights for t in w.tiles}
            for event in plan.program:
                matrix, tile = tiles[event.tile]
                writes.setdefault(tile_key(matrix, tile),
                                  (event.end_ns - event.start_ns, event.energy_pj,
                                   tile.cells))
    waves = math.ceil(len(writes) / chip) if writes else 0
    longest_ns = max((w[0] for w in writes.values()), default=0)
    resident.time_s += waves * longest_ns / _NS_PER_S
    assert resident.energy_j is not None
    resident.energy_j += (sum(w[1] for w in writes.values())
                          + static_power_mw(target) * waves * longest_ns) / _PJ_PER_J
    resident.cell_writes = sum(w[2] for w in writes.values())
    resident.extra["distinct_tiles"] = len(writes)
    resident.extra["fits_resident"] = len(writes) <= chip
    return single, resident
