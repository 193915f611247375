"""The NAS workload every system runs: K generations of G full-size subnets.

ENASA's flow sees a generation as one group. The groups come from the stage-wise
sampler (domain.md section 4): generation 0 shares its bottom half, every later
generation is made of children of the current best that keep the best's fixed half,
alternating bottom and top. The bench has no trained full-size supernet, so "best"
is the member with the fewest multiply-adds (a hardware-aware fitness that needs no
accuracy); the systems are compared on cost, which does not depend on the weights'
values. With ``stagewise=False`` every member is drawn uniformly at random (the
ablation: groups that share little).

Every architecture is evaluated once: the stage-wise sampler is asked for children
not seen before, and :func:`distinct_generations` drops whatever repeat is left (a
uniform draw, or a fixed half with fewer new architectures than the group size), so
each flow is charged per distinct subnet.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from enasa_compiler.models.checkpoint import SupernetConfig, build_supernet
from enasa_compiler.models.export import Supernet, export_group
from enasa_compiler.models.flops import count_cost
from enasa_compiler.models.sampling import (
    Arch,
    sample_shared_group,
    sample_uniform,
    stagewise_children,
)

__all__ = ["SPACES", "WorkloadSpec", "build_workload_supernet", "distinct_generations",
           "export_generations", "generation_archs"]

SPACES = ("spos", "fairnas")


@dataclass(frozen=True)
class WorkloadSpec:
    """What one space's workload is made of.

    Attributes:
        space: ``spos`` or ``fairnas``.
        generations: K, groups evaluated one after another.
        group_size: G, subnets per group.
        input_size: image side; 224 is the full size the paper uses.
        num_classes: classifier outputs (1000 at full size).
        seed: seeds the supernet's weights and the sampling.
        stagewise: stage-wise groups (ENASA) or uniformly drawn members (ablation).

    """

    space: str
    generations: int
    group_size: int
    input_size: int = 224
    num_classes: int = 1000
    seed: int = 0
    stagewise: bool = True


def build_workload_supernet(spec: WorkloadSpec) -> Supernet:
    """Build the full-width supernet of the space: seeded random weights, eval mode."""
    config = SupernetConfig(space=spec.space, width_mult=1.0, input_size=spec.input_size,
                            num_classes=spec.num_classes, seed=spec.seed)
    return build_supernet(config).eval()


def _macs(supernet: Supernet, arch: Arch) -> int:
    example = torch.zeros(1, 3, supernet.input_size, supernet.input_size)
    return count_cost(supernet.subnet(arch), example).macs


def generation_archs(supernet: Supernet, spec: WorkloadSpec) -> list[list[Arch]]:
    """Draw the K groups of the workload, deterministic for a seed."""
    rng = random.Random(spec.seed)
    layers, choices = supernet.num_layers, supernet.num_choices
    if not spec.stagewise:
        return [[sample_uniform(layers, choices, rng) for _ in range(spec.group_size)]
                for _ in range(spec.generations)]
    group = sample_shared_group(layers, choices, spec.group_size, rng)
    groups = [group]
    costs: dict[tuple[int, ...], int] = {}
    for generation in range(1, spec.generations):
        for arch in group:
            if tuple(arch) not in costs:
                costs[tuple(arch)] = _macs(supernet, arch)
        best = min(group, key=lambda arch: (costs[tuple(arch)], tuple(arch)))
        seen = [arch for earlier in groups for arch in earlier]
        group = stagewise_children(best, group, spec.group_size, generation, rng,
                                   num_choices=choices, exclude=seen)
        groups.append(group)
    return groups


def distinct_generations(groups: Sequence[Sequence[Arch]]) -> list[list[Arch]]:
    """Drop every architecture already drawn, in its own generation or an earlier one.

    A NAS loop keeps the accuracy of an architecture it has evaluated, so a repeat
    costs nothing on any system; keeping it would charge the per-subnet baselines for
    work that ENASA's dedup merges for free. Generations left empty are dropped.
    """
    seen: set[tuple[int, ...]] = set()
    kept: list[list[Arch]] = []
    for group in groups:
        fresh = []
        for arch in group:
            if tuple(arch) not in seen:
                seen.add(tuple(arch))
                fresh.append(arch)
        if fresh:
            kept.append(fresh)
    return kept


def export_generations(supernet: Supernet, groups: Sequence[Sequence[Arch]],
                       folder: Path) -> list[list[Path]]:
    """Export every generation's group to ``folder/gen{k}/subnet_{i}.onnx``."""
    return [export_group(supernet, archs, folder / f"gen{k:02d}")
            for k, archs in enumerate(groups)]
