"""Sample architectures (one choice index per layer) and groups of them that share layers.

ENASA evaluates a *group* of subnets at once and gains when they share work: a common
prefix of choices is computed once for the group (compute-shared), and equal choices on
the top layers keep one copy of their weights in crossbars (weight-shared). The demo and
the tests need such groups without running the stage-wise evolution, so this module
draws them directly, reproducibly from a seed. It also holds the two samplers of the
search itself: FairNAS's strictly fair supernet-training steps and the children of one
generation of ENASA's stage-wise evolution.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from enasa_compiler._text import plural

logger = logging.getLogger(__name__)

__all__ = [
    "Arch",
    "RandomSource",
    "fixed_half",
    "sample_shared_group",
    "sample_distinct_uniform",
    "sample_strict_fair",
    "sample_uniform",
    "stagewise_children",
]

Arch = tuple[int, ...]
RandomSource = random.Random | np.random.Generator | int
"""A ``random.Random``, a NumPy ``Generator``, or an int seed for a fresh ``random.Random``."""

_ENUMERATE_LIMIT = (
    1 << 16
)  # below this many free choices, shuffle them all instead of retrying
_TRIES_PER_CHILD = 200  # repeats bred before the free layers are drawn uniformly instead


def _as_rng(rng: RandomSource) -> random.Random | np.random.Generator:
    if isinstance(rng, random.Random | np.random.Generator):
        return rng
    if isinstance(rng, int):
        return random.Random(rng)
    raise TypeError(f"rng must be random.Random, numpy Generator or int, got {type(rng)!r}")


def _randrange(rng: random.Random | np.random.Generator, n: int) -> int:
    if isinstance(rng, random.Random):
        return rng.randrange(n)
    return int(rng.integers(n))


def _random(rng: random.Random | np.random.Generator) -> float:
    return float(rng.random())


def _permutation(rng: random.Random | np.random.Generator, n: int) -> list[int]:
    # Fisher-Yates on _randrange, so both kinds of source give reproducible orders.
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        j = _randrange(rng, i + 1)
        order[i], order[j] = order[j], order[i]
    return order


def _check_counts(num_layers: int, num_choices: int) -> None:
    if num_layers < 0:
        raise ValueError(f"num_layers must be >= 0, got {num_layers}")
    if num_choices < 1:
        raise ValueError(f"num_choices must be >= 1, got {num_choices}")


def _draw(rng: random.Random | np.random.Generator, num_layers: int, num_choices: int) -> Arch:
    return tuple(_randrange(rng, num_choices) for _ in range(num_layers))


def sample_uniform(num_layers: int, num_choices: int, rng: RandomSource) -> Arch:
    """Draw one architecture, each layer's choice uniform and independent (SPOS sampling).

    Args:
        num_layers: Choice layers in the supernet.
        num_choices: Candidate blocks per layer.
        rng: Source of randomness; the same seed gives the same architecture.

    """
    _check_counts(num_layers, num_choices)
    return _draw(_as_rng(rng), num_layers, num_choices)


def sample_distinct_uniform(
    num_layers: int,
    num_choices: int,
    count: int,
    rng: RandomSource,
    exclude: Iterable[Sequence[int]] = (),
) -> list[Arch]:
    """Draw ``count`` different uniform architectures, none of them in ``exclude``.

    Each draw is :func:`sample_uniform`'s; a repeat is drawn again, so until the first
    repeat the result equals ``count`` calls of :func:`sample_uniform` on the same
    source.

    Raises:
        ValueError: Bad counts, or fewer than ``count`` architectures left outside
            ``exclude``.

    """
    _check_counts(num_layers, num_choices)
    taken = {tuple(int(c) for c in arch) for arch in exclude}
    if count < 0 or count > num_choices**num_layers - len(taken):
        raise ValueError(f"cannot draw {count} new architectures from a space of "
                         f"{num_choices**num_layers} with {len(taken)} excluded")
    source = _as_rng(rng)
    archs: list[Arch] = []
    while len(archs) < count:
        arch = _draw(source, num_layers, num_choices)
        if arch not in taken:
            taken.add(arch)
            archs.append(arch)
    return archs


def _decode(index: int, num_layers: int, num_choices: int) -> Arch:
    digits = []
    for _ in range(num_layers):
        index, digit = divmod(index, num_choices)
        digits.append(digit)
    return tuple(reversed(digits))


def _distinct_parts(
    rng: random.Random | np.random.Generator, num_layers: int, num_choices: int, count: int
) -> list[Arch]:
    """Draw ``count`` choice tuples, all distinct while the space allows, then cycling."""
    space = num_choices**num_layers
    if space <= _ENUMERATE_LIMIT:
        # Partial Fisher-Yates: exact sampling without replacement and no retry loop,
        # which would crawl when count is close to a small space.
        order = list(range(space))
        distinct = min(count, space)
        for i in range(distinct):
            j = i + _randrange(rng, space - i)
            order[i], order[j] = order[j], order[i]
        parts = [_decode(i, num_layers, num_choices) for i in order[:distinct]]
    else:
        seen: set[Arch] = set()
        parts = []
        while len(parts) < count:
            part = _draw(rng, num_layers, num_choices)
            if part not in seen:
                seen.add(part)
                parts.append(part)
    if count > len(parts):
        logger.info("the space holds only %s; repeating them to fill %d",
                    plural(space, "distinct architecture"), count)
        parts += [parts[i % len(parts)] for i in range(len(parts), count)]
    return parts


def sample_shared_group(
    num_layers: int,
    num_choices: int,
    group_size: int,
    rng: RandomSource,
    shared_prefix_layers: int | None = None,
    shared_suffix_layers: int | None = None,
) -> list[Arch]:
    """Draw a group of architectures that share their first and/or last layers.

    All members take the same (randomly drawn) choices on the first
    ``shared_prefix_layers`` layers, so that prefix is compute-shared, and on the last
    ``shared_suffix_layers`` layers, which are then weight-shared. The layers in between
    are drawn so that members differ whenever enough combinations exist; otherwise
    members repeat.

    With both options ``None`` the group shares the bottom half (``num_layers // 2``
    layers), like a bottom-fixed generation of ENASA's stage-wise search. When only one
    is given, the other defaults to 0.

    Args:
        num_layers: Choice layers in the supernet.
        num_choices: Candidate blocks per layer.
        group_size: Architectures to return.
        rng: Source of randomness; the same seed gives the same group.
        shared_prefix_layers: Leading layers with the same choices in every member.
        shared_suffix_layers: Trailing layers with the same choices in every member.

    Raises:
        ValueError: Negative counts, or shared layers that overlap or exceed num_layers.

    """
    _check_counts(num_layers, num_choices)
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if shared_prefix_layers is None and shared_suffix_layers is None:
        shared_prefix_layers = num_layers // 2
    prefix = shared_prefix_layers or 0
    suffix = shared_suffix_layers or 0
    if prefix < 0 or suffix < 0 or prefix + suffix > num_layers:
        raise ValueError(
            f"need 0 <= prefix + suffix <= {num_layers}, got prefix={prefix} suffix={suffix}"
        )
    source = _as_rng(rng)
    head = _draw(source, prefix, num_choices)
    tail = _draw(source, suffix, num_choices)
    middles = _distinct_parts(source, num_layers - prefix - suffix, num_choices, group_size)
    return [head + middle + tail for middle in middles]


def sample_strict_fair(num_layers: int, num_choices: int, rng: RandomSource) -> list[Arch]:
    """Draw the ``num_choices`` subnets of one FairNAS strict-fairness training step.

    Every layer gets an independent random permutation of its choices and subnet ``i``
    takes the ``i``-th entry of each, so within one step each choice of each layer is
    used by exactly one subnet (FairNAS trains them all, accumulates the gradients and
    updates once).

    Args:
        num_layers: Choice layers in the supernet.
        num_choices: Candidate blocks per layer; also the number of subnets returned.
        rng: Source of randomness; the same seed gives the same step.

    """
    _check_counts(num_layers, num_choices)
    source = _as_rng(rng)
    permutations = [_permutation(source, num_choices) for _ in range(num_layers)]
    return [tuple(perm[i] for perm in permutations) for i in range(num_choices)]


def fixed_half(num_layers: int, generation: int) -> range:
    """Layers that stage-wise evolution copies from the best subnet in ``generation``.

    Even generations fix the bottom (input side), ``range(0, ceil(L / 2))``; odd ones
    fix the top (output side), ``range(floor(L / 2), L)``. With an odd number of layers
    both halves take the middle layer, so either shares at least half the network.

    Raises:
        ValueError: ``num_layers`` or ``generation`` is negative.

    """
    if num_layers < 0:
        raise ValueError(f"num_layers must be >= 0, got {num_layers}")
    if generation < 0:
        raise ValueError(f"generation must be >= 0, got {generation}")
    if generation % 2 == 0:
        return range(0, (num_layers + 1) // 2)
    return range(num_layers // 2, num_layers)


def _check_arch(arch: Sequence[int], num_layers: int, num_choices: int, what: str) -> Arch:
    arch = tuple(int(c) for c in arch)
    if len(arch) != num_layers:
        raise ValueError(f"{what} has {plural(len(arch), 'layer')}, expected {num_layers}")
    if any(not 0 <= c < num_choices for c in arch):
        raise ValueError(f"{what} has choices outside [0, {num_choices}): {list(arch)}")
    return arch


def _crossover_and_mutate(
    rng: random.Random | np.random.Generator,
    first: Arch,
    second: Arch,
    num_choices: int,
    mutation_prob: float,
) -> list[int]:
    genes = []
    for a, b in zip(first, second, strict=True):
        gene = a if _random(rng) < 0.5 else b
        if _random(rng) < mutation_prob:
            # SPOS's convention: the new choice is uniform and may equal the old one.
            gene = _randrange(rng, num_choices)
        genes.append(gene)
    return genes


def stagewise_children(
    best: Sequence[int],
    parents: Sequence[Sequence[int]],
    num_children: int,
    generation: int,
    rng: RandomSource,
    *,
    num_choices: int,
    mutation_prob: float = 0.1,
    distinct: bool = True,
    exclude: Iterable[Sequence[int]] = (),
) -> list[Arch]:
    """Make one generation of ENASA's stage-wise evolution (``docs/domain.md`` section 4).

    Each child takes two different parents at random (the same one only when there is
    a single parent), mixes them uniformly gene by gene, then replaces each gene with
    probability ``mutation_prob`` by a uniform choice. Finally the layers
    :func:`fixed_half` names for ``generation`` are overwritten with ``best``'s: even
    generations share the bottom half (a common prefix, computed once for the group),
    odd ones the top half (the same weights, kept once in crossbars).

    With ``distinct`` (the default) the children are all different and none is in
    ``exclude``: a repeat is redrawn, and when the parents keep breeding repeats (a
    converged buffer, no mutation) the free layers are drawn uniformly instead, still
    with ``best`` on the fixed half. Only when fewer new architectures exist with that
    half fixed than are asked for do children repeat (logged). Until the first repeat
    the draws are those of ``distinct=False``, so the same seed gives the same children.

    Args:
        best: The best architecture found so far.
        parents: The parent buffer (at least one architecture).
        num_children: Children to return.
        generation: Generation number, >= 0; its parity picks the fixed half.
        rng: Source of randomness; the same seed and inputs give the same children.
        num_choices: Candidate blocks per layer.
        mutation_prob: Per-gene mutation probability, in [0, 1].
        distinct: Redraw children that repeat one another or ``exclude``.
        exclude: Architectures that must not be drawn (those already evaluated).

    Raises:
        ValueError: Empty parent buffer, architectures of different lengths or with
            choices out of range, or a count or probability out of range.

    """
    num_layers = len(best)
    _check_counts(num_layers, num_choices)
    if num_children < 0:
        raise ValueError(f"num_children must be >= 0, got {num_children}")
    if not 0.0 <= mutation_prob <= 1.0:
        raise ValueError(f"mutation_prob must be in [0, 1], got {mutation_prob}")
    if not parents:
        raise ValueError("parents must hold at least one architecture")
    best_arch = _check_arch(best, num_layers, num_choices, "best")
    pool = [
        _check_arch(arch, num_layers, num_choices, f"parent {i}")
        for i, arch in enumerate(parents)
    ]
    fixed = fixed_half(num_layers, generation)
    source = _as_rng(rng)

    def child() -> Arch:
        first = _randrange(source, len(pool))
        second = first
        if len(pool) > 1:
            second = (first + 1 + _randrange(source, len(pool) - 1)) % len(pool)
        genes = _crossover_and_mutate(
            source, pool[first], pool[second], num_choices, mutation_prob
        )
        for layer in fixed:
            genes[layer] = best_arch[layer]
        return tuple(genes)

    if distinct:
        taken = {tuple(int(c) for c in arch) for arch in exclude}
        children = _distinct_children(child, num_children, taken, source, best_arch,
                                      fixed, num_choices)
    else:
        children = [child() for _ in range(num_children)]
    logger.debug(
        "generation %d: %d children, layers %d-%d fixed to the best",
        generation,
        num_children,
        fixed.start,
        fixed.stop - 1,
    )
    return children


def _distinct_children(
    child: Callable[[], Arch],
    count: int,
    taken: set[Arch],
    rng: random.Random | np.random.Generator,
    best: Arch,
    fixed: range,
    num_choices: int,
) -> list[Arch]:
    """Draw ``count`` children from ``child`` that are new to ``taken`` and each other.

    After ``_TRIES_PER_CHILD * count`` repeats, the rest come from uniform draws of the
    free layers (``best`` on ``fixed``), without replacement; if even those run out,
    the new ones found are cycled.
    """
    children: list[Arch] = []
    repeats = 0
    while len(children) < count and repeats < _TRIES_PER_CHILD * max(1, count):
        arch = child()
        if arch in taken:
            repeats += 1
            continue
        taken.add(arch)
        children.append(arch)
    if len(children) == count:
        return children
    free = [layer for layer in range(len(best)) if layer not in fixed]
    space = num_choices ** len(free)
    parts: Iterable[Arch]
    if space <= _ENUMERATE_LIMIT:
        parts = _distinct_parts(rng, len(free), num_choices, space)  # all, shuffled
    else:  # too many to list; the excluded ones are a vanishing share of them
        parts = iter(lambda: _draw(rng, len(free), num_choices), None)
    for part in parts:
        if len(children) == count:
            break
        genes = list(best)
        for layer, choice in zip(free, part, strict=True):
            genes[layer] = choice
        arch = tuple(genes)
        if arch not in taken:
            taken.add(arch)
            children.append(arch)
    if len(children) < count:
        logger.info("only %s with this half fixed; repeating them to fill %d",
                    plural(len(children), "new architecture"), count)
        if not children:
            raise ValueError("no architecture left to draw: every one with the best's "
                             "fixed half is excluded")
        children += [children[i % len(children)] for i in range(len(children), count)]
    return children
