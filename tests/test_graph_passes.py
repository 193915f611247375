"""Tests of the graph-level passes on subnets of a tiny chain supernet, both exporters.

Expected numbers (nodes, MACs) come from the torch module definition, outputs from
onnxruntime on the models the exporters wrote.
"""

from __future__ import annotations

import functools
import json
import math
import random
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx_ir.passes import PassManager
from onnx_ir.passes import common as common_passes
from torch import nn

from enasa_compiler.passes import (
    GROUP_SIZE_KEY,
    SUBNET_NAMES_KEY,
    SUBNET_OUTPUTS_KEY,
    WEIGHT_GROUP_KEY,
    CanonicalizePass,
    DedupPass,
    MergeGroupPass,
    WeightSharePass,
    dedup,
    get_subnets,
    merge_group,
)
from enasa_compiler.passes.dedup import DedupResult, read_dedup_stats

CHANNELS = 8
KERNELS = (3, 5, 7)
NUM_LAYERS = 4
CLASSES = 10
INPUT_SHAPE = (1, 3, 16, 16)
TOLERANCE = 1e-5

# Architectures: one choice index per layer.
ARCH_A = (0, 1, 2, 0)
ARCH_B = (0, 1, 0, 2)  # shares layers 0-1 with A: compute-shared prefix of length 2
ARCH_C = (1, 2, 0, 0)  # same layer-3 choice as A on a different input: weight-shared
ARCH_D = (2, 0, 1, 1)
GROUP = (ARCH_A, ARCH_B, ARCH_C, ARCH_D)
# The dynamo export takes seconds: that half runs with the slow tests.
EXPORTERS = ("legacy", pytest.param("dynamo", marks=pytest.mark.slow))


# ----------------------------------------------------------------------------- supernet


