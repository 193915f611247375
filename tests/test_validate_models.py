"""``validate(plan, models=...)`` checks a plan against its ONNX files by its own route.

The validator walks each subnet's file on its own (no merging, deduplication, BN folding
pass or lowering of the compiler's) and pairs every node that does work with a plan
operator. So a bug in the compiler's graph passes is caught, not reproduced: the
acceptance tests make deduplication merge operators that differ only in their weights,
show that the compiler's own passes (the validator's old route) agree with the broken
plan, and that the validator does not.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import sys
import tomllib
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from enasa_compiler.ir import MvmOp
from enasa_compiler.pipeline import compile_detailed
from enasa_compiler.plan import Plan
from enasa_compiler.targets.target import target_from_dict
from enasa_compiler.validation.validator import MISSING_OP, MODELS, Violation, validate

ROOT = Path(__file__).resolve().parent.parent
DEDUP = importlib.import_module("enasa_compiler.passes.dedup")
MAC_OP_TYPES = ("Conv", "Gemm", "MatMul")


def has(violations: list[Violation], kind: str, *words: str) -> bool:
    """Whether some violation of ``kind`` names every one of ``words``."""
    return any(v.kind == kind and all(w in v.message for w in words) for v in violations)


# ---- a compiler bug: deduplication blind to weights ----------------------------------
def _weight_blind(real_key: Callable[[ir.Node], Hashable | None]) -> Callable[
        [ir.Node], Hashable | None]:
    """Wrap dedup's operator key so Conv/Gemm/MatMul compare weights by shape only."""
    def key(node: ir.Node) -> Hashable | None:
        found = real_key(node)
        if found is None or node.op_type not in MAC_OP_TYPES:
            return found
        inputs = tuple(node.inputs)
        assert isinstance(found, tuple) and inputs in found, "dedup's key layout changed"
        blind = (inputs[0], *(("weight", v.dtype, str(v.shape))
                              if v is not None and v.const_value is not None else v
                              for v in inputs[1:]))
        return tuple(blind if part == inputs else part for part in found)
    return key


def _old_route_differences(plan: Plan, files: list[Path]) -> list[str]:
    """Compare the plan with operators re-derived by the compiler's own passes.

    This is what ``validate(models=...)`` did before it had a route of its own: it
    reproduces whatever the passes get wrong.
    """
    from enasa_compiler.frontend import load_group
    from enasa_compiler.passes.lower import lower
    from enasa_compiler.pipeline import build_group_model

    group, _ = build_group_model(load_group(files, batch=plan.batch))
    program = lower(group, target_from_dict(plan.target))
    planned = {op.id: op for op in plan.operators}
    sha = {w.id: w.sha256 for w in plan.weights}
    differences = []
    for op in program.ops:
        mine = planned.pop(op.id, None)
        weights = [w.sha256 for w in op.weights] if isinstance(op, MvmOp) else []
        if mine is None or mine.subnets != op.subnets or [
                sha[w] for w in mine.weights] != weights * mine.copies:
            differences.append(op.id)
    return differences + list(planned)


