"""Drive the evaluation: workload, systems, ablations, ranking, scaling; write results.

Every flow runs only the distinct subnets of each generation
(:func:`~.workload.distinct_generations`) on N images per subnet (the paper's
10,000 by default), from the plans' pipelined schedules.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import random
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from enasa_compiler._text import plural
from enasa_compiler.errors import InputError
from enasa_compiler.inputs import read_npz
from enasa_compiler.models.export import export_group
from enasa_compiler.models.sampling import sample_shared_group
from enasa_compiler.passes.duplicate import parse_duplicate
from enasa_compiler.plan import Plan
from enasa_compiler.targets import Target, load_target

from .capacity import with_crossbars
from .host import measure_cpu
from .nasa import model_nasa
from .output import write_outputs
from .ranking import compare_ranking
from .stages import time_compile_stages
from .systems import SystemRun, run_flow, run_single
from .workload import (
    SPACES,
    WorkloadSpec,
    build_workload_supernet,
    distinct_generations,
    export_generations,
    generation_archs,
)

logger = logging.getLogger(__name__)

__all__ = ["BenchConfig", "quick_config", "run_evaluation"]


@dataclass(frozen=True)
class BenchConfig:
    """Everything one evaluation run depends on (recorded in its results).

    Attributes:
        out: folder for results.json, results.md and the plots.
        spaces: search spaces to run (``spos``, ``fairnas``).
        generations: K groups per space.
        group_size: G subnets drawn per group (repeats are then dropped).
        images: N images every subnet is evaluated on (pipelined plans; the paper: 10,000).
        input_size: image side (224: full size).
        num_classes: classifier outputs (1000: full size).
        target: preset name or target file for every modeled crossbar system.
        solver: ENASA flow's mapper (``ops`` or ``auto``: CP-SAT where it fits).
        time_limit_s: CP-SAT budget per group when the solver is ``auto``.
        duplicate: weight duplication for every modeled system alike (``throughput``:
            copies balanced for the pipeline).
        seed: seeds weights, sampling and images.
        cpu_images: images measured per subnet on the CPU (then extrapolated to N).
        cpu_batches: candidate onnxruntime batch sizes (the fastest is used).
        cpu_repeats: timed runs per subnet on the CPU (the spread is reported).
        ablations: run (a) with the OPS ranking switched off (FCFS).
        stagewise_ablation: also run (a) on uniformly drawn groups (exports more subnets).
        ranking_target: the capacity-limited target of the OPS vs FCFS comparison.
        ranking_groups: group sizes of that comparison (``()``: skip it).
        scaling_spaces: spaces whose scaling curves are measured.
        scaling_groups: group sizes of the scaling curve.
        capacity_factors: chip sizes of the capacity curve, as multiples of the
            crossbars the scaling group needs.
        capacity_group: group size of the capacity curve (default: the largest
            scaling group size up to 16).
        inputs: optional ``.npz`` with ``images`` (M x 3 x S x S) for the CPU instead
            of seeded random images.
        progress: show a progress bar.
        command: the command line, stored with the results.

    """

    out: Path
    spaces: tuple[str, ...] = SPACES
    generations: int = 4
    group_size: int = 16
    images: int = 10_000
    input_size: int = 224
    num_classes: int = 1000
    target: str = "neurosim-22nm"
    solver: str = "ops"
    time_limit_s: float = 2.0
    duplicate: str = "throughput"
    seed: int = 0
    cpu_images: int = 64
    cpu_batches: tuple[int, ...] = (1, 8, 32)
    cpu_repeats: int = 3
    ablations: bool = True
    stagewise_ablation: bool = False
    ranking_target: str = "edge"
    ranking_groups: tuple[int, ...] = (4, 16)
    scaling_spaces: tuple[str, ...] = ()
    scaling_groups: tuple[int, ...] = (1, 2, 4, 8, 16)
    capacity_factors: tuple[float, ...] = (0.5, 1.0, 2.0)
    capacity_group: int | None = None
    inputs: Path | None = None
    progress: bool = True
    command: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """Refuse settings that cannot run, with one line naming the setting."""
        for space in self.spaces + self.scaling_spaces:
            if space not in SPACES:
                raise InputError(f"unknown space '{space}' (choose from {', '.join(SPACES)})")
        for name in ("generations", "group_size", "images", "cpu_images", "cpu_repeats"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1")
        if self.cpu_repeats < 1 or any(b < 1 for b in self.cpu_batches):
            raise InputError("--cpu-batches must all be at least 1")
        if self.cpu_images < min(self.cpu_batches):
            raise InputError("--cpu-images must be at least the smallest --cpu-batches")
        if self.input_size < 32 or self.input_size % 32:
            raise InputError(f"--input-size must be a multiple of 32, got {self.input_size}")
        if any(g < 1 for g in self.scaling_groups + self.ranking_groups):
            raise InputError("--scaling-groups and --ranking-groups must all be at least 1")
        if any(f <= 0 for f in self.capacity_factors):
            raise InputError("--capacity-factors must all be positive")
        parse_duplicate(self.duplicate)
        if self.solver not in ("ops", "auto"):
            raise InputError(f"--solver must be ops or auto, got '{self.solver}'")


def quick_config(out: Path, **overrides: Any) -> BenchConfig:
    """Return the ``--quick`` settings: the comparison in minutes on two cores."""
    settings: dict[str, Any] = dict(
        out=out, generations=2, group_size=4, images=1000, cpu_images=8,
        cpu_batches=(1, 8), cpu_repeats=3, ranking_groups=(4,),
        scaling_spaces=(), scaling_groups=(1, 2, 4), capacity_factors=(0.5, 1.0))
    settings.update(overrides)
    return BenchConfig(**settings)


class _Steps:
    """A progress bar over the run's steps (hidden with ``progress=False``)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = tqdm(total=total, disable=not enabled, unit="step", leave=False)

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        self.bar.set_description(what)
        logger.info("bench: %s", what)
        yield
        self.bar.update()

    def close(self) -> None:
        self.bar.close()


