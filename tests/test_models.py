"""Tests for the SPOS supernet, the MAC counter, architecture sampling and ONNX export."""

from __future__ import annotations

import random

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from enasa_compiler.models import (
    ARCH_METADATA_KEY,
    SPOS_CHOICES,
    SUPERNET_METADATA_KEY,
    SposSupernet,
    build_demo_supernet,
    count_cost,
    export_group,
    export_subnet,
    read_arch,
    sample_shared_group,
    sample_uniform,
)
from enasa_compiler.models.flops import conv2d_macs
from enasa_compiler.models.spos import ShuffleBlock, ShuffleXceptionBlock

SPOS_SEARCHED_ARCH = (2, 1, 0, 1, 2, 0, 2, 0, 2, 0, 2, 3, 0, 0, 0, 0, 3, 2, 3, 3)
TINY_REPEATS = (1, 1, 2, 1)
TINY_ARCH = (3, 0, 1, 2, 3)  # every choice, a stride-2 Xception and a stride-1 one


def _randomise_batchnorm(module: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_mean.copy_(0.1 * torch.randn(bn.num_features, generator=gen))
            bn.running_var.copy_(0.5 + torch.rand(bn.num_features, generator=gen))


def _tiny_supernet(seed: int = 0) -> SposSupernet:
    torch.manual_seed(seed)
    net = SposSupernet(
        width_mult=0.25, num_classes=10, input_size=32, stage_repeats=TINY_REPEATS
    )
    _randomise_batchnorm(net, seed)
    return net.eval()


@pytest.fixture(scope="module")
def tiny() -> SposSupernet:
    return _tiny_supernet()


@pytest.fixture(scope="module")
def full_size() -> SposSupernet:
    return SposSupernet()


# The dynamo export takes seconds: that half runs with the slow tests.
@pytest.fixture(scope="module", params=[
    pytest.param(False, id="legacy"),
    pytest.param(True, id="dynamo", marks=pytest.mark.slow)])
def exported(request, tiny, tmp_path_factory) -> tuple[bool, onnx.ModelProto, str]:
    path = tmp_path_factory.mktemp("export") / "tiny.onnx"
    export_subnet(tiny, TINY_ARCH, path, batch_size=2, dynamo=request.param)
    return request.param, onnx.load(path), str(path)


# --- supernet structure ---------------------------------------------------------------


def test_full_size_has_twenty_layers_of_four_choices(full_size):
    assert full_size.num_layers == 20
    assert all(len(layer) == SPOS_CHOICES for layer in full_size.features)
    strides = [spec.stride for spec in full_size.layer_specs]
    assert [i for i, s in enumerate(strides) if s == 2] == [0, 4, 8, 16]
    assert [spec.in_channels for spec in full_size.layer_specs[:5]] == [16, 32, 32, 32, 64]


def test_supernet_batchnorm_has_no_affine_parameters(tiny):
    assert all(not bn.affine for bn in tiny.modules() if isinstance(bn, nn.BatchNorm2d))


def test_state_dict_names_follow_the_original(full_size):
    names = set(full_size.state_dict())
    assert "features.0.0.branch_main.0.weight" in names
    assert "features.0.0.branch_proj.0.weight" in names
    assert "features.1.0.branch_proj.0.weight" not in names  # stride 1 has no projection
    assert "features.19.3.branch_main.12.weight" in names  # Xception's last pw
    assert {"first_conv.0.weight", "conv_last.0.weight", "classifier.0.weight"} <= names


def test_subnet_shares_weights_and_names_with_supernet(tiny):
    subnet = tiny.subnet(TINY_ARCH)
    super_state = tiny.state_dict()
    for name, tensor in subnet.state_dict().items():
        assert super_state[name].data_ptr() == tensor.data_ptr(), name
    assert "features.0.3.branch_main.0.weight" in subnet.state_dict()


def test_subnet_equals_supernet_path(tiny):
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(tiny.subnet(TINY_ARCH)(x), tiny(x, TINY_ARCH))


@pytest.mark.parametrize("input_size", [0, -32, 100, 225])
def test_bad_input_size_raises(input_size):
    with pytest.raises(ValueError, match="multiple of 32"):
        SposSupernet(input_size=input_size)


@pytest.mark.parametrize("arch", [(0,) * 4, (0,) * 6, (0, 0, 4, 0, 0), (0, -1, 0, 0, 0)])
def test_bad_arch_raises(tiny, arch):
    with pytest.raises(ValueError):
        tiny(torch.zeros(1, 3, 32, 32), arch)


@pytest.mark.parametrize("width_mult", [0.1, 0.25, 0.5, 0.75, 1.3, 2.0])
def test_width_mult_keeps_channels_divisible_by_four(width_mult):
    net = SposSupernet(width_mult=width_mult, input_size=32, stage_repeats=TINY_REPEATS)
    counts = [net.stem_channels, net.head_channels, *net.stage_out_channels]
    assert all(c % 4 == 0 and c >= 4 for c in counts), counts


# --- block semantics --------------------------------------------------------------------


@pytest.mark.parametrize(
    "block",
    [ShuffleBlock(8, 16, 8, ksize=5, stride=1), ShuffleXceptionBlock(8, 16, 8, stride=1)],
    ids=["shuffle_k5", "xception"],
)
def test_stride1_block_passes_even_channels_through(block):
    block.eval()
    _randomise_batchnorm(block, 1)
    x = torch.randn(2, 16, 6, 6)
    with torch.no_grad():
        y = block(x)
        assert y.shape == x.shape
        assert torch.equal(y[:, :8], x[:, 0::2])
        torch.testing.assert_close(y[:, 8:], block.branch_main(x[:, 1::2]))
        x_even_changed = x.clone()
        x_even_changed[:, 0::2] += 1.0
        assert torch.equal(block(x_even_changed)[:, 8:], y[:, 8:])


def test_stride2_block_concatenates_projection_and_main():
    block = ShuffleBlock(16, 64, 32, ksize=7, stride=2).eval()
    x = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        y = block(x)
        assert y.shape == (1, 64, 4, 4)
        assert torch.equal(y[:, :16], block.branch_proj(x))
        assert torch.equal(y[:, 16:], block.branch_main(x))


# --- MAC / parameter counter -------------------------------------------------------------


def test_counter_on_hand_computable_model():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),  # 8x8 -> 4x4, with bias
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),  # depthwise
        nn.BatchNorm2d(8),  # affine: 16 params, no MACs
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 5),
    )
    cost = count_cost(model, torch.zeros(3, 3, 8, 8))  # per image, whatever the batch
    assert cost.macs == 8 * 3 * 9 * 16 + 8 * 1 * 9 * 16 + 128 * 5
    assert cost.params == (8 * 3 * 9 + 8) + 8 * 9 + 16 + (128 * 5 + 5)
    assert conv2d_macs(model[0], (4, 4)) == 3456


