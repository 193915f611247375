"""The state of one architecture search: what was evaluated, and what to try next.

:class:`SearchState` keeps the history of evaluated subnets and proposes each new group
for :func:`~.search.search`: uniform or strict-fair draws, SPOS's evolution (mutation
and crossover of the top-k parents) or ENASA's stage-wise children, never repeating an
evaluated architecture nor one over the MAC budget.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from enasa_compiler.errors import InputError

from .export import Supernet
from .flops import count_cost
from .sampling import (
    Arch,
    fixed_half,
    sample_strict_fair,
    sample_uniform,
    stagewise_children,
)

if TYPE_CHECKING:
    from .search import SearchConfig

logger = logging.getLogger(__name__)

__all__ = ["SearchState"]

_TRIES_PER_CHILD = 200  # redraws before a duplicate-prone proposer falls back to random


class SearchState:
    """The state of one search: what was evaluated, and how to propose the next group."""

    def __init__(self, supernet: Supernet, config: SearchConfig) -> None:
        self.supernet = supernet
        self.config = config
        self.rng = random.Random(config.seed)
        self.layers = supernet.num_layers
        self.choices = supernet.num_choices
        self.history: list[dict[str, Any]] = []
        self.seen: set[Arch] = set()
        self._macs: dict[Arch, int] = {}
        size = supernet.input_size
        self._example = torch.zeros(1, 3, size, size)

    def macs(self, arch: Arch) -> int:
        if arch not in self._macs:
            self._macs[arch] = count_cost(self.supernet, self._example, arch).macs
        return self._macs[arch]

    def admissible(self, arch: Arch, group: list[Arch]) -> bool:
        if arch in self.seen or arch in group:
            return False
        return self.config.max_macs is None or self.macs(arch) <= self.config.max_macs

    def ranked(self) -> list[dict[str, Any]]:
        """Feasible records by accuracy (earliest first on ties)."""
        feasible = [r for r in self.history if r["feasible"]]
        return sorted(feasible, key=lambda r: -r["accuracy"])

    def parents(self) -> list[Arch]:
        ranked = self.ranked()
        if not ranked:
            # Nothing meets the latency bound yet: breed from the fastest to move there.
            ranked = sorted(self.history, key=lambda r: r["latency_ns"])
        return [tuple(r["arch"]) for r in ranked[: self.config.parents]]

    def fill(
        self,
        group: list[Arch],
        draw: Callable[[], list[Arch]],
        count: int,
        fallback: Callable[[], Arch] | None = None,
    ) -> list[Arch]:
        """Add drawn architectures until ``group`` holds ``count``.

        When draws keep repeating evaluated architectures, ``fallback`` draws (uniform by
        default) fill the rest.
        """
        for source in (draw, lambda: [(fallback or self._uniform)()]):
            tries = 0
            while len(group) < count and tries < _TRIES_PER_CHILD * count:
                for arch in source():
                    tries += 1
                    if len(group) < count and self.admissible(arch, group):
                        group.append(arch)
            if len(group) == count:
                return group
            logger.info("proposer found %d of %d new architectures", len(group), count)
        if not group:
            raise InputError("no architecture left to evaluate (all seen, or over --max-macs)")
        return group

    def _uniform(self) -> Arch:
        return sample_uniform(self.layers, self.choices, self.rng)

    def propose(self, generation: int) -> list[Arch]:
        size = self.config.group_size
        strategy = self.config.strategy
        if strategy == "fair":
            return self.fill([], lambda: sample_strict_fair(self.layers, self.choices,
                                                            self.rng), size)
        if strategy == "uniform" or generation == 0:
            return self.fill([], lambda: [self._uniform()], size)
        parents = self.parents()
        if strategy == "stagewise":
            return self._stagewise(parents, generation)
        return self._evolution(parents)

    def _stagewise(self, parents: list[Arch], generation: int) -> list[Arch]:
        # Generation 1 fixes the bottom half (compute-shared), generation 2 the top...
        half = generation - 1
        best = parents[0]
        fixed = set(fixed_half(self.layers, half))

        def children() -> list[Arch]:
            return stagewise_children(best, parents, 1, half, self.rng,
                                      num_choices=self.choices,
                                      mutation_prob=self.config.mutation_prob)

        def sharing_random() -> Arch:
            # When children keep repeating, random free layers still share the half.
            return tuple(best[i] if i in fixed else c for i, c in enumerate(self._uniform()))

        return self.fill([], children, self.config.group_size, sharing_random)

    def _mutate(self, parent: Arch) -> Arch:
        return tuple(
            self.rng.randrange(self.choices)
            if self.rng.random() < self.config.mutation_prob else gene
            for gene in parent
        )

    def _cross(self, first: Arch, second: Arch) -> Arch:
        return tuple(a if self.rng.random() < 0.5 else b
                     for a, b in zip(first, second, strict=True))

    def _evolution(self, parents: list[Arch]) -> list[Arch]:
        size = self.config.group_size
        group = self.fill([], lambda: [self._mutate(self.rng.choice(parents))], size // 2)

        def crossed() -> list[Arch]:
            first, second = self.rng.sample(parents, 2) if len(parents) > 1 else parents * 2
            return [self._cross(first, second)]

        return self.fill(group, crossed, size)

    def record(self, generation: int, records: list[dict[str, Any]]) -> None:
        for entry in records:
            arch = tuple(entry["arch"])
            self.seen.add(arch)
            self.history.append({"generation": generation, **entry,
                                 "macs": self.macs(arch)})