class ConvBlock(nn.Sequential):
    """Conv-BN-ReLU, the choice block of the test supernet."""

    def __init__(self, in_channels: int, kernel: int, affine: bool = True) -> None:
        super().__init__(
            nn.Conv2d(in_channels, CHANNELS, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(CHANNELS, affine=affine),
            nn.ReLU(),
        )


class Subnet(nn.Module):
    """One path through the supernet; it shares the supernet's modules (weights)."""

    def __init__(self, stem: nn.Module, blocks: Sequence[nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.stem = stem
        self.blocks = nn.Sequential(*blocks)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean(dim=(2, 3)))


class ChainSupernet(nn.Module):
    """Stem, NUM_LAYERS choice layers of len(KERNELS) Conv-BN-ReLU blocks, linear head."""

    def __init__(self) -> None:
        super().__init__()
        # affine=False like the SPOS supernet: torch exports gamma=1, beta=0.
        self.stem = ConvBlock(INPUT_SHAPE[1], 3, affine=False)
        self.choices = [[ConvBlock(CHANNELS, k) for k in KERNELS] for _ in range(NUM_LAYERS)]
        self.layers = nn.ModuleList(nn.ModuleList(blocks) for blocks in self.choices)
        self.head = nn.Linear(CHANNELS, CLASSES)

    def shared_prefix(self, arch: Sequence[int], length: int) -> list[nn.Module]:
        return [self.stem, *(self.choices[i][arch[i]] for i in range(length))]

    def subnet(self, arch: Sequence[int]) -> Subnet:
        blocks = [self.choices[i][choice] for i, choice in enumerate(arch)]
        return Subnet(self.stem, blocks, self.head).eval()


@functools.cache
def supernet() -> ChainSupernet:
    torch.manual_seed(0)
    net = ChainSupernet()
    # Non-trivial statistics so that folding BN is visible in the numbers.
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert module.running_mean is not None and module.running_var is not None
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            if module.affine:
                module.weight.data.uniform_(0.5, 1.5)
                module.bias.data.uniform_(-0.5, 0.5)
    return net.eval()


def torch_counts(modules: Sequence[nn.Module]) -> tuple[int, int]:
    """Return (operators after BN folding, MACs) of modules, from the torch definition.

    Every leaf module but BatchNorm2d is one ONNX operator once BN is folded into the
    Conv before it; MACs are measured on the real output shapes with forward hooks.
    """
    leaves = [
        leaf
        for module in modules
        for leaf in module.modules()
        if not list(leaf.children()) and not isinstance(leaf, nn.BatchNorm2d)
    ]
    macs: dict[nn.Module, int] = {}

    def hook(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
            macs[module] = output.numel() * per_output
        elif isinstance(module, nn.Linear):
            macs[module] = output.numel() * module.in_features

    handles = [module.register_forward_hook(hook) for module in supernet().modules()]
    try:
        with torch.no_grad():
            for choice in range(len(KERNELS)):
                # Visit every block once so that every module's MACs are known.
                supernet().subnet([choice] * NUM_LAYERS)(input_tensor())
    finally:
        for handle in handles:
            handle.remove()
    return len(leaves), sum(macs.get(leaf, 0) for leaf in leaves)


def subnet_modules(arch: Sequence[int]) -> list[nn.Module]:
    net = supernet()
    return [net.stem, *(net.choices[i][c] for i, c in enumerate(arch)), net.head]


# ----------------------------------------------------------------------------- exports


def input_array() -> np.ndarray:
    return np.random.default_rng(0).standard_normal(INPUT_SHAPE).astype(np.float32)


def input_tensor() -> torch.Tensor:
    return torch.from_numpy(input_array())


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("subnets")


_EXPORTED: dict[tuple[str, tuple[int, ...], bool], Path] = {}


def export(directory: Path, exporter: str, arch: Sequence[int], optimize: bool = True) -> Path:
    """Export a subnet (cached); ``optimize=False`` keeps BatchNormalization in the graph."""
    key = (exporter, tuple(arch), optimize)
    if key in _EXPORTED:
        return _EXPORTED[key]
    path = directory / f"{exporter}_{''.join(map(str, arch))}_{int(optimize)}.onnx"
    module = supernet().subnet(arch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "legacy":
            torch.onnx.export(
                module,
                (input_tensor(),),
                str(path),
                dynamo=False,
                opset_version=13,
                do_constant_folding=optimize,
                input_names=["input"],
                output_names=["logits"],
            )
        else:
            torch.onnx.export(
                module,
                (input_tensor(),),
                str(path),
                dynamo=True,
                optimize=optimize,
                verbose=False,
                input_names=["input"],
                output_names=["logits"],
            )
    _EXPORTED[key] = path
    return path


def canonical(directory: Path, exporter: str, arch: Sequence[int]) -> ir.Model:
    model = ir.load(export(directory, exporter, arch))
    return PassManager([CanonicalizePass()])(model).model


def run(model: ir.Model | Path) -> dict[str, np.ndarray]:
    if isinstance(model, ir.Model):
        # The dynamo exporter writes weights to a side file; ir.load keeps them there and
        # to_proto would keep a relative reference that onnxruntime cannot resolve.
        proto = ir.to_proto(ir.external_data.load_to_model(model.clone()))
    else:
        proto = onnx.load(model)
    session = ort.InferenceSession(
        proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    names = [output.name for output in session.get_outputs()]
    outputs = session.run(None, {session.get_inputs()[0].name: input_array()})
    return dict(zip(names, outputs, strict=True))


def max_error(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a - b).max())


def build_group(subnets: Sequence[ir.Model]) -> tuple[ir.Model, DedupPass, WeightSharePass]:
    dedup_pass, share_pass = DedupPass(), WeightSharePass()
    pipeline = PassManager([MergeGroupPass(subnets[1:]), dedup_pass, share_pass])
    model = pipeline(subnets[0]).model
    return model, read_dedup_stats(model), share_pass


def assert_group_matches_subnets(group: ir.Model, paths: Sequence[Path]) -> None:
    outputs = run(group)
    per_subnet = json.loads(group.metadata_props[SUBNET_OUTPUTS_KEY])
    assert len(per_subnet) == len(paths)
    for names, path in zip(per_subnet, paths, strict=True):
        reference = run(path)
        assert len(names) == len(reference)
        for name, expected in zip(names, reference.values(), strict=True):
            assert max_error(outputs[name], expected) <= TOLERANCE


# ----------------------------------------------------------------------------- canonicalize


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_canonicalize_folds_batch_norm_and_keeps_outputs(export_dir: Path, exporter: str):
    # optimize=False: neither exporter folds BN then; dynamo also builds the conv bias
    # from Shape/Expand/CastLike chains on Constant nodes.
    path = export(export_dir, exporter, ARCH_A, optimize=False)
    model = ir.load(path)
    assert sum(node.op_type == "BatchNormalization" for node in model.graph) == 5

    result = CanonicalizePass()(model)

    ops = [node.op_type for node in result.model.graph]
    assert ops == ["Conv", "Relu"] * (1 + NUM_LAYERS) + ["ReduceMean", "Gemm"]
    assert all(len(node.inputs) == 3 for node in result.model.graph if node.op_type == "Conv")
    reference, outputs = run(path), run(result.model)
    assert outputs.keys() == reference.keys()
    for name, expected in reference.items():
        assert max_error(outputs[name], expected) <= TOLERANCE


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_canonicalize_gives_same_operators_for_both_exporters(export_dir: Path, exporter: str):
    model = canonical(export_dir, exporter, ARCH_A)
    expected_nodes, _ = torch_counts(subnet_modules(ARCH_A))
    ops = [node.op_type for node in model.graph]
    # The mean over H, W is one ReduceMean that torch has no module for.
    assert len(ops) == expected_nodes + 1
    assert "BatchNormalization" not in ops and "Constant" not in ops


def _alias_model() -> ir.Model:
    """x -> Identity -> Dropout -> Relu -> Reshape(to [N, -1] via Shape chain) -> Identity."""
    helper = onnx.helper
    nodes = [
        helper.make_node("Identity", ["x"], ["x_copy"]),
        helper.make_node("Dropout", ["x_copy"], ["dropped"]),
        helper.make_node("Relu", ["dropped"], ["relu"]),
        helper.make_node("Shape", ["relu"], ["shape"]),
        helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("z", 7, [], [0])),
        helper.make_node("Gather", ["shape", "zero"], ["batch"]),
        helper.make_node("Unsqueeze", ["batch", "axes"], ["batch_1d"]),
        helper.make_node("Concat", ["batch_1d", "minus_one"], ["new_shape"], axis=0),
        helper.make_node("Reshape", ["relu", "new_shape"], ["flat"]),
        helper.make_node("Identity", ["flat"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "aliases",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 4, 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 12])],
        [
            helper.make_tensor("axes", onnx.TensorProto.INT64, [1], [0]),
            helper.make_tensor("minus_one", onnx.TensorProto.INT64, [1], [-1]),
        ],
    )
    return ir.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))


