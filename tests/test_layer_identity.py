"""Layer keys come from node metadata (or graph structure), never from node names.

The name rule these tests compare against is the one lowering used before: the first
``features[./_](\\d+)`` in the node name (group prefix ``s{i}/`` removed) gave
``layer{N}``, anything else no key. For the project's own exports the metadata must give
exactly those keys, so plans stay byte-identical.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from enasa_compiler.frontend import load_group
from enasa_compiler.ir import CrossbarProgram, MvmOp
from enasa_compiler.models.export import (
    CHOICE_METADATA_KEY,
    LAYER_METADATA_KEY,
    export_subnet,
    read_arch,
)
from enasa_compiler.models.spos import SposSupernet
from enasa_compiler.passes import CanonicalizePass, merge_group
from enasa_compiler.passes import lower as lower_module
from enasa_compiler.passes.lower import lower
from enasa_compiler.pipeline import build_group_model, compile_detailed
from enasa_compiler.targets import load_target

_NAME_RULE = re.compile(r"features[./_](\d+)")
_TINY_ARCH = (0, 1, 2, 3)


def _name_rule(name: str) -> str:
    match = _NAME_RULE.search(re.sub(r"^s\d+/", "", name))
    return f"layer{int(match.group(1))}" if match else ""


def _renamed(path: Path, seed: int, *, strip_metadata: bool = False) -> onnx.ModelProto:
    """The model with every node renamed to a random string, optionally untagged."""
    model = onnx.load(path)
    rng = random.Random(seed)
    for node in model.graph.node:
        node.name = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=12))
        if strip_metadata:
            del node.metadata_props[:]
    return model


def _program(sources: Sequence[Path | onnx.ModelProto]) -> CrossbarProgram:
    group, _ = build_group_model(load_group(list(sources)))
    return lower(group, load_target("neurosim-22nm"))


@pytest.fixture(scope="module")
def tiny_supernet() -> SposSupernet:
    return SposSupernet(width_mult=0.25, num_classes=10, input_size=32,
                        stage_repeats=(1, 1, 1, 1)).eval()


def test_export_and_lowering_agree_on_the_metadata_key():
    assert LAYER_METADATA_KEY == lower_module.LAYER_METADATA_KEY == "enasa.layer"


def test_exported_subnet_tags_every_node_with_its_layer_and_choice(group4_files):
    model = onnx.load(group4_files[0])
    arch = read_arch(model)
    assert model.ir_version >= 10  # node metadata_props exist from IR version 10
    for node in model.graph.node:
        props = {p.key: p.value for p in node.metadata_props}
        layer = _name_rule(node.name)
        if layer:
            index = int(layer.removeprefix("layer"))
            assert props[LAYER_METADATA_KEY] == str(index), node.name
            assert props[CHOICE_METADATA_KEY] == str(arch[index]), node.name
        else:
            assert props[LAYER_METADATA_KEY] in ("stem", "head"), node.name
            assert CHOICE_METADATA_KEY not in props, node.name
    tags = Counter(p.value for n in model.graph.node for p in n.metadata_props
                   if p.key == LAYER_METADATA_KEY)
    assert set(tags) == {"stem", "head", *(str(i) for i in range(len(arch)))}


def test_plan_layers_equal_the_old_name_rule(group4_result):
    layers = {op.id: op.layer for op in group4_result.plan.operators}
    assert layers == {op_id: _name_rule(op_id) for op_id in layers}
    assert {f"layer{i}" for i in range(20)} <= set(layers.values())


def test_plan_bytes_equal_those_of_name_based_lowering(group4_files, group4_result,
                                                      monkeypatch, tmp_path):
    def by_name(graph):
        return {node: _name_rule(node.name or "") for node in graph}

    monkeypatch.setattr(lower_module, "layer_keys", by_name)
    by_names = compile_detailed(group4_files, "neurosim-22nm", duplicate="off").plan
    by_metadata = group4_result.plan
    assert (by_names.save(tmp_path / "names.json").read_bytes()
            == by_metadata.save(tmp_path / "metadata.json").read_bytes())


def test_metadata_survives_the_graph_passes(group4_files):
    group, stats = build_group_model(load_group(group4_files))
    assert stats["nodes_removed"] > 0  # dedup merged the shared layers
    for node in group.graph:
        assert LAYER_METADATA_KEY in node.metadata_props, node.name


def test_layer_keys_do_not_depend_on_node_names(group4_files):
    named = _program(group4_files[:2])
    renamed = _program([_renamed(path, seed) for seed, path in enumerate(group4_files[:2])])
    assert [op.layer for op in renamed.ops] == [op.layer for op in named.ops]


def test_untagged_model_gets_keys_from_weighted_depth(group4_files):
    program = _program([_renamed(group4_files[0], 0, strip_metadata=True)])
    mvms = [op for op in program.ops if isinstance(op, MvmOp)]
    assert all(re.fullmatch(r"depth\d+", op.layer) for op in program.ops)
    assert mvms[0].layer == "depth1"  # the stem conv
    # The classifier ends the longest path: stem, 20 blocks, last conv, classifier.
    depths = [int(op.layer.removeprefix("depth")) for op in mvms]
    assert depths[-1] == max(depths)


def test_deduplicated_operators_keep_each_subnets_structural_key(group4_files):
    untagged = [_renamed(path, seed, strip_metadata=True)
                for seed, path in enumerate(group4_files)]
    group = _program(untagged)
    assert any(len(op.subnets) > 1 for op in group.ops)
    for index, subnet in enumerate(untagged):
        alone = _program([subnet])
        in_group = Counter((op.op_type, op.layer) for op in group.ops if index in op.subnets)
        assert in_group == Counter((op.op_type, op.layer) for op in alone.ops), index


def _chain_cnn(seed: int) -> onnx.ModelProto:
    """conv-relu-conv-relu-pool-flatten-gemm with random weights and random node names."""
    rng = np.random.default_rng(seed)
    names = random.Random(seed)

    def weight(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    def node(op: str, inputs: list[str], output: str, **attrs: object) -> onnx.NodeProto:
        name = "".join(names.choices("abcdefghijklmnopqrstuvwxyz", k=8))
        return helper.make_node(op, inputs, [output], name=name, **attrs)

    nodes = [
        node("Conv", ["x", "w1"], "a", pads=[1, 1, 1, 1]),
        node("Relu", ["a"], "b"),
        node("Conv", ["b", "w2"], "c", pads=[1, 1, 1, 1]),
        node("Relu", ["c"], "d"),
        node("GlobalAveragePool", ["d"], "e"),
        node("Flatten", ["e"], "f"),
        node("Gemm", ["f", "w3"], "y", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        [weight("w1", (8, 3, 3, 3)), weight("w2", (8, 8, 3, 3)), weight("w3", (10, 8))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_subnets_of_one_structure_get_equal_keys_at_equal_depths():
    program = _program([_chain_cnn(1), _chain_cnn(2)])
    expected = ["depth1", "depth1", "depth2", "depth2", "depth2", "depth2", "depth3"]
    for index in (0, 1):
        assert [op.layer for op in program.ops if op.subnets == (index,)] == expected


def test_metadata_tag_wins_over_depth_and_stem_head_get_no_key():
    model = _chain_cnn(3)
    tags = ["stem", "stem", "4", "4", "head", "head", "custom"]
    for node, tag in zip(model.graph.node, tags, strict=True):
        helper.set_metadata_props(node, {LAYER_METADATA_KEY: tag})
    program = _program([model])
    assert [op.layer for op in program.ops] == ["", "", "layer4", "layer4", "", "", "custom"]


@pytest.mark.slow
def test_both_exporters_tag_the_same_layers(tiny_supernet, tmp_path):
    keys = {}
    for dynamo in (False, True):
        path = export_subnet(tiny_supernet, _TINY_ARCH, tmp_path / f"{dynamo}.onnx",
                             dynamo=dynamo)
        keys[dynamo] = sorted((op.op_type, op.layer, op.macs) for op in _program([path]).ops
                              if isinstance(op, MvmOp))
    assert keys[False] == keys[True]
    assert {layer for _, layer, _ in keys[False]} == {"", "layer0", "layer1", "layer2",
                                                      "layer3"}


def test_tags_survive_opset_conversion_when_merging(tiny_supernet, tmp_path):
    old = export_subnet(tiny_supernet, _TINY_ARCH, tmp_path / "17.onnx", opset=17)
    new = export_subnet(tiny_supernet, (3, 2, 1, 0), tmp_path / "18.onnx", opset=18)
    canonical = [CanonicalizePass()(s.model).model for s in load_group([old, new])]
    group = merge_group(canonical)
    assert group.opset_imports[""] == 18
    assert [node.name for node in group.graph
            if LAYER_METADATA_KEY not in node.metadata_props] == []


def test_identical_subnets_keep_the_head_tag_on_the_output_alias(tiny_supernet, tmp_path):
    path = export_subnet(tiny_supernet, _TINY_ARCH, tmp_path / "same.onnx")
    program = _program([path, path])
    aliases = [op for op in program.ops if op.op_type == "Identity"]
    assert aliases  # dedup kept subnet 1's output name with an Identity
    assert [op.layer for op in aliases] == [""] * len(aliases)
