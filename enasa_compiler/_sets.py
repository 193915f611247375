"""Disjoint sets (union-find): grouping things that share something, transitively.

Operators that share a weight matrix, or a crossbar, form groups through chains of
sharing (a shares with b, b with c); the pipeline scheduler, its duplication and the
report's pipeline chart each need those groups.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["DisjointSets"]

K = TypeVar("K", bound=Hashable)


class DisjointSets(Generic[K]):
    """Union-find with path halving; every key is its own set until joined."""

    def __init__(self) -> None:
        self._parent: dict[K, K] = {}

    def find(self, key: K) -> K:
        """Return the representative of ``key``'s set (adding ``key`` if new)."""
        parent = self._parent
        while parent.setdefault(key, key) != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    def join(self, a: K, b: K) -> None:
        """Put ``a`` and ``b`` in one set."""
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self._parent[root_a] = root_b