def _conv_relu(path: Path, seed: int) -> Path:
    weight = numpy_helper.from_array(
        np.random.default_rng(seed).standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"], name="act")]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_operators_merged_despite_other_weights_are_caught(monkeypatch, tmp_path):
    files = [_conv_relu(tmp_path / "a.onnx", seed=0), _conv_relu(tmp_path / "b.onnx", seed=1)]
    monkeypatch.setattr(DEDUP, "_operator_key", _weight_blind(DEDUP._operator_key))
    plan = compile_detailed(files).plan
    # the bug: one conv, with subnet 0's weights, now serves subnet 1 too
    assert [op.subnets for op in plan.operators if op.op_type == "Conv"] == [(0, 1)]
    assert validate(plan) == []  # the plan is self-consistent
    assert _old_route_differences(plan, files) == []  # the compiler's passes agree with it
    violations = validate(plan, models=files)
    assert len(violations) == 1
    assert has(violations, MODELS, "operator 's0/conv' (Conv) uses other weights than node "
                                   "'conv' of subnet 1")


def test_operators_merged_despite_other_weights_are_caught_in_the_demo_group(
        monkeypatch, group4_files):
    monkeypatch.setattr(DEDUP, "_operator_key", _weight_blind(DEDUP._operator_key))
    plan = compile_detailed(group4_files).plan
    assert validate(plan) == []
    assert _old_route_differences(plan, group4_files) == []
    violations = validate(plan, models=group4_files)
    # the layer after the shared prefix: subnets 1 and 3 chose blocks whose first 1x1
    # conv differs only in its weights, and each subnet lost one of two convs that read
    # the same value
    assert has(violations, MODELS, "uses other weights than node", "of subnet 3")
    assert has(violations, MISSING_OP, "subnet 0 ('subnet_00'): node", "(Conv) of the model "
                                                                       "is not in the plan")
    assert {v.kind for v in violations} == {MODELS, MISSING_OP}


def test_an_operator_served_by_another_subnets_operator_is_caught(group4_result,
                                                                   group4_files):
    data = group4_result.plan.to_dict()
    ops = data["operators"]
    sha = {w["id"]: w["sha256"] for w in data["weights"]}
    victim, stand_in = next(
        (a, b) for a in ops for b in ops
        if a["kind"] == b["kind"] == "mvm" and len(a["subnets"]) == 1
        and not set(a["subnets"]) & set(b["subnets"]) and a["op_type"] == b["op_type"]
        and a["inputs"] == b["inputs"] and a["macs"] == b["macs"]
        and [sha[w] for w in a["weights"]] != [sha[w] for w in b["weights"]])
    # drop the victim; its consumers read the stand-in's result, which serves its subnet
    ops.remove(victim)
    renamed = dict(zip(victim["outputs"], stand_in["outputs"], strict=True))
    for op in ops:
        op["inputs"] = [renamed.get(v, v) for v in op["inputs"]]
        op["deps"] = [stand_in["id"] if d == victim["id"] else d for d in op["deps"]]
    stand_in["subnets"] = sorted(stand_in["subnets"] + victim["subnets"])
    data["schedule"]["compute"] = [e for e in data["schedule"]["compute"]
                                   if e["op"] != victim["id"]]
    violations = validate(data, models=group4_files)
    subnet = victim["subnets"][0]
    assert has(violations, MODELS, f"operator '{stand_in['id']}'", "uses other weights",
               f"of subnet {subnet}")
    assert not has(violations, MISSING_OP, "of the model is not in the plan")


# ---- valid plans ---------------------------------------------------------------------
@pytest.mark.parametrize("options", [
    {}, {"mode": "dynamic"}, {"duplicate": "auto"}, {"duplicate": 3},
    {"dedup_operators": False}, {"batch": 2},
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_compiled_demo_plans_validate_with_their_models(group4_files, group4_result,
                                                        options):
    plan = compile_detailed(group4_files, **options).plan if options else group4_result.plan
    assert validate(plan, models=group4_files) == []


def _tensor(rng: np.random.Generator, name: str, shape: tuple[int, ...],
            low: float | None = None) -> onnx.TensorProto:
    values = (rng.standard_normal(shape) if low is None else rng.uniform(low, 1.5, shape))
    return numpy_helper.from_array(values.astype(np.float32), name)


def _batch_norm(rng: np.random.Generator, name: str, source: str, channels: int) -> tuple[
        onnx.NodeProto, list[onnx.TensorProto]]:
    params = [_tensor(rng, f"{name}_scale", (channels,), 0.5),
              _tensor(rng, f"{name}_bias", (channels,)),
              _tensor(rng, f"{name}_mean", (channels,)),
              _tensor(rng, f"{name}_var", (channels,), 0.5)]
    node = helper.make_node("BatchNormalization", [source, *(p.name for p in params)],
                            [name], name=name)
    return node, params


def _model(nodes: list[onnx.NodeProto], weights: list[onnx.TensorProto],
           output_shape: list[int]) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _convnet(seed: int) -> onnx.ModelProto:
    """Conv+BN, depthwise conv+BN, grouped conv, Identity, pooling, Gemm^T, Dropout."""
    rng = np.random.default_rng(seed)
    bn1, bn1_params = _batch_norm(rng, "bn1", "c1", 8)
    bn2, bn2_params = _batch_norm(rng, "bn2", "c2", 8)
    weights = [_tensor(rng, "w1", (8, 4, 3, 3)), _tensor(rng, "dw", (8, 1, 3, 3)),
               _tensor(rng, "gw", (8, 4, 1, 1)), _tensor(rng, "fc", (10, 8)),
               _tensor(rng, "fcb", (10,)), *bn1_params, *bn2_params]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]), bn1,
        helper.make_node("Relu", ["bn1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "dw"], ["c2"], name="dw", pads=[1, 1, 1, 1], group=8),
        bn2,
        helper.make_node("Conv", ["bn2", "gw"], ["c3"], name="grouped", group=2),
        helper.make_node("Identity", ["c3"], ["i3"], name="same"),
        helper.make_node("MaxPool", ["i3"], ["p3"], name="pool", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["p3"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "fc", "fcb"], ["z"], name="fc", transB=1),
        helper.make_node("Dropout", ["z"], ["y"], name="drop"),
    ]
    return _model(nodes, weights, [1, 10])


def _matmuls(seed: int) -> onnx.ModelProto:
    """A shape computed from Shape/Gather/Concat, a weight computed by a Transpose,
    and a MatMul of two activations (digital)."""
    rng = np.random.default_rng(seed)
    weights = [_tensor(rng, "w", (256, 16)), _tensor(rng, "wt", (4, 4)),
               numpy_helper.from_array(np.array([0], np.int64), "zero"),
               numpy_helper.from_array(np.array([4, 4], np.int64), "four_four"),
               numpy_helper.from_array(np.array([1, 16], np.int64), "flat_shape")]
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"], name="shape"),
        helper.make_node("Gather", ["shape", "zero"], ["n"], name="batch", axis=0),
        helper.make_node("Concat", ["n", "four_four"], ["square_shape"], name="cat", axis=0),
        helper.make_node("Flatten", ["x"], ["xf"], name="flatten"),
        helper.make_node("MatMul", ["xf", "w"], ["h"], name="mm"),
        helper.make_node("Relu", ["h"], ["hr"], name="act"),
        helper.make_node("Reshape", ["hr", "square_shape"], ["a"], name="square"),
        helper.make_node("Transpose", ["wt"], ["wtt"], name="weight_t", perm=[1, 0]),
        helper.make_node("MatMul", ["a", "wtt"], ["b"], name="mm_weight"),
        helper.make_node("Transpose", ["a"], ["at"], name="a_t", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["b", "at"], ["c"], name="mm_activations"),
        helper.make_node("Reshape", ["c", "flat_shape"], ["y"], name="out"),
    ]
    return _model(nodes, weights, [1, 16])


def _twice(seed: int) -> onnx.ModelProto:
    """One conv computed twice on the same input: the compiler may keep one."""
    weights = [_tensor(np.random.default_rng(seed), "w", (4, 4, 1, 1))]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c1"], name="c1"),
             helper.make_node("Conv", ["x", "w"], ["c2"], name="c2"),
             helper.make_node("Add", ["c1", "c2"], ["y"], name="add")]
    return _model(nodes, weights, [1, 4, 8, 8])