def test_canonicalize_removes_aliases_and_folds_shape_chains():
    model = _alias_model()
    x = np.random.default_rng(1).standard_normal((2, 4, 3)).astype(np.float32)

    CanonicalizePass()(model)

    # The shape chain folds to [2, -1]; a Reshape of (N, ...) to (N, rest) is then the
    # Flatten the legacy exporter writes (one spelling for both exporters).
    assert [node.op_type for node in model.graph] == ["Relu", "Flatten"]
    assert model.graph.node(1).attributes.get_int("axis", 1) == 1  # the default
    assert [value.name for value in model.graph.outputs] == ["y"]
    session = ort.InferenceSession(ir.to_proto(model).SerializeToString())
    (y,) = session.run(None, {"x": x})
    np.testing.assert_array_equal(y, np.maximum(x, 0).reshape(2, -1))


def test_canonicalize_keeps_identity_from_input_to_output():
    value_info = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "passthrough",
        [value_info("x", onnx.TensorProto.FLOAT, [2])],
        [value_info("y", onnx.TensorProto.FLOAT, [2])],
    )
    model = ir.from_proto(onnx.helper.make_model(graph))

    CanonicalizePass()(model)

    assert [node.op_type for node in model.graph] == ["Identity"]
    assert model.graph.outputs[0].name == "y"


def test_canonicalize_does_not_fold_outputs_above_the_size_limit():
    helper = onnx.helper
    graph = helper.make_graph(
        [
            helper.make_node("ConstantOfShape", ["shape"], ["big"]),
            helper.make_node("Add", ["x", "big"], ["y"]),
        ],
        "big_constant",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [4, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [4, 4])],
        [helper.make_tensor("shape", onnx.TensorProto.INT64, [2], [4, 4])],
    )
    small_limit = ir.from_proto(helper.make_model(graph))
    large_limit = ir.from_proto(helper.make_model(graph))

    CanonicalizePass(fold_size_limit=15)(small_limit)
    CanonicalizePass(fold_size_limit=16)(large_limit)

    assert [node.op_type for node in small_limit.graph] == ["ConstantOfShape", "Add"]
    assert [node.op_type for node in large_limit.graph] == ["Add"]


# ----------------------------------------------------------------------------- merge


