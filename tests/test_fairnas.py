"""Tests for the FairNAS supernet: exact layer table, published cost, export and compile."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import enasa_compiler
from enasa_compiler.models import (
    ARCH_METADATA_KEY,
    FAIRNAS_A,
    FAIRNAS_CHOICES,
    SUPERNET_METADATA_KEY,
    FairnasSupernet,
    count_cost,
    export_subnet,
    read_arch,
)
from enasa_compiler.models.fairnas import InvertedResidual, fairnas_choice

# docs/domain.md section 5, 1-based layer -> (in, out, stride).
PUBLISHED_TABLE = {
    1: (16, 32, 2),
    2: (32, 32, 1),
    3: (32, 40, 2),
    4: (40, 40, 1),
    5: (40, 40, 1),
    6: (40, 40, 1),
    7: (40, 80, 2),
    8: (80, 80, 1),
    9: (80, 80, 1),
    10: (80, 80, 1),
    11: (80, 96, 1),
    12: (96, 96, 1),
    13: (96, 96, 1),
    14: (96, 96, 1),
    15: (96, 192, 2),
    16: (192, 192, 1),
    17: (192, 192, 1),
    18: (192, 192, 1),
    19: (192, 320, 1),
}
# FairNAS-A from the paper as (t, k) per layer, the way docs/domain.md writes it.
FAIRNAS_A_TK = (
    (3, 7), (3, 3), (3, 7), (6, 3), (6, 7), (3, 3), (3, 3), (6, 7), (6, 7), (3, 5),
    (6, 3), (3, 5), (3, 5), (6, 3), (6, 3), (6, 7), (6, 3), (6, 7), (6, 5),
)  # fmt: skip
TINY_WIDTH = 0.25
TINY_INPUT = 32
# Every choice appears, at stride 1 with and without residual and at stride 2.
TINY_ARCH = (5, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5)


def _randomise_batchnorm(module: nn.Module, seed: int) -> None:
    """Give every BN non-trivial statistics and affine parameters, so folding matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in module.modules():
            if isinstance(bn, nn.BatchNorm2d):
                n = bn.num_features
                bn.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                bn.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                bn.weight.copy_(0.5 + torch.rand(n, generator=gen))
                bn.bias.copy_(0.1 * torch.randn(n, generator=gen))


def _tiny_supernet(seed: int = 0) -> FairnasSupernet:
    torch.manual_seed(seed)
    net = FairnasSupernet(width_mult=TINY_WIDTH, num_classes=10, input_size=TINY_INPUT)
    _randomise_batchnorm(net, seed)
    return net.eval()


@pytest.fixture(scope="module")
def full_size() -> FairnasSupernet:
    return FairnasSupernet()


@pytest.fixture(scope="module")
def tiny() -> FairnasSupernet:
    return _tiny_supernet()


# The dynamo export takes seconds: that half runs with the slow tests.
@pytest.fixture(scope="module", params=[
    pytest.param(False, id="legacy"),
    pytest.param(True, id="dynamo", marks=pytest.mark.slow)])
def exported(request, tiny, tmp_path_factory) -> tuple[onnx.ModelProto, str]:
    path = tmp_path_factory.mktemp("fairnas") / "tiny.onnx"
    export_subnet(tiny, TINY_ARCH, path, batch_size=2, dynamo=request.param)
    return onnx.load(path), str(path)


# --- search space -----------------------------------------------------------------------


def test_choice_order_is_kernel_major():
    assert FAIRNAS_CHOICES == ((3, 3), (3, 6), (5, 3), (5, 6), (7, 3), (7, 6))
    assert [fairnas_choice(k, t) for k, t in FAIRNAS_CHOICES] == list(range(6))
    with pytest.raises(ValueError):
        fairnas_choice(9, 3)


