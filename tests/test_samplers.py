"""Tests for FairNAS strict-fair sampling and ENASA's stage-wise generation of children."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import enasa_compiler
from enasa_compiler.models import (
    fixed_half,
    sample_distinct_uniform,
    sample_strict_fair,
    sample_uniform,
    stagewise_children,
)
from enasa_compiler.models.export import export_group

SPOS_LAYERS, SPOS_CHOICES = 20, 4
FAIRNAS_LAYERS, FAIRNAS_CHOICES = 19, 6


def _search_state(num_layers: int, num_choices: int, seed: int, parents: int = 10):
    rng = random.Random(seed)
    best = sample_uniform(num_layers, num_choices, rng)
    pool = [sample_uniform(num_layers, num_choices, rng) for _ in range(parents)]
    return best, pool


# --- strict fairness --------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    num_layers=st.integers(0, 25),
    num_choices=st.integers(1, 8),
    seed=st.integers(0, 2**32 - 1),
)
def test_strict_fair_step_uses_each_choice_once_per_layer(num_layers, num_choices, seed):
    step = sample_strict_fair(num_layers, num_choices, random.Random(seed))
    assert len(step) == num_choices
    assert all(len(arch) == num_layers for arch in step)
    for layer in range(num_layers):
        assert sorted(arch[layer] for arch in step) == list(range(num_choices))


def test_strict_fair_counts_are_equal_over_many_steps():
    rng = np.random.default_rng(0)
    steps = 200
    counts = [Counter() for _ in range(FAIRNAS_LAYERS)]
    first_subnet_choices = set()
    for _ in range(steps):
        step = sample_strict_fair(FAIRNAS_LAYERS, FAIRNAS_CHOICES, rng)
        first_subnet_choices.add(step[0][0])
        for arch in step:
            for layer, choice in enumerate(arch):
                counts[layer][choice] += 1
    assert all(c == Counter(dict.fromkeys(range(FAIRNAS_CHOICES), steps)) for c in counts)
    assert first_subnet_choices == set(range(FAIRNAS_CHOICES))  # the order is random


def test_strict_fair_is_deterministic_for_every_source():
    a = sample_strict_fair(FAIRNAS_LAYERS, FAIRNAS_CHOICES, 5)
    assert a == sample_strict_fair(FAIRNAS_LAYERS, FAIRNAS_CHOICES, random.Random(5))
    gen = sample_strict_fair(FAIRNAS_LAYERS, FAIRNAS_CHOICES, np.random.default_rng(5))
    assert gen == sample_strict_fair(FAIRNAS_LAYERS, FAIRNAS_CHOICES, np.random.default_rng(5))
    assert a != sample_strict_fair(FAIRNAS_LAYERS, FAIRNAS_CHOICES, 6)


# --- stage-wise evolution ---------------------------------------------------------------


@pytest.mark.parametrize(
    "num_layers, bottom, top",
    [(20, range(0, 10), range(10, 20)), (19, range(0, 10), range(9, 19))],
)
def test_fixed_half_alternates_bottom_then_top(num_layers, bottom, top):
    assert [fixed_half(num_layers, g) for g in range(4)] == [bottom, top, bottom, top]
    assert len(bottom) >= num_layers / 2 and len(top) >= num_layers / 2


def test_fixed_half_rejects_negative_counts():
    with pytest.raises(ValueError):
        fixed_half(-1, 0)
    with pytest.raises(ValueError):
        fixed_half(20, -1)


@settings(max_examples=60, deadline=None)
@given(
    num_layers=st.integers(1, 24),
    num_choices=st.integers(2, 6),
    generation=st.integers(0, 50),
    mutation_prob=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_children_equal_the_best_on_the_fixed_half(
    num_layers, num_choices, generation, mutation_prob, seed
):
    best, pool = _search_state(num_layers, num_choices, seed, parents=4)
    children = stagewise_children(
        best, pool, 8, generation, seed, num_choices=num_choices, mutation_prob=mutation_prob
    )
    fixed = fixed_half(num_layers, generation)
    assert len(children) == 8
    for child in children:
        assert len(child) == num_layers and all(0 <= c < num_choices for c in child)
        assert [child[i] for i in fixed] == [best[i] for i in fixed]


@pytest.mark.parametrize("num_layers", [SPOS_LAYERS, FAIRNAS_LAYERS])
def test_fixed_half_alternates_between_generations(num_layers):
    best = (0,) * num_layers
    pool = [(1,) * num_layers, (2,) * num_layers]  # differ from the best everywhere
    half = (num_layers + 1) // 2
    for generation in range(4):
        children = stagewise_children(
            best, pool, 6, generation, generation, num_choices=4, mutation_prob=0.0
        )
        prefixes = {child[:half] for child in children}
        suffixes = {child[-half:] for child in children}
        if generation % 2 == 0:  # bottom-fixed: one common prefix, computed once
            assert prefixes == {best[:half]}
            assert all(0 not in child[half:] for child in children)
        else:  # top-fixed: one common suffix, weights kept once
            assert suffixes == {best[-half:]}
            assert all(0 not in child[: num_layers - half] for child in children)


def test_crossover_mixes_two_parents_gene_by_gene():
    best, pool = (3,) * 20, [(0,) * 20, (1,) * 20]
    children = stagewise_children(best, pool, 20, 0, 1, num_choices=4, mutation_prob=0.0)
    free_genes = [gene for child in children for gene in child[10:]]
    assert set(free_genes) == {0, 1}
    assert any(len(set(child[10:])) == 2 for child in children)  # uniform, not one-point


def test_mutation_draws_new_choices():
    best, pool = (0,) * 20, [(0,) * 20]
    children = stagewise_children(best, pool, 10, 1, 2, num_choices=4, mutation_prob=1.0)
    assert {gene for child in children for gene in child[:10]} == {0, 1, 2, 3}
    unmutated = stagewise_children(best, pool, 10, 1, 2, num_choices=4, mutation_prob=0.0,
                                   distinct=False)
    assert unmutated == [best] * 10


# --- distinct children ------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    num_layers=st.integers(2, 20),
    num_choices=st.integers(2, 6),
    generation=st.integers(0, 9),
    mutation_prob=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_children_are_distinct_and_keep_the_fixed_half(
    num_layers, num_choices, generation, mutation_prob, seed
):
    best, pool = _search_state(num_layers, num_choices, seed, parents=3)
    free_space = num_choices ** (num_layers - len(fixed_half(num_layers, generation)))
    count = min(12, free_space)
    children = stagewise_children(best, pool, count, generation, seed,
                                  num_choices=num_choices, mutation_prob=mutation_prob)
    assert len(set(children)) == count
    fixed = fixed_half(num_layers, generation)
    assert all([c[i] for i in fixed] == [best[i] for i in fixed] for c in children)


def test_a_converged_parent_buffer_still_gives_distinct_children():
    # Every parent is the best and nothing mutates: each bred child is the best itself,
    # the repeat the old sampler returned 10 times. The free half is drawn instead.
    best = (0,) * 20
    children = stagewise_children(best, [best, best], 10, 1, 2, num_choices=4,
                                  mutation_prob=0.0)
    assert len(set(children)) == 10
    assert all(child[10:] == best[10:] for child in children)


def test_children_avoid_excluded_architectures():
    best, pool = _search_state(8, 2, 5, parents=4)
    first = stagewise_children(best, pool, 8, 0, 1, num_choices=2)
    second = stagewise_children(best, pool, 8, 0, 1, num_choices=2, exclude=first)
    # Four free layers of two choices: 16 children in all, 8 already taken.
    assert not set(first) & set(second)
    assert len(set(first) | set(second)) == 16


def test_distinct_children_equal_the_plain_draws_until_a_repeat():
    best, pool = _search_state(10, 2, 0, parents=2)
    plain = stagewise_children(best, pool, 12, 2, 7, num_choices=2, distinct=False)
    distinct = stagewise_children(best, pool, 12, 2, 7, num_choices=2)
    first_repeat = next(i for i, arch in enumerate(plain) if arch in plain[:i])
    assert distinct[:first_repeat] == plain[:first_repeat]
    assert len(set(distinct)) == 12
    assert distinct == stagewise_children(best, pool, 12, 2, random.Random(7), num_choices=2)


def test_children_repeat_only_when_the_free_half_is_exhausted():
    best = (1, 1, 0, 0)  # two free layers of two choices: four children at most
    children = stagewise_children(best, [best], 6, 0, 3, num_choices=2)
    assert len(set(children)) == 4 and len(children) == 6
    with pytest.raises(ValueError, match="no architecture left"):
        stagewise_children(best, [best], 2, 0, 3, num_choices=2, exclude=set(children))


def test_distinct_uniform_draws_skip_repeats_and_exclusions():
    archs = sample_distinct_uniform(3, 2, 8, 4)
    assert sorted(archs) == sorted({(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)})
    assert sample_distinct_uniform(3, 2, 8, 4) == archs
    rest = sample_distinct_uniform(3, 2, 3, 1, exclude=archs[:5])
    assert set(rest) == set(archs[5:])
    with pytest.raises(ValueError):
        sample_distinct_uniform(3, 2, 4, 1, exclude=archs[:5])


def test_stagewise_children_are_deterministic_for_every_source():
    best, pool = _search_state(SPOS_LAYERS, SPOS_CHOICES, 0)
    kw = {"num_choices": SPOS_CHOICES}
    a = stagewise_children(best, pool, 5, 3, 9, **kw)
    assert a == stagewise_children(best, pool, 5, 3, random.Random(9), **kw)
    gen = stagewise_children(best, pool, 5, 3, np.random.default_rng(9), **kw)
    assert gen == stagewise_children(best, pool, 5, 3, np.random.default_rng(9), **kw)
    assert stagewise_children(best, pool, 0, 3, 9, **kw) == []


@pytest.mark.parametrize(
    "best, parents, kw",
    [
        ((0,) * 20, [], {}),
        ((0,) * 20, [(0,) * 19], {}),
        ((0,) * 20, [(4,) * 20], {}),
        ((0,) * 20, [(0,) * 20], {"mutation_prob": 1.5}),
        ((0,) * 20, [(0,) * 20], {"num_children": -1}),
    ],
)
def test_stagewise_children_reject_bad_input(best, parents, kw):
    args = {"num_children": 3, "generation": 0, "rng": 0, "num_choices": 4, **kw}
    with pytest.raises(ValueError):
        stagewise_children(best, parents, **args)


# --- what the compiler makes of stage-wise groups -----------------------------------------


def _compile_generation(supernet, generation, tmp_path):
    best, pool = _search_state(supernet.num_layers, supernet.num_choices, 3)
    children = stagewise_children(
        best, pool, 3, generation, 11, num_choices=supernet.num_choices
    )
    assert len(set(children)) == 3
    paths = export_group(supernet, children, tmp_path / f"gen{generation}")
    plan = enasa_compiler.compile(paths, "neurosim-22nm")
    assert enasa_compiler.validate(plan) == []
    fixed_layers = {f"layer{i}" for i in fixed_half(supernet.num_layers, generation)}
    return plan, [op for op in plan.operators if op.layer in fixed_layers]


def test_bottom_fixed_group_computes_the_shared_prefix_once(demo_supernet, tmp_path):
    _, bottom_ops = _compile_generation(demo_supernet, 0, tmp_path)
    assert bottom_ops
    assert all(op.subnets == (0, 1, 2) for op in bottom_ops)


def test_top_fixed_group_shares_the_top_weights(demo_supernet, tmp_path):
    plan, top_ops = _compile_generation(demo_supernet, 1, tmp_path)
    users = Counter(w for op in top_ops for w in op.weights)
    shared = {w for w, n in users.items() if n > 1}
    assert shared
    assert shared <= {w.id for w in plan.weights}
    # Each top-layer MVM operator of one subnet has twins in the others: same weights.
    sharing_ops = [op for op in top_ops if set(op.weights) & shared]
    assert all(len(op.subnets) == 1 for op in sharing_ops)