GROUPS: dict[str, Callable[[], list[onnx.ModelProto]]] = {
    "convnet": lambda: [_convnet(0), _convnet(1)],
    "identical-subnets": lambda: [_convnet(0), _convnet(0)],
    "matmuls": lambda: [_matmuls(0), _matmuls(1)],
    "repeated-node": lambda: [_twice(0), _twice(0)],
}


@pytest.mark.parametrize("dedup_operators", [True, False], ids=["dedup", "no-dedup"])
@pytest.mark.parametrize("group", list(GROUPS))
def test_plans_of_every_kind_of_operator_validate_with_their_models(group, dedup_operators):
    models = GROUPS[group]()
    plan = compile_detailed(models, dedup_operators=dedup_operators).plan
    assert validate(plan, models=models) == []


def test_batch_norm_folded_in_one_plan_and_kept_in_another_both_validate():
    models = [_convnet(0), _convnet(0)]
    recalibrated = copy.deepcopy(models[1])
    for tensor in recalibrated.graph.initializer:
        if tensor.name.endswith("_var"):
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * 1.3,
                                                    tensor.name))
    # same conv weights, other BN statistics: the shared conv keeps its raw weights
    # and BN stays a digital operator in each subnet
    kept = compile_detailed([models[0], recalibrated]).plan
    assert sum(op.op_type == "BatchNormalization" for op in kept.operators) == 4
    assert validate(kept, models=[models[0], recalibrated]) == []
    folded = compile_detailed(models).plan
    assert not [op for op in folded.operators if op.op_type == "BatchNormalization"]
    assert validate(folded, models=models) == []