def test_merge_group_prefixes_tags_and_leaves_subnets_untouched(export_dir: Path):
    subnets = [canonical(export_dir, "legacy", arch) for arch in (ARCH_A, ARCH_B)]
    before = [[(node.name, node.op_type) for node in model.graph] for model in subnets]

    group = MergeGroupPass(subnets[1:], names=["a", "b"])(subnets[0]).model

    assert [[(n.name, n.op_type) for n in model.graph] for model in subnets] == before
    assert [value.name for value in group.graph.inputs] == ["input"]
    assert [value.name for value in group.graph.outputs] == ["s0/logits", "s1/logits"]
    assert group.metadata_props[GROUP_SIZE_KEY] == "2"
    assert json.loads(group.metadata_props[SUBNET_NAMES_KEY]) == ["a", "b"]
    assert json.loads(group.metadata_props[SUBNET_OUTPUTS_KEY]) == [
        ["s0/logits"],
        ["s1/logits"],
    ]
    assert len(group.graph) == sum(len(model.graph) for model in subnets)
    for node in group.graph:
        index = get_subnets(node)
        assert len(index) == 1 and node.name.startswith(f"s{index[0]}/")
        assert all(value.name.startswith(f"s{index[0]}/") for value in node.outputs)
    assert all(name.startswith(("s0/", "s1/")) for name in group.graph.initializers)
    outputs = run(group)
    assert max_error(outputs["s0/logits"], outputs["s1/logits"]) > 1e-3  # really different


def test_merge_group_rejects_mismatched_input_shapes(export_dir: Path):
    first = canonical(export_dir, "legacy", ARCH_A)
    second = canonical(export_dir, "legacy", ARCH_B)
    second.graph.inputs[0].shape = ir.Shape([1, 3, 32, 32])

    with pytest.raises(ValueError, match=r"subnet 1 .*\[1, 3, 32, 32\].*\[1, 3, 16, 16\]"):
        merge_group([first, second])


def test_merge_group_converts_a_lower_opset_subnet(export_dir: Path):
    legacy = canonical(export_dir, "legacy", ARCH_A)  # opset 13: ReduceMean axes attribute
    dynamo = canonical(export_dir, "dynamo", ARCH_B)  # opset 18+: axes input

    group = merge_group([legacy, dynamo])

    assert group.opset_imports[""] == dynamo.opset_imports[""]
    assert legacy.opset_imports[""] == 13
    assert_group_matches_subnets(
        group, [export(export_dir, "legacy", ARCH_A), export(export_dir, "dynamo", ARCH_B)]
    )


def test_merge_group_rejects_differing_custom_domain_opsets():
    def model(version: int) -> ir.Model:
        value_info = onnx.helper.make_tensor_value_info
        graph = onnx.helper.make_graph(
            [onnx.helper.make_node("Relu", ["x"], ["y"])],
            "tiny",
            [value_info("x", onnx.TensorProto.FLOAT, [2])],
            [value_info("y", onnx.TensorProto.FLOAT, [2])],
        )
        opsets = [onnx.helper.make_opsetid("", 18), onnx.helper.make_opsetid("com.x", version)]
        return ir.from_proto(onnx.helper.make_model(graph, opset_imports=opsets))

    with pytest.raises(ValueError, match=r"subnet 0 .*com\.x"):
        merge_group([model(1), model(2)])