def _cpu_images(config: BenchConfig) -> np.ndarray:
    count = config.cpu_images
    if config.inputs is not None:
        all_images, _ = read_npz(config.inputs, require_labels=False)
        images = all_images[:count]
        want = (3, config.input_size, config.input_size)
        if images.shape[1:] != want or images.shape[0] < count:
            raise InputError(
                f"{config.inputs}: need at least {plural(count, 'image')} of shape "
                f"{want}, got {images.shape[0]} of {tuple(images.shape[1:])}")
        return np.ascontiguousarray(images, dtype=np.float32)
    rng = np.random.default_rng(config.seed)
    shape = (count, 3, config.input_size, config.input_size)
    return rng.standard_normal(shape, dtype=np.float32)


def _ratios(ours: SystemRun, base: SystemRun) -> dict[str, Any]:
    """Divide base by ours (> 1: (a) is faster / uses less), with spreads where measured."""
    speed_up = base.time_s / ours.time_s if ours.time_s else None
    energy = (base.energy_j / ours.energy_j
              if base.energy_j is not None and ours.energy_j else None)
    ratios: dict[str, Any] = {"speed_up": speed_up, "energy_ratio": energy}
    if "time_s" in base.spread and ours.time_s:
        ratios["speed_up_spread"] = [t / ours.time_s for t in base.spread["time_s"]]
    if "energy_j" in base.spread and ours.energy_j:
        ratios["energy_ratio_spread"] = [e / ours.energy_j for e in base.spread["energy_j"]]
    return ratios


def _export(config: BenchConfig, spec: WorkloadSpec, folder: Path,
            ) -> tuple[list[list[list[int]]], list[list[list[int]]], list[list[Path]]]:
    supernet = build_workload_supernet(spec)
    drawn = generation_archs(supernet, spec)
    groups = distinct_generations(drawn)
    return drawn, groups, export_generations(supernet, groups, folder)


