"""Tests for what makes a full-depth supernet train on shapes10: adaptive gradient
clipping (no step moves a unit by more than a fixed fraction of itself, where plain SGD
moves the early layers of a 20-layer supernet by more than their own norm during the
warm-up) and the path warm-up (layers opened to sampling deepest first, each re-aligned
to its trained choice 0 when it opens)."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from enasa_compiler.errors import InputError
from enasa_compiler.models.checkpoint import SupernetConfig, build_supernet
from enasa_compiler.models.data import load_shapes10_dataset
from enasa_compiler.models.train import PathWarmup, adaptive_clip_, train_supernet


def _supernet(**changes):
    base = {"space": "spos", "width_mult": 0.25, "input_size": 32, "num_classes": 10,
            "stage_repeats": (1, 1, 2, 1), "small_input": True, "seed": 3}
    return build_supernet(SupernetConfig(**{**base, **changes}))


def test_adaptive_clip_caps_each_unit_and_leaves_small_gradients_alone():
    weight = nn.Parameter(torch.tensor([[3.0, 4.0], [1.0, 0.0]]))
    weight.grad = torch.tensor([[30.0, 40.0], [0.05, 0.0]])
    vector = nn.Parameter(torch.tensor([1.0, 1.0]))
    vector.grad = torch.tensor([1.0, 1.0])
    untouched = nn.Parameter(torch.ones(2))
    adaptive_clip_([weight, vector, untouched], 0.1)
    # Row 0: |g| = 50 > 0.1 * |w| = 0.5, scaled to 0.5; row 1 is under its limit.
    assert weight.grad[0].norm() == pytest.approx(0.5)
    assert torch.allclose(weight.grad[0], torch.tensor([0.3, 0.4]))
    assert torch.equal(weight.grad[1], torch.tensor([0.05, 0.0]))
    # A 1-d parameter is one unit.
    assert vector.grad.norm() == pytest.approx(0.1 * 2**0.5)
    assert untouched.grad is None
    with pytest.raises(ValueError, match="positive"):
        adaptive_clip_([weight], 0.0)


def test_adaptive_clip_bounds_the_relative_step_of_every_full_depth_unit():
    # Plain SGD's first steps move the first layers of the 20-layer supernet by more
    # than their own norm (the gradient there is ~40x the last layer's); clipped, no
    # output unit moves by more than lr * ratio of itself.
    supernet = _supernet(stage_repeats=None)
    data = load_shapes10_dataset(32, 16, seed=1)
    before = {name: p.detach().clone() for name, p in supernet.named_parameters()}
    lr, ratio = 0.5, 0.1
    train_supernet(supernet, data, epochs=1, batch_size=16, lr=lr, momentum=0.0,
                   weight_decay=0.0, adaptive_clip=ratio)
    moved = 0
    for name, param in supernet.named_parameters():
        old = before[name]
        units = old.shape[0] if old.ndim > 1 else 1
        step = (param.detach() - old).reshape(units, -1).norm(dim=1)
        limit = lr * ratio * old.reshape(units, -1).norm(dim=1).clamp_min(1e-3)
        assert bool((step <= limit * (1 + 1e-4) + 1e-7).all()), name
        moved += int(step.sum() > 0)
    assert moved > 10


def test_path_warmup_opens_the_deepest_layers_first_and_realigns_them():
    supernet = _supernet()  # 5 layers
    layers = supernet.num_layers
    warmup = PathWarmup(supernet, warmup_steps=10)
    with torch.no_grad():  # train choice 0 of the first layer "away" from its init
        for param in supernet.block(0, 0).parameters():
            param.add_(1.0)
    rng = random.Random(0)
    for done in range(14):
        open_layers = layers * done // 10 if done < 10 else layers
        arch = warmup(rng)
        assert all(c == 0 for c in arch[:layers - open_layers]), (done, arch)
    assert warmup.opened == layers
    # Layer 0 opened last: choices 1 and 2 (k=5, k=7) now embed choice 0's k=3 weights.
    k3 = list(supernet.block(0, 0).parameters())
    k5 = list(supernet.block(0, 1).parameters())
    for small, large in zip(k3, k5, strict=True):
        if small.ndim == 4 and small.shape[-1] == 3 and large.shape[-1] == 5:
            assert torch.equal(large[..., 1:4, 1:4], small)
            assert float(large.detach()[..., 0, :].abs().sum()) == 0.0
        else:
            assert torch.equal(large, small)
    # After the warm-up every layer is drawn.
    seen = {warmup(rng)[0] for _ in range(40)}
    assert seen == set(range(supernet.num_choices))


def test_path_warmup_trains_reproducibly_and_checks_its_arguments():
    data = load_shapes10_dataset(32, 32, seed=2)

    def run():
        supernet = _supernet()
        stats = train_supernet(supernet, data, epochs=2, batch_size=16, lr=0.05,
                               path_warmup_epochs=1.0, adaptive_clip=0.1)
        return supernet, stats

    first, stats = run()
    second, _ = run()
    assert stats.optimizer_steps == 4
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(),
                                                 second.state_dict().values(), strict=True))
    supernet = _supernet()
    with pytest.raises(InputError, match="path warm-up"):
        train_supernet(supernet, data, epochs=1, path_warmup_epochs=2.0)
    with pytest.raises(InputError, match="spos rule only"):
        train_supernet(supernet, data, rule="fair", epochs=1, path_warmup_epochs=0.5)
    with pytest.raises(InputError, match="clipping ratio"):
        train_supernet(supernet, data, epochs=1, adaptive_clip=-1.0)
