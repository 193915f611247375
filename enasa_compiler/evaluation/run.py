"""Drive the evaluation: workload, systems, ablations, scaling; then write the results."""

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
from .host import measure_onnxruntime
from .output import write_outputs
from .stages import time_compile_stages
from .systems import SystemRun, run_enasa, run_single_and_resident
from .workload import (
    SPACES,
    WorkloadSpec,
    build_workload_supernet,
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
        group_size: G subnets per group.
        images: N images every subnet is evaluated on.
        input_size: image side (224: full size).
        num_classes: classifier outputs (1000: full size).
        target: preset name or target file for every modeled system.
        solver: ENASA flow's mapper (``ops`` or ``auto``: CP-SAT where it fits).
        time_limit_s: CP-SAT budget per group when the solver is ``auto``.
        duplicate: weight duplication for every modeled system alike (``off``,
            ``auto``: spare crossbars copy the slowest layers, or a copy count).
        seed: seeds weights, sampling and images.
        cpu_repeats: timed onnxruntime runs per subnet (median counts).
        ablations: run (a) with stage-wise, dedup and the OPS ranking switched off.
        scaling_spaces: spaces whose scaling curves are measured.
        scaling_groups: group sizes of the scaling curve.
        capacity_factors: chip sizes of the capacity curve, as multiples of the
            crossbars the scaling group needs.
        capacity_group: group size of the capacity curve (default: the largest
            scaling group size up to 16).
        inputs: optional ``.npz`` with ``images`` (N x 3 x S x S) to use instead of
            seeded random images.
        progress: show a progress bar.
        command: the command line, stored with the results.

    """

    out: Path
    spaces: tuple[str, ...] = SPACES
    generations: int = 4
    group_size: int = 16
    images: int = 64
    input_size: int = 224
    num_classes: int = 1000
    target: str = "neurosim-22nm"
    solver: str = "auto"
    time_limit_s: float = 2.0
    duplicate: str = "auto"
    seed: int = 0
    cpu_repeats: int = 3
    ablations: bool = True
    scaling_spaces: tuple[str, ...] = SPACES
    scaling_groups: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    capacity_factors: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
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
        for name in ("generations", "group_size", "images", "cpu_repeats"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1")
        if self.input_size < 32 or self.input_size % 32:
            raise InputError(f"--input-size must be a multiple of 32, got {self.input_size}")
        if any(g < 1 for g in self.scaling_groups):
            raise InputError("--scaling-groups must all be at least 1")
        if any(f <= 0 for f in self.capacity_factors):
            raise InputError("--capacity-factors must all be positive")
        parse_duplicate(self.duplicate)
        if self.solver not in ("ops", "auto"):
            raise InputError(f"--solver must be ops or auto, got '{self.solver}'")


def quick_config(out: Path, **overrides: Any) -> BenchConfig:
    """Return the ``--quick`` settings: the comparison in minutes on two cores."""
    settings: dict[str, Any] = dict(
        out=out, generations=2, group_size=4, images=4, solver="ops", cpu_repeats=2,
        scaling_spaces=("spos",), scaling_groups=(1, 2, 4, 8), capacity_factors=(0.5, 1.0))
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


def _images(config: BenchConfig) -> np.ndarray:
    if config.inputs is not None:
        all_images, _ = read_npz(config.inputs, require_labels=False)
        images = all_images[: config.images]
        want = (3, config.input_size, config.input_size)
        if images.shape[1:] != want or images.shape[0] < config.images:
            raise InputError(
                f"{config.inputs}: need at least {plural(config.images, 'image')} of shape "
                f"{want}, got {images.shape[0]} of {tuple(images.shape[1:])}")
        return np.ascontiguousarray(images, dtype=np.float32)
    rng = np.random.default_rng(config.seed)
    shape = (config.images, 3, config.input_size, config.input_size)
    return rng.standard_normal(shape, dtype=np.float32)


def _ratios(ours: SystemRun, base: SystemRun) -> dict[str, float | None]:
    speed_up = base.time_s / ours.time_s if ours.time_s else None
    energy = (base.energy_j / ours.energy_j
              if base.energy_j is not None and ours.energy_j else None)
    return {"speed_up": speed_up, "energy_ratio": energy}


def _space(config: BenchConfig, space: str, target: Target, images: np.ndarray,
           scratch: Path, steps: _Steps, plans: dict[str, Plan]) -> dict[str, Any]:
    spec = WorkloadSpec(space, config.generations, config.group_size, config.input_size,
                        config.num_classes, config.seed)
    with steps.step(f"{space}: export {config.generations}x{config.group_size} subnets"):
        supernet = build_workload_supernet(spec)
        groups = generation_archs(supernet, spec)
        files = export_generations(supernet, groups, scratch / space / "stagewise")

    def keep_last(system: str, plan: Plan) -> None:
        plans[f"{space}/{system}"] = plan

    with steps.step(f"{space}: (a) ENASA flow"):
        enasa = run_enasa(files, target, config.images, solver=config.solver,
                          time_limit_s=config.time_limit_s, duplicate=config.duplicate,
                          on_plan=keep_last)
    with steps.step(f"{space}: (b) and (c), one subnet at a time"):
        single, resident = run_single_and_resident(files, target, config.images,
                                                   duplicate=config.duplicate)
    with steps.step(f"{space}: (d) onnxruntime on this machine"):
        cpu = measure_onnxruntime(files, images, repeats=config.cpu_repeats)
        gpu = measure_onnxruntime(files, images, provider="CUDAExecutionProvider",
                                  repeats=config.cpu_repeats)
    baselines = [run for run in (single, resident, cpu, gpu) if run is not None]
    ablations: list[SystemRun] = []
    if config.ablations:
        with steps.step(f"{space}: ablation, stage-wise off"):
            uniform = dataclasses.replace(spec, stagewise=False)
            uniform_files = export_generations(supernet, generation_archs(supernet, uniform),
                                               scratch / space / "uniform")
            ablations.append(run_enasa(uniform_files, target, config.images,
                                       system="no-stagewise", label="(a) stage-wise off",
                                       solver=config.solver,
                                       time_limit_s=config.time_limit_s,
                                       duplicate=config.duplicate))
        with steps.step(f"{space}: ablation, dedup off"):
            ablations.append(run_enasa(files, target, config.images, system="no-dedup",
                                       label="(a) dedup off", solver=config.solver,
                                       time_limit_s=config.time_limit_s,
                                       dedup_operators=False,
                                       duplicate=config.duplicate))
        with steps.step(f"{space}: ablation, OPS ranking off (FCFS)"):
            ablations.append(run_enasa(files, target, config.images, system="fcfs",
                                       label="(a) OPS -> first come, first served",
                                       solver="fcfs", duplicate=config.duplicate))
    return {
        "archs": [[list(a) for a in g] for g in groups],
        "systems": [run.to_dict() for run in (enasa, *baselines)],
        "ratios": {run.system: _ratios(enasa, run) for run in baselines},
        "gpu": gpu.extra["device"] if gpu is not None else
        "not measured: onnxruntime offers no CUDA provider on this machine",
        "ablations": [{**run.to_dict(), "vs_enasa": _ratios(enasa, run)}
                      for run in ablations],
    }


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
            _, row = time_compile_stages(files[:size], target, batch=config.images,
                                         duplicate=config.duplicate)
            row.update(group_size=size, makespan_per_subnet_ns=row["makespan_ns"] / size)
            by_group.append(row)
    by_capacity = []
    with steps.step(f"{space}: scaling with chip capacity"):
        group = files[:capacity_group]
        _, base = time_compile_stages(group, target, batch=config.images)  # no copies
        for factor in config.capacity_factors:
            crossbars = max(1, round(base["crossbars_needed"] * factor))
            try:
                _, row = time_compile_stages(group, with_crossbars(target, crossbars),
                                             batch=config.images,
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
    images = _images(config)
    total = len(config.spaces) * (4 + (3 if config.ablations else 0)) \
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
        "spaces": {}, "scaling": {},
    }
    try:
        with tempfile.TemporaryDirectory(prefix="enasa-bench-") as folder:
            scratch = Path(folder)
            for space in config.spaces:
                results["spaces"][space] = _space(config, space, target, images, scratch,
                                                  steps, plans)
            for space in config.scaling_spaces:
                results["scaling"][space] = _scaling(config, space, target, scratch, steps)
    finally:
        steps.close()
    write_outputs(config.out, results, plans)
    return results
