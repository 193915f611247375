"""Lowering real ONNX layers: crossbar counts, vectors and MACs computed by hand."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from enasa_compiler.errors import UnsupportedModelError
from enasa_compiler.frontend import load_subnet
from enasa_compiler.ir import DigitalOp, MvmOp
from enasa_compiler.passes import merge_group
from enasa_compiler.passes.lower import lower
from enasa_compiler.targets import load_target, target_from_dict


def _init(name, shape, seed):
    data = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return numpy_helper.from_array(data, name)


def _layers_model() -> onnx.ModelProto:
    inits = [
        _init("w_stem", (64, 3, 3, 3), 0),      # 3->64 k3 s2: 16x16 output pixels
        _init("w_group", (32, 32, 3, 3), 1),    # grouped conv, g=2, 32 in/group
        _init("w_dw", (32, 1, 3, 3), 2),        # depthwise
        _init("w_fc", (1000, 32), 3),           # Gemm transB=1
        numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "shape"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w_stem"], ["a"], name="stem", pads=[1, 1, 1, 1],
                         strides=[2, 2]),
        helper.make_node("Conv", ["a", "w_group"], ["b"], name="grouped", pads=[1, 1, 1, 1],
                         group=2),
        helper.make_node("Conv", ["b", "w_dw"], ["c"], name="depthwise", pads=[1, 1, 1, 1],
                         group=32),
        helper.make_node("GlobalAveragePool", ["c"], ["d"], name="pool"),
        helper.make_node("Reshape", ["d", "shape"], ["e"], name="flatten"),
        helper.make_node("Gemm", ["e", "w_fc"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "layers",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1000])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _lower(model, target):
    return lower(merge_group([load_subnet(model).model]), target)


@pytest.fixture(scope="module")
def program():
    return _lower(_layers_model(), load_target("neurosim-22nm"))


def test_standard_conv_lowering(program):
    stem = program.op("s0/stem")
    assert isinstance(stem, MvmOp)
    (matrix,) = stem.weights
    assert (matrix.rows, matrix.cols) == (27, 64)
    # 8-bit weights on 2-bit cells, offset scheme: 64 * 4 = 256 columns -> 2 crossbars
    assert len(matrix.tiles) == 2
    assert stem.vectors_per_image == 16 * 16
    assert stem.macs == 64 * 27 * 256
    assert stem.inputs == ("x",)


def test_grouped_conv_maps_each_group_on_its_own_crossbars(program):
    grouped = program.op("s0/grouped")
    assert isinstance(grouped, MvmOp)
    # 64 input channels in 2 groups: each group's matrix is 32*3*3 = 288 rows x 16 cols
    assert [(w.rows, w.cols) for w in grouped.weights] == [(288, 16), (288, 16)]
    # 288 rows -> 3 row blocks; 16 cols * 4 slices = 64 phys cols -> 1 column block
    assert [len(w.tiles) for w in grouped.weights] == [3, 3]
    assert len({w.id for w in grouped.weights}) == 2
    assert grouped.macs == 32 * 32 * 9 * 256


def test_depthwise_conv_runs_digitally_with_its_macs(program):
    depthwise = program.op("s0/depthwise")
    assert isinstance(depthwise, DigitalOp)
    assert depthwise.ops == depthwise.macs == 32 * 9 * 16 * 16
    assert depthwise.elements == 32 * 16 * 16


def test_gemm_with_transposed_weight(program):
    fc = program.op("s0/fc")
    assert isinstance(fc, MvmOp)
    (matrix,) = fc.weights
    assert (matrix.rows, matrix.cols) == (32, 1000)
    # 1000 * 4 = 4000 columns over 128 -> 32 column blocks (32 logical columns each)
    assert len(matrix.tiles) == 32
    assert fc.vectors_per_image == 1 and fc.macs == 32 * 1000
    assert program.deps["s0/fc"] == ("s0/flatten",)


def test_differential_scheme_doubles_crossbars(program):
    data = load_target("neurosim-22nm").to_dict()
    data["precision"]["signed_scheme"] = "differential"
    differential = _lower(_layers_model(), target_from_dict(data))
    assert len(differential.op("s0/stem").tiles) == 2 * len(program.op("s0/stem").tiles)
    assert len(differential.op("s0/fc").tiles) == 63  # ceil(1000 / 16)


def test_unsupported_operator_is_named():
    model = _layers_model()
    model.graph.node[3].op_type = "GlobalLpPool"
    message = r"unsupported operator GlobalLpPool \(node 's0/pool'\)"
    with pytest.raises(UnsupportedModelError, match=message):
        _lower(model, load_target("neurosim-22nm"))


def test_same_numbers_read_transposed_are_a_different_matrix():
    square = _init("w", (16, 16), 7)
    nodes = [helper.make_node("Gemm", ["x", "w"], ["a"], name="plain"),
             helper.make_node("Gemm", ["a", "w"], ["y"], name="transposed", transB=1)]
    graph = helper.make_graph(
        nodes, "square", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])], [square])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    program = _lower(model, load_target("neurosim-22nm"))
    plain, transposed = program.op("s0/plain"), program.op("s0/transposed")
    # same numbers, other layout: another matrix, with another hash (online mapping
    # must not take one for the other)
    assert plain.weights[0].sha256 != transposed.weights[0].sha256
    assert plain.weights[0].id != transposed.weights[0].id
    assert len(program.weight_matrices()) == 2