def _space(config: BenchConfig, space: str, target: Target, images: np.ndarray,
           scratch: Path, steps: _Steps, plans: dict[str, Plan]) -> dict[str, Any]:
    spec = WorkloadSpec(space, config.generations, config.group_size, config.input_size,
                        config.num_classes, config.seed)
    with steps.step(f"{space}: export {config.generations}x{config.group_size} subnets"):
        drawn, groups, files = _export(config, spec, scratch / space / "stagewise")
    enasa_plans: list[Plan] = []

    def keep(system: str, plan: Plan) -> None:
        plans[f"{space}/{system}"] = plan
        enasa_plans.append(plan)

    n = config.images
    with steps.step(f"{space}: (a) ENASA flow"):
        enasa = run_flow(files, target, n, solver=config.solver,
                         time_limit_s=config.time_limit_s, duplicate=config.duplicate,
                         on_plan=keep)
    with steps.step(f"{space}: (b) one network at a time"):
        single = run_single(files, target, n, duplicate=config.duplicate)
    with steps.step(f"{space}: (c) resident, no sharing"):
        resident = run_flow(files, target, n, system="resident",
                            label="(c) resident, no sharing (dedup off), pipelined",
                            solver=config.solver, time_limit_s=config.time_limit_s,
                            dedup_operators=False, duplicate=config.duplicate)
    with steps.step(f"{space}: (d) onnxruntime on this machine's CPU"):
        cpu = measure_cpu(files, images, n, batches=config.cpu_batches,
                          repeats=config.cpu_repeats)
    nasa = model_nasa(enasa_plans, enasa.subnets, n)
    gpu = {"system": "gpu", "label": "(f) GPU: not measured on this machine (no GPU; "
           "bench/gpu_baseline.py measures it where one is)", "kind": "not measured"}
    baselines = [single, resident, cpu, nasa]
    ablations: list[SystemRun] = []
    if config.ablations:
        if config.stagewise_ablation:
            with steps.step(f"{space}: ablation, stage-wise off"):
                uniform = dataclasses.replace(spec, stagewise=False)
                _, _, uniform_files = _export(config, uniform, scratch / space / "uniform")
                ablations.append(run_flow(uniform_files, target, n, system="no-stagewise",
                                          label="(a) stage-wise off (uniform groups)",
                                          solver=config.solver,
                                          time_limit_s=config.time_limit_s,
                                          duplicate=config.duplicate))
        with steps.step(f"{space}: (a) with tile packing"):
            ablations.append(run_flow(files, target, n, system="packed",
                                      label="(a) with tile packing (each generation "
                                      "programmed from an empty chip)",
                                      solver=config.solver,
                                      time_limit_s=config.time_limit_s, online=False,
                                      duplicate=config.duplicate, pack_tiles=True))
        with steps.step(f"{space}: ablation, OPS ranking off (FCFS)"):
            ablations.append(run_flow(files, target, n, system="fcfs",
                                      label="(a) OPS -> first come, first served",
                                      solver="fcfs", duplicate=config.duplicate))
    drawn_count = sum(len(g) for g in drawn)
    return {
        "archs": [[list(a) for a in g] for g in groups],
        "drawn_subnets": drawn_count,
        "distinct_subnets": enasa.subnets,
        "systems": [run.to_dict() for run in (enasa, *baselines)] + [gpu],
        "ratios": {run.system: _ratios(enasa, run) for run in baselines},
        "pipeline_bounds": [dict(p.pipeline.bounds) for p in enasa_plans
                            if p.pipeline is not None],
        "ablations": [{**run.to_dict(), "vs_enasa": _ratios(enasa, run)}
                      for run in ablations],
        "files": files,
    }


def _ranking(config: BenchConfig, space: str, files: list[Path], scratch: Path,
             steps: _Steps) -> dict[str, Any]:
    target = load_target(config.ranking_target)
    largest = max(config.ranking_groups)
    with steps.step(f"{space}: OPS vs FCFS on {target.name}"):
        if len(files) < largest:
            spec = WorkloadSpec(space, 1, largest, config.input_size, config.num_classes,
                                config.seed)
            supernet = build_workload_supernet(spec)
            archs = sample_shared_group(supernet.num_layers, supernet.num_choices, largest,
                                        random.Random(config.seed))
            unique = distinct_generations([archs])[0]
            files = export_group(supernet, unique, scratch / space / "ranking")
        rows = compare_ranking(files, target, config.ranking_groups, config.images)
    return {"target": target.name, "crossbars": target.chip.crossbars, "rows": rows}