def test_counter_exact_on_tiny_stem_and_first_layer(tiny):
    # Width 0.25: stem 3->4, layer 0 is 4->16 stride 2 with mid 8; 32x32 -> 16x16 -> 8x8.
    stem = 4 * 3 * 9 * 16 * 16
    proj = 4 * 1 * 9 * 8 * 8 + 4 * 4 * 8 * 8  # dw3x3 s2, pw 4->4
    main = 8 * 4 * 16 * 16 + 8 * 1 * 9 * 8 * 8 + 12 * 8 * 8 * 8  # pw 4->8, dw3x3 s2, pw 8->12
    cost = count_cost(
        nn.Sequential(tiny.first_conv, tiny.features[0][0]), torch.zeros(1, 3, 32, 32)
    )
    assert cost.macs == stem + proj + main == 49920
    assert cost.params == 4 * 27 + (4 * 9 + 4 * 4) + (8 * 4 + 8 * 9 + 12 * 8)  # BN: none


def test_counter_leaves_mode_and_statistics_alone(tiny):
    tiny.train()
    before = tiny.first_conv[1].running_mean.clone()
    count_cost(tiny, torch.randn(2, 3, 32, 32), TINY_ARCH)
    assert tiny.training
    assert torch.equal(tiny.first_conv[1].running_mean, before)
    tiny.eval()


def test_full_size_macs_match_published_spos_numbers(full_size):
    image = torch.zeros(1, 3, 224, 224)
    searched = count_cost(full_size, image, SPOS_SEARCHED_ARCH)
    # SPOS README: 323M FLOPs (multiply-adds), 3.5M params for this architecture.
    assert 315e6 <= searched.macs <= 330e6
    assert 3.4e6 <= searched.params <= 3.6e6
    all_k3 = count_cost(full_size, image, (0,) * 20).macs
    all_k7 = count_cost(full_size, image, (2,) * 20).macs
    all_xception = count_cost(full_size, image, (3,) * 20).macs
    assert 280e6 <= all_k3 < searched.macs < all_k7 < all_xception <= 370e6


# --- sampling ---------------------------------------------------------------------------