# ----------------------------------------------------------------------------- dedup


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_dedup_removes_exactly_the_shared_prefix(export_dir: Path, exporter: str):
    shared_layers = 2
    assert ARCH_A[:shared_layers] == ARCH_B[:shared_layers]
    assert ARCH_A[shared_layers] != ARCH_B[shared_layers]
    subnets = [canonical(export_dir, exporter, arch) for arch in (ARCH_A, ARCH_B)]
    shared_nodes, shared_macs = torch_counts(supernet().shared_prefix(ARCH_A, shared_layers))
    _, macs_a = torch_counts(subnet_modules(ARCH_A))
    _, macs_b = torch_counts(subnet_modules(ARCH_B))

    group, dedup_stats, _ = build_group(subnets)

    stats = dedup_stats
    assert stats is not None
    # Sanity check of the torch-side count: stem 3->8 k3, then 8->8 k3 and k5, on 16x16.
    assert (shared_nodes, shared_macs) == (6, 16 * 16 * 8 * (3 * 9 + 8 * 9 + 8 * 25))
    assert stats.nodes_removed == shared_nodes
    assert stats.macs_removed == shared_macs
    assert stats.macs_before == macs_a + macs_b
    assert stats.macs_after == macs_a + macs_b - shared_macs
    assert stats.nodes_after == len(group.graph) == stats.nodes_before - shared_nodes
    # Conv weight and bias of every shared block, the head's weight and bias, and the
    # ReduceMean axes tensor the dynamo exporter writes as a constant.
    axes_constants = 1 if exporter == "dynamo" else 0
    assert stats.initializers_removed == 2 * len(supernet().shared_prefix(ARCH_A, 2)) + 2 + (
        axes_constants
    )
    assert group.metadata_props["enasa.dedup.nodes_removed"] == str(shared_nodes)
    assert group.metadata_props["enasa.dedup.macs_removed"] == str(shared_macs)
    shared = [node for node in group.graph if get_subnets(node) == (0, 1)]
    assert [node.op_type for node in shared] == ["Conv", "Relu"] * (1 + shared_layers)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_group_of_four_gives_each_subnet_its_outputs(export_dir: Path, exporter: str):
    paths = [export(export_dir, exporter, arch) for arch in GROUP]
    subnets = [canonical(export_dir, exporter, arch) for arch in GROUP]

    group, dedup_stats, _ = build_group(subnets)

    assert dedup_stats.nodes_removed > 0
    assert group.metadata_props[GROUP_SIZE_KEY] == "4"
    assert_group_matches_subnets(group, paths)
    onnx.checker.check_model(ir.to_proto(ir.external_data.load_to_model(group)))


def test_dedup_ignores_initializer_names(export_dir: Path):
    plain = [canonical(export_dir, "legacy", arch) for arch in (ARCH_A, ARCH_B)]
    renamed = [canonical(export_dir, "legacy", arch) for arch in (ARCH_A, ARCH_B)]
    names = random.Random(0)
    for value in list(renamed[1].graph.initializers.values()):
        value.name = f"onnx::Conv_{names.randrange(10**6)}_{id(value)}"

    _, plain_stats, _ = build_group(plain)
    group, renamed_stats, _ = build_group(renamed)

    assert renamed_stats == plain_stats
    assert renamed_stats.nodes_removed == 6
    assert_group_matches_subnets(
        group, [export(export_dir, "legacy", arch) for arch in (ARCH_A, ARCH_B)]
    )


def test_dedup_of_identical_subnets_keeps_both_outputs(export_dir: Path):
    subnets = [canonical(export_dir, "legacy", ARCH_A) for _ in range(2)]
    nodes = len(subnets[0].graph)

    group, dedup_stats, _ = build_group(subnets)

    # Every node is shared; one Identity keeps subnet 1's output name.
    assert dedup_stats.nodes_removed == nodes - 1
    assert [node.op_type for node in group.graph][-1] == "Identity"
    assert get_subnets(list(group.graph)[-1]) == (1,)
    assert_group_matches_subnets(group, [export(export_dir, "legacy", ARCH_A)] * 2)


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    first=st.tuples(*[st.integers(0, len(KERNELS) - 1)] * NUM_LAYERS),
    second=st.tuples(*[st.integers(0, len(KERNELS) - 1)] * NUM_LAYERS),
)
def test_dedup_shares_the_common_prefix_of_any_two_architectures(
    export_dir: Path, first: tuple[int, ...], second: tuple[int, ...]
):
    prefix = next((i for i in range(NUM_LAYERS) if first[i] != second[i]), NUM_LAYERS)
    subnets = [canonical(export_dir, "legacy", arch) for arch in (first, second)]
    nodes, macs = torch_counts(supernet().shared_prefix(first, prefix))
    if prefix == NUM_LAYERS:
        # Identical subnets also share the ReduceMean and the head (Gemm); one Identity
        # is added back to keep the second subnet's output name.
        head_nodes, head_macs = torch_counts([supernet().head])
        nodes, macs = nodes + 1 + head_nodes - 1, macs + head_macs

    group = merge_group(subnets)
    stats = dedup(group)

    assert (stats.nodes_removed, stats.macs_removed) == (nodes, macs)
    assert_group_matches_subnets(
        group, [export(export_dir, "legacy", arch) for arch in (first, second)]
    )


# ----------------------------------------------------------------------------- weight sharing