def test_fairnas_a_constant_follows_the_paper():
    assert FAIRNAS_A == (4, 0, 4, 1, 5, 0, 0, 5, 5, 2, 1, 2, 2, 1, 1, 5, 1, 5, 3)
    assert [FAIRNAS_CHOICES[c] for c in FAIRNAS_A] == [(k, t) for t, k in FAIRNAS_A_TK]


def test_full_size_layer_table_is_exact(full_size):
    assert full_size.num_layers == 19 and full_size.num_choices == 6
    assert len(full_size.layer_specs) == len(PUBLISHED_TABLE)
    for spec in full_size.layer_specs:
        inp, out, stride = PUBLISHED_TABLE[spec.index + 1]
        assert (spec.in_channels, spec.out_channels, spec.stride) == (inp, out, stride)
        assert spec.has_residual == (stride == 1 and inp == out)
        layer = full_size.features[spec.index]
        assert len(layer) == 6
        for choice, block in enumerate(layer):
            ksize, expansion = FAIRNAS_CHOICES[choice]
            expand, depthwise, project = block.conv[0], block.conv[3], block.conv[6]
            assert (expand.in_channels, expand.out_channels) == (inp, inp * expansion)
            assert expand.kernel_size == (1, 1)
            assert depthwise.kernel_size == (ksize, ksize)
            assert depthwise.stride == (stride, stride)
            assert depthwise.groups == inp * expansion
            assert (project.in_channels, project.out_channels) == (inp * expansion, out)
            assert block.use_residual == spec.has_residual


def test_full_size_stem_and_head(full_size):
    stem, sep, head = full_size.first_conv, full_size.separable_conv, full_size.conv_last
    assert (stem[0].in_channels, stem[0].out_channels, stem[0].stride) == (3, 32, (2, 2))
    assert stem[0].kernel_size == (3, 3) and isinstance(stem[2], nn.ReLU6)
    assert sep[0].groups == 32 and sep[0].kernel_size == (3, 3) and sep[0].stride == (1, 1)
    assert (sep[3].in_channels, sep[3].out_channels) == (32, 16)
    assert len(sep) == 5  # the separable conv ends in BN, without activation
    assert (head[0].in_channels, head[0].out_channels) == (320, 1280)
    assert full_size.dropout.p == 0.2
    linear = full_size.classifier[0]
    assert (linear.in_features, linear.out_features) == (1280, 1000)
    assert linear.bias is not None


def test_fairnas_a_matches_published_cost(full_size):
    cost = count_cost(full_size, torch.zeros(1, 3, 224, 224), FAIRNAS_A)
    # Paper Table 2: 388M multiply-adds, 4.6M parameters.
    assert abs(cost.macs - 388e6) <= 0.02 * 388e6
    assert abs(cost.params - 4.6e6) <= 0.02 * 4.6e6


def test_supernet_batchnorm_is_affine(tiny):
    assert all(bn.affine for bn in tiny.modules() if isinstance(bn, nn.BatchNorm2d))


def test_state_dict_names_keep_the_choice_index(full_size):
    names = set(full_size.state_dict())
    assert "features.0.0.conv.0.weight" in names
    assert "features.18.5.conv.7.bias" in names  # last layer, last choice, final BN
    assert {"first_conv.0.weight", "separable_conv.3.weight", "conv_last.0.weight"} <= names
    assert {"classifier.0.weight", "classifier.0.bias"} <= names


@pytest.mark.parametrize("width_mult", [0.1, 0.25, 0.5, 0.75, 1.3])
def test_width_mult_keeps_channels_divisible_by_four(width_mult):
    net = FairnasSupernet(width_mult=width_mult, input_size=TINY_INPUT)
    counts = [net.stem_channels, net.separable_channels, net.head_channels]
    counts += [c for s in net.layer_specs for c in (s.in_channels, s.out_channels)]
    assert all(c % 4 == 0 and c >= 4 for c in counts), counts