def test_sample_uniform_is_deterministic_and_in_range():
    first = sample_uniform(20, 4, random.Random(7))
    assert first == sample_uniform(20, 4, random.Random(7)) == sample_uniform(20, 4, 7)
    assert len(first) == 20 and all(0 <= c < 4 for c in first)
    gen_a = sample_uniform(20, 4, np.random.default_rng(3))
    assert gen_a == sample_uniform(20, 4, np.random.default_rng(3))


def test_shared_group_is_deterministic():
    a = sample_shared_group(20, 4, 8, random.Random(1), shared_prefix_layers=10)
    b = sample_shared_group(20, 4, 8, random.Random(1), shared_prefix_layers=10)
    assert a == b
    assert sample_shared_group(20, 4, 8, np.random.default_rng(1)) == sample_shared_group(
        20, 4, 8, np.random.default_rng(1)
    )


@pytest.mark.parametrize("prefix", [0, 5, 10, 18])
def test_shared_prefix_is_equal_and_members_distinct(prefix):
    group = sample_shared_group(20, 4, 8, random.Random(prefix), shared_prefix_layers=prefix)
    assert len(group) == 8
    assert len({arch[:prefix] for arch in group}) == 1
    assert len(set(group)) == 8  # 4 ** (20 - prefix) >= 16 combinations remain


def test_shared_suffix_is_equal():
    group = sample_shared_group(20, 4, 6, 0, shared_prefix_layers=3, shared_suffix_layers=7)
    assert len({arch[:3] for arch in group}) == 1
    assert len({arch[-7:] for arch in group}) == 1
    assert len(set(group)) == 6


def test_shared_group_defaults_to_bottom_half():
    group = sample_shared_group(20, 4, 8, 0)
    assert len({arch[:10] for arch in group}) == 1
    assert len(set(group)) == 8


def test_group_larger_than_space_repeats_after_all_distinct():
    group = sample_shared_group(3, 2, 6, 0, shared_prefix_layers=2)  # only 2 free archs
    assert len(group) == 6
    assert len(set(group)) == 2


@pytest.mark.parametrize("prefix, suffix", [(15, 6), (-1, 0), (0, 21)])
def test_shared_group_rejects_bad_sharing(prefix, suffix):
    with pytest.raises(ValueError):
        sample_shared_group(
            20, 4, 8, 0, shared_prefix_layers=prefix, shared_suffix_layers=suffix
        )


# --- export -----------------------------------------------------------------------------


def test_export_matches_onnxruntime(tiny, exported):
    _, _, path = exported
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = tiny(x, TINY_ARCH).numpy()
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    (actual,) = session.run(["logits"], {"input": x.numpy()})
    assert np.abs(actual - expected).max() <= 1e-4


def test_export_keeps_batchnorm_and_supernet_names(tiny, exported):
    dynamo, model, _ = exported
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == (18 if dynamo else 17)
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("BatchNormalization") == ops.count("Conv")
    initializers = {init.name for init in model.graph.initializer}
    names = {n for n in tiny.subnet(TINY_ARCH).state_dict() if "num_batches" not in n}
    assert names <= initializers


def test_arch_metadata_round_trips(exported):
    _, model, path = exported
    props = {prop.key: prop.value for prop in model.metadata_props}
    assert props[SUPERNET_METADATA_KEY] == "spos"
    assert props[ARCH_METADATA_KEY] == "[3, 0, 1, 2, 3]"
    assert read_arch(path) == read_arch(model) == TINY_ARCH


def test_export_group_names_files_and_leaves_no_temp_files(tiny, tmp_path):
    archs = sample_shared_group(tiny.num_layers, SPOS_CHOICES, 3, 0, shared_prefix_layers=2)
    tiny.train()
    paths = export_group(tiny, archs, tmp_path / "group")
    assert tiny.training  # export must not leave the shared modules in eval mode
    tiny.eval()
    assert [p.name for p in paths] == ["subnet_00.onnx", "subnet_01.onnx", "subnet_02.onnx"]
    assert sorted(p.name for p in (tmp_path / "group").iterdir()) == [p.name for p in paths]
    assert [read_arch(p) for p in paths] == archs


def test_demo_supernet_is_seeded_and_has_nontrivial_batchnorm():
    a, b = build_demo_supernet(0), build_demo_supernet(0)
    assert a.num_layers == 20 and a.input_size == 32 and a.num_classes == 10
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    variances = a.features[5][1].branch_main[1].running_var
    assert not torch.allclose(variances, torch.ones_like(variances), atol=0.05)