def _convs_of(group: ir.Model, subnet: int) -> list[ir.Node]:
    return [n for n in group.graph if n.op_type == "Conv" and subnet in get_subnets(n)]


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_weight_share_tags_same_choice_on_different_inputs(export_dir: Path, exporter: str):
    assert ARCH_A[3] == ARCH_C[3] and ARCH_A[0] != ARCH_C[0]
    subnets = [canonical(export_dir, exporter, arch) for arch in (ARCH_A, ARCH_C)]

    group, _, share_pass = build_group(subnets)

    convs_a, convs_c = _convs_of(group, 0), _convs_of(group, 1)
    stem_a, *layers_a = convs_a
    stem_c, *layers_c = convs_c
    assert stem_a is stem_c and WEIGHT_GROUP_KEY not in stem_a.metadata_props
    last_a, last_c = layers_a[3], layers_c[3]
    assert last_a is not last_c
    assert last_a.metadata_props[WEIGHT_GROUP_KEY] == last_c.metadata_props[WEIGHT_GROUP_KEY]
    gemms = [node for node in group.graph if node.op_type == "Gemm"]
    # Layer-3 convs first (topological order), then the shared head on different inputs.
    assert share_pass.groups == {
        "wg0": [last_a.name, last_c.name],
        "wg1": [gemm.name for gemm in gemms],
    }
    tagged = [node for node in group.graph if WEIGHT_GROUP_KEY in node.metadata_props]
    assert sorted(str(node.name) for node in tagged) == sorted(
        str(name) for name in [last_a.name, last_c.name] + [gemm.name for gemm in gemms]
    )


def test_weight_share_in_a_group_of_four(export_dir: Path):
    subnets = [canonical(export_dir, "legacy", arch) for arch in GROUP]

    group, _, share_pass = build_group(subnets)

    def members(group_id: str) -> list[tuple[str, tuple[int, ...]]]:
        nodes = [n for n in group.graph if n.metadata_props.get(WEIGHT_GROUP_KEY) == group_id]
        return [(node.op_type, get_subnets(node)) for node in nodes]

    # Layer 3 choice 0 in A and C, the head everywhere, layer 2 choice 0 in B and C;
    # numbered in the (stable) topological order, where subnet 0's nodes come first.
    assert {gid: members(gid) for gid in share_pass.groups} == {
        "wg0": [("Conv", (0,)), ("Conv", (2,))],
        "wg1": [("Gemm", (0,)), ("Gemm", (1,)), ("Gemm", (2,)), ("Gemm", (3,))],
        "wg2": [("Conv", (1,)), ("Conv", (2,))],
    }


# ----------------------------------------------------------------------------- composition


class CountNodesPass(ir.passes.InPlacePass):
    """A user's pass: records the node count it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: list[int] = []

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        self.counts.append(len(model.graph))
        return ir.passes.PassResult(model, modified=False)


def test_passes_compose_with_user_and_onnx_ir_passes(export_dir: Path):
    paths = [export(export_dir, "legacy", arch) for arch in (ARCH_A, ARCH_B)]
    subnets = [ir.load(path) for path in paths]
    subnets = [PassManager([CanonicalizePass()])(model).model for model in subnets]
    counter, dedup_pass = CountNodesPass(), DedupPass()

    group = PassManager(
        [
            MergeGroupPass(subnets[1:]),
            counter,
            common_passes.TopologicalSortPass(),
            dedup_pass,
            counter,
            WeightSharePass(),
            common_passes.CheckerPass(),
        ]
    )(subnets[0]).model

    assert counter.counts[0] - counter.counts[1] == read_dedup_stats(group).nodes_removed == 6
    # Run alone, the pass hands its numbers back in its own result.
    again = DedupPass()(group)
    assert isinstance(again, DedupResult) and again.stats is not None
    assert again.stats.nodes_removed == 0 and not again.modified
    assert_group_matches_subnets(group, paths)


def test_rerunning_the_group_passes_changes_nothing(export_dir: Path):
    subnets = [canonical(export_dir, "legacy", arch) for arch in GROUP]
    group, _, share_pass = build_group(subnets)
    tags = {node.name: dict(node.metadata_props) for node in group.graph}

    # A PassManager loop stops as soon as a step reports no change.
    result = PassManager([DedupPass(), WeightSharePass()], steps=5)(group)

    assert not result.modified
    assert {node.name: dict(node.metadata_props) for node in group.graph} == tags
    assert group.metadata_props["enasa.dedup.nodes_removed"] == "10"
    assert len(share_pass.groups) == 3
