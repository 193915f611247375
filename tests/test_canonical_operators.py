"""Canonicalisation to a fixed point, exporter spellings made one, new operators, --inputs.

Hand-made ONNX graphs, each aimed at one behaviour of issue 17; the torch-built groups
are in ``test_user_models.py``.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from enasa_compiler.cli import main
from enasa_compiler.frontend import load_subnet
from enasa_compiler.passes import CanonicalizePass
from enasa_compiler.pipeline import compile_detailed
from enasa_compiler.targets import compare_with_onnxruntime, execute_plan
from enasa_compiler.validation.validator import validate

RNG = np.random.default_rng(17)


def _tensor(name: str, shape: tuple[int, ...], scale: float = 0.3) -> onnx.TensorProto:
    return numpy_helper.from_array((RNG.standard_normal(shape) * scale).astype(np.float32),
                                   name)


def _model(nodes, inputs, output_shape, initializers, opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _image_input(shape=(1, 4, 8, 8)):
    return [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))]


def _canonical(model: onnx.ModelProto) -> ir.Model:
    subnet = load_subnet(model).model
    CanonicalizePass(fold_batchnorm=False)(subnet)
    return subnet


# ---- fixed point ------------------------------------------------------------------------
def _padding_chain_model() -> onnx.ModelProto:
    """Conv, then a Pad whose pads come from Shape -> Cast -> Sqrt -> Floor -> Cast.

    ``onnx`` shape inference cannot follow Sqrt and Floor, so the Pad's output shape is
    unknown until the chain is folded to a constant and shapes are inferred again: the
    legacy exporter's ZeroPad2d/ReflectionPad2d/chunk chains are of this kind.
    """
    inits = [_tensor("w", (4, 4, 3, 3)),
             numpy_helper.from_array(np.array([2], np.int64), "start"),
             numpy_helper.from_array(np.array([3], np.int64), "end"),
             numpy_helper.from_array(np.array([0, 0], np.int64), "zeros")]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Slice", ["shape", "start", "end"], ["height"]),
        helper.make_node("Cast", ["height"], ["height_f"], to=TensorProto.FLOAT),
        helper.make_node("Sqrt", ["height_f"], ["root"]),
        helper.make_node("Floor", ["root"], ["pad_f"]),
        helper.make_node("Cast", ["pad_f"], ["pad"], to=TensorProto.INT64),
        helper.make_node("Concat", ["zeros", "pad", "pad", "zeros", "pad", "pad"], ["pads"],
                         axis=0),
        helper.make_node("Pad", ["c", "pads"], ["padded"], name="pad", mode="reflect"),
        helper.make_node("Relu", ["padded"], ["y"], name="relu"),
    ]
    return _model(nodes, _image_input(), ["n", "c", "h", "w"], inits)


def test_a_folded_shape_chain_gets_static_shapes_and_compiles(tmp_path):
    model = _padding_chain_model()
    canonical = _canonical(model)
    assert [n.op_type for n in canonical.graph] == ["Conv", "Pad", "Relu"]
    assert canonical.graph.outputs[0].shape == ir.Shape([1, 4, 12, 12])  # sqrt(8) -> 2
    path = tmp_path / "pad.onnx"
    onnx.save(model, path)
    result = compile_detailed([path], "neurosim-22nm")
    assert validate(result.plan, models=[path]) == []
    images = RNG.standard_normal((2, 4, 8, 8)).astype(np.float32)
    run = execute_plan(result.plan, result.group_model, images)
    assert max(compare_with_onnxruntime(run, [path], images)) < 1e-5


# ---- one spelling for both exporters ------------------------------------------------------
def _conv_model(bias: np.ndarray | None, **attributes) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), "w")]
    inputs = ["x", "w"]
    if bias is not None:
        inits.append(numpy_helper.from_array(bias, "b"))
        inputs.append("b")
    nodes = [helper.make_node("Conv", inputs, ["y"], name="conv", **attributes)]
    return _model(nodes, _image_input(), [1, 4, 8, 8], inits)


def _signature(model: ir.Model) -> list[tuple[str, tuple[str, ...], int]]:
    return [(n.op_type, tuple(sorted(n.attributes)), len(n.inputs)) for n in model.graph]


def test_an_all_zero_bias_and_default_attributes_are_dropped():
    bare = _canonical(_conv_model(None))
    zero = _canonical(_conv_model(np.zeros(4, np.float32), auto_pad="NOTSET", group=1))
    assert _signature(zero) == _signature(bare) == [("Conv", (), 2)]
    kept = _canonical(_conv_model(np.full(4, 1e-30, np.float32)))
    assert _signature(kept) == [("Conv", (), 3)]  # a tiny bias is still a bias


def test_spatial_reduce_mean_is_a_global_pool_and_flattening_reshape_a_flatten():
    axes = numpy_helper.from_array(np.array([2, 3], np.int64), "axes")
    shape = numpy_helper.from_array(np.array([1, 4], np.int64), "shape")
    dynamo = _model([
        helper.make_node("ReduceMean", ["x", "axes"], ["m"], name="mean", keepdims=1),
        helper.make_node("Reshape", ["m", "shape"], ["y"], name="view", allowzero=1),
    ], _image_input(), [1, 4], [axes, shape], opset=18)
    legacy = _model([
        helper.make_node("GlobalAveragePool", ["x"], ["m"], name="pool"),
        helper.make_node("Flatten", ["m"], ["y"], name="flatten", axis=1),
    ], _image_input(), [1, 4], [], opset=18)
    assert _signature(_canonical(dynamo)) == _signature(_canonical(legacy)) == [
        ("GlobalAveragePool", (), 1), ("Flatten", (), 1)]
    kept = _model([helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=0)],
                  _image_input(), [1, 4], [axes], opset=18)
    assert [n.op_type for n in _canonical(kept).graph] == ["ReduceMean"]


# ---- ConvTranspose on crossbars ------------------------------------------------------------
@pytest.mark.parametrize("attributes", [
    {"strides": [2, 2]},
    {"strides": [2, 2], "pads": [1, 0, 1, 1], "output_padding": [1, 1], "dilations": [2, 1]},
    {"group": 2, "strides": [1, 2], "pads": [0, 1, 0, 1]},
    {"group": 4},  # depthwise: digital
], ids=["stride", "pads-output-padding-dilation", "grouped", "depthwise"])
def test_conv_transpose_runs_through_its_tiles_like_onnxruntime(attributes, tmp_path):
    groups = attributes.get("group", 1)
    out_per_group = 1 if groups == 4 else 6 // groups
    inits = [_tensor("w", (4, out_per_group, 3, 3)), _tensor("b", (out_per_group * groups,))]
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], name="up", **attributes)
    model = _model([node], _image_input((1, 4, 5, 5)), None, inits)
    model = onnx.shape_inference.infer_shapes(model)
    path = tmp_path / "up.onnx"
    onnx.save(model, path)
    result = compile_detailed([path], "neurosim-22nm")
    assert validate(result.plan, models=[path]) == []
    (op,) = result.plan.operators
    if groups == 4:
        assert not op.weights
    else:
        weight = {w.id: w for w in result.plan.weights}[op.weights[0]]
        assert (weight.rows, weight.cols) == (4 // groups, out_per_group * 9)
        assert op.vectors_per_image == 25
    images = RNG.standard_normal((3, 4, 5, 5)).astype(np.float32)
    run = execute_plan(result.plan, result.group_model, images)
    assert max(compare_with_onnxruntime(run, [path], images)) < 1e-5


# ---- --inputs for any graph input, --atol/--rtol -----------------------------------------
def _mlp_file(tmp_path):
    inits = [_tensor("w", (12, 8)), _tensor("b", (8,)), _tensor("w2", (3, 8)),
             _tensor("b2", (3,))]
    nodes = [helper.make_node("MatMul", ["tokens", "w"], ["h"], name="mm"),
             helper.make_node("Add", ["h", "b"], ["hb"], name="bias"),
             helper.make_node("Relu", ["hb"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("tokens", TensorProto.FLOAT, [1, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    path = tmp_path / "mlp.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_simulate_execute_reads_an_array_named_like_the_input(tmp_path, capsys):
    model = _mlp_file(tmp_path)
    plan = tmp_path / "plan.json"
    assert main(["compile", str(model), "-o", str(plan), "-q"]) == 0
    data = tmp_path / "in.npz"
    np.savez(data, tokens=RNG.standard_normal((6, 12)).astype(np.float32))
    base = ["simulate", str(plan), "--execute", "--models", str(model), "--inputs", str(data)]
    assert main([*base, "--atol", "1e-4", "--json"]) == 0
    report = __import__("json").loads(capsys.readouterr().out)
    assert report["images"] == 6 and report["passed"] is True
    assert 0 < report["max_abs_error"] < 1e-4
    # Float64 tiles against float32 onnxruntime are not bit-equal: zero tolerance fails.
    assert main([*base, "--atol", "0", "--rtol", "0", "-q"]) == 1
    np.savez(data, tokens=RNG.standard_normal((6, 12)))  # float64: not the input's type
    assert main([*base, "-q"]) == 2
    assert "must be float32" in capsys.readouterr().err


def test_docs_operator_table_is_the_code_s():
    from pathlib import Path

    from enasa_compiler.passes.operators import support_table_markdown

    text = (Path(__file__).resolve().parents[1] / "docs" / "operators.md").read_text()
    start = text.index("<!-- operators table: generated, do not edit by hand -->\n")
    end = text.index("\n<!-- end of operators table -->")
    assert text[start:end].split("\n", 1)[1] == support_table_markdown()
