"""Sample architectures (one choice index per layer) and groups of them that share layers.

ENASA evaluates a *group* of subnets at once and gains when they share work: a common
prefix of choices is computed once for the group (compute-shared), and equal choices on
the top layers keep one copy of their weights in crossbars (weight-shared). The demo and
the tests need such groups without running the stage-wise evolution, so this module
draws them directly, reproducibly from a seed.
"""

from __future__ import annotations

import logging
import random

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["Arch", "RandomSource", "sample_shared_group", "sample_uniform"]

Arch = tuple[int, ...]
RandomSource = random.Random | np.random.Generator | int
"""A ``random.Random``, a NumPy ``Generator``, or an int seed for a fresh ``random.Random``."""

_ENUMERATE_LIMIT = (
    1 << 16
)  # below this many free choices, shuffle them all instead of retrying


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
        logger.info("only %d distinct architectures exist; repeating to fill %d", space, count)
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