@pytest.mark.parametrize("input_size", [0, -32, 100, 225])
def test_bad_input_size_raises(input_size):
    with pytest.raises(ValueError, match="multiple of 32"):
        FairnasSupernet(input_size=input_size)


@pytest.mark.parametrize("arch", [(0,) * 18, (0,) * 20, (6,) + (0,) * 18, (-1,) + (0,) * 18])
def test_bad_arch_raises(tiny, arch):
    with pytest.raises(ValueError):
        tiny(torch.zeros(1, 3, TINY_INPUT, TINY_INPUT), arch)


# --- blocks and forward -----------------------------------------------------------------


def test_residual_block_adds_its_input():
    block = InvertedResidual(8, 8, ksize=5, expansion=3, stride=1).eval()
    _randomise_batchnorm(block, 1)
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(block(x), x + block.conv(x))


@pytest.mark.parametrize("inp, out, stride", [(8, 12, 1), (8, 8, 2)])
def test_block_without_residual_is_the_plain_chain(inp, out, stride):
    block = InvertedResidual(inp, out, ksize=3, expansion=6, stride=stride).eval()
    x = torch.randn(1, inp, 8, 8)
    with torch.no_grad():
        assert torch.equal(block(x), block.conv(x))
    assert block(x).shape == (1, out, 8 // stride, 8 // stride)


def test_block_macs_by_hand():
    block = InvertedResidual(8, 12, ksize=5, expansion=3, stride=2)
    cost = count_cost(block, torch.zeros(1, 8, 8, 8))
    # pw 8->24 at 8x8, dw5x5 s2 at 4x4, pw 24->12 at 4x4.
    assert cost.macs == 24 * 8 * 64 + 24 * 25 * 16 + 12 * 24 * 16
    assert cost.params == 24 * 8 + 24 * 25 + 12 * 24 + 2 * (24 + 24 + 12)  # BN: 2 each


def test_tiny_forward_and_subnet_view(tiny):
    x = torch.randn(2, 3, TINY_INPUT, TINY_INPUT)
    subnet = tiny.subnet(TINY_ARCH)
    with torch.no_grad():
        logits = tiny(x, TINY_ARCH)
        torch.testing.assert_close(subnet(x), logits)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    super_state = tiny.state_dict()
    for name, tensor in subnet.state_dict().items():
        assert super_state[name].data_ptr() == tensor.data_ptr(), name
    assert "features.0.5.conv.0.weight" in subnet.state_dict()


# --- export and compile -----------------------------------------------------------------


def test_export_matches_onnxruntime(tiny, exported):
    _, path = exported
    x = torch.randn(2, 3, TINY_INPUT, TINY_INPUT)
    with torch.no_grad():
        expected = tiny(x, TINY_ARCH).numpy()
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (actual,) = session.run(["logits"], {"input": x.numpy()})
    assert np.abs(actual - expected).max() <= 1e-4


def test_export_records_fairnas_and_keeps_names(tiny, exported):
    model, path = exported
    onnx.checker.check_model(model, full_check=True)
    props = {prop.key: prop.value for prop in model.metadata_props}
    assert props[SUPERNET_METADATA_KEY] == "fairnas"
    assert props[ARCH_METADATA_KEY] == str(list(TINY_ARCH))
    assert read_arch(path) == TINY_ARCH
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("BatchNormalization") == ops.count("Conv")
    initializers = {init.name for init in model.graph.initializer}
    names = {n for n in tiny.subnet(TINY_ARCH).state_dict() if "num_batches" not in n}
    assert names <= initializers


def test_exported_subnet_compiles_to_a_valid_plan(tiny, tmp_path):
    path = export_subnet(tiny, FAIRNAS_A, tmp_path / "fairnas_a.onnx")
    plan = enasa_compiler.compile([path], "neurosim-22nm")
    assert enasa_compiler.validate(plan) == []
    assert plan.subnets[0].arch == FAIRNAS_A
    assert any(op.weights for op in plan.operators)