# ---- corrupted plans -----------------------------------------------------------------
def _first(data: dict[str, Any], test: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    return next(op for op in data["operators"] if test(op))


def _claim_other_macs(data: dict[str, Any]) -> list[str]:
    op = _first(data, lambda o: o["kind"] == "mvm")
    op["macs"] += 1
    return [f"operator '{op['id']}' (Conv) claims macs {op['macs']}", "subnets 0,1,2,3"]


def _use_another_matrix(data: dict[str, Any]) -> list[str]:
    shapes: dict[tuple[int, int], list[str]] = {}
    for w in data["weights"]:
        shapes.setdefault((w["rows"], w["cols"]), []).append(w["id"])
    pair = next(ids for ids in shapes.values() if len(ids) > 1)
    op = _first(data, lambda o: o["weights"] == [pair[0]])
    op["weights"] = [pair[1]]
    return [f"operator '{op['id']}'", "uses other weights than node"]


def _forget_a_dependency(data: dict[str, Any]) -> list[str]:
    op = _first(data, lambda o: len(o["deps"]) == 1 and o["kind"] == "digital")
    producer = op["deps"][0]
    op["deps"] = []
    return [f"operator '{op['id']}' reads", f"from '{producer}'", "does not depend on it"]


def _drop_a_subnet(data: dict[str, Any]) -> list[str]:
    op = _first(data, lambda o: len(o["subnets"]) == 4)
    op["subnets"] = [0, 1, 2]
    return [f"operator '{op['id']}' serves subnets 0,1,2 in the plan but 0,1,2,3"]


def _swap_subnet_outputs(data: dict[str, Any]) -> list[str]:
    first, second = data["subnets"][0], data["subnets"][1]
    first["outputs"], second["outputs"] = second["outputs"], first["outputs"]
    return ["subnet 0 ('subnet_00') output 0 is", "its model computes it as"]


@pytest.mark.parametrize("corrupt", [_claim_other_macs, _use_another_matrix,
                                     _forget_a_dependency, _drop_a_subnet,
                                     _swap_subnet_outputs], ids=lambda f: f.__name__[1:])
def test_plans_that_disagree_with_their_models_are_caught(group4_result, group4_files,
                                                          corrupt):
    data = group4_result.plan.to_dict()
    words = corrupt(data)
    assert has(validate(data, models=group4_files), MODELS, *words)


# ---- the contract --------------------------------------------------------------------
def test_the_validator_may_not_import_the_passes_that_made_the_plan():
    contract = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["enasa"]
    rules = [r for r in contract["imports"]["forbidden"]
             if r["source"] == ["enasa_compiler.validation"]]
    assert len(rules) == 1 and rules[0]["why"]
    assert set(rules[0]["targets"]) == {
        "enasa_compiler.pipeline", "enasa_compiler.passes.canonicalize",
        "enasa_compiler.passes.merge_group", "enasa_compiler.passes.dedup",
        "enasa_compiler.passes.fold_batchnorm", "enasa_compiler.passes.weight_share",
        "enasa_compiler.passes.lower", "enasa_compiler.passes.mapping",
        "enasa_compiler.passes.duplicate", "enasa_compiler.passes.operators"}
    spec = importlib.util.spec_from_file_location("check_layers", ROOT / ".ci/check_layers.py")
    assert spec is not None and spec.loader is not None
    checker = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = checker
    spec.loader.exec_module(checker)
    assert [p for p in checker.check(ROOT) if "enasa_compiler.validation" in p] == []