def _scaling(config: BenchConfig, space: str, target: Target, scratch: Path,
             steps: _Steps) -> dict[str, Any]:
    capacity_group = config.capacity_group or max(
        [g for g in config.scaling_groups if g <= 16] or [min(config.scaling_groups)])
    largest = max(max(config.scaling_groups), capacity_group)
    spec = WorkloadSpec(space, 1, largest, config.input_size, config.num_classes,
                        config.seed)
    with steps.step(f"{space}: scaling, export {plural(largest, 'subnet')}"):
        supernet = build_workload_supernet(spec)
        archs = sample_shared_group(supernet.num_layers, supernet.num_choices, largest,
                                    random.Random(config.seed))
        files = export_group(supernet, archs, scratch / space / "scaling")
    by_group = []
    with steps.step(f"{space}: scaling with group size"):
        for size in sorted(set(config.scaling_groups)):
            _, row = time_compile_stages(files[:size], target, images=config.images,
                                         duplicate=config.duplicate)
            row.update(group_size=size,
                       makespan_per_subnet_ns=row["pipeline_makespan_ns"] / size)
            by_group.append(row)
    by_capacity = []
    with steps.step(f"{space}: scaling with chip capacity"):
        group = files[:capacity_group]
        _, base = time_compile_stages(group, target, images=config.images,
                                      duplicate="off")
        for factor in config.capacity_factors:
            crossbars = max(1, round(base["crossbars_needed"] * factor))
            try:
                _, row = time_compile_stages(group, with_crossbars(target, crossbars),
                                             images=config.images,
                                             duplicate=config.duplicate)
            except InputError as exc:  # below the largest operator: does not fit at all
                row = {"error": str(exc)}
            row.update(capacity_factor=factor, crossbars=crossbars)
            by_capacity.append(row)
    return {"group_size": by_group, "capacity": by_capacity,
            "capacity_group": capacity_group}


def run_evaluation(config: BenchConfig) -> dict[str, Any]:
    """Run the whole evaluation and write results.json, results.md and plots to ``out``."""
    config.check()
    target = load_target(config.target)
    images = _cpu_images(config)
    total = len(config.spaces) * (5 + (1 + config.stagewise_ablation if config.ablations
                                       else 0)) \
        + (1 if config.ranking_groups and config.spaces else 0) \
        + 3 * len(config.scaling_spaces)
    steps = _Steps(total, config.progress)
    plans: dict[str, Plan] = {}
    results: dict[str, Any] = {
        "command": config.command,
        "config": {k: (str(v) if isinstance(v, Path) else v)
                   for k, v in dataclasses.asdict(config).items()
                   if k not in ("out", "progress", "command", "extra")},
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "torch_threads": torch.get_num_threads()},
        "target": {"name": target.name, "sha256": target.sha256,
                   "crossbars": target.chip.crossbars},
        "spaces": {}, "ranking": {}, "scaling": {},
    }
    try:
        with tempfile.TemporaryDirectory(prefix="enasa-bench-") as folder:
            scratch = Path(folder)
            for space in config.spaces:
                results["spaces"][space] = _space(config, space, target, images, scratch,
                                                  steps, plans)
            if config.ranking_groups and config.spaces:
                space = config.spaces[0]
                first = results["spaces"][space]["files"][0]
                results["ranking"][space] = _ranking(config, space, first, scratch, steps)
            for space in config.scaling_spaces:
                results["scaling"][space] = _scaling(config, space, target, scratch, steps)
    finally:
        steps.close()
        for space in results["spaces"].values():
            space.pop("files", None)
    write_outputs(config.out, results, plans)
    return results
