"""The functional executor: a plan computes what its ONNX models compute, through its tiles."""

from __future__ import annotations

import copy
import dataclasses
import time

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from enasa_compiler.errors import InputError
from enasa_compiler.ir import SignedScheme
from enasa_compiler.pipeline import compile_detailed
from enasa_compiler.plan import ComputeEvent, Placement, Plan
from enasa_compiler.targets import (
    ExecutionError,
    accuracy,
    compare_with_onnxruntime,
    execute_plan,
    load_target,
    onnxruntime_outputs,
    target_from_dict,
    top1_agreement,
)
from enasa_compiler.targets._crossbar_math import CrossbarPrecision, integer_mvm


# ---- a hand-made model spanning several row and column tiles -------------------------
def _hand_model() -> onnx.ModelProto:
    """Conv 34->50 (306 rows: 3 row tiles; 50 cols: 2 column tiles), ReLU, Gemm 200->1000."""
    rng = np.random.default_rng(0)

    def init(name, shape, scale):
        data = (rng.standard_normal(shape) * scale).astype(np.float32)
        return numpy_helper.from_array(data, name)

    inits = [
        init("w_conv", (50, 34, 3, 3), 1 / np.sqrt(306)), init("b_conv", (50,), 0.1),
        init("w_fc", (1000, 200), 1 / np.sqrt(200)), init("b_fc", (1000,), 0.1),
        # A Reshape to [1, -1] fixes the batch: the executor must run images one by one.
        numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "shape"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w_conv", "b_conv"], ["a"], name="conv",
                         pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["b"], name="relu"),
        helper.make_node("Reshape", ["b", "shape"], ["c"], name="flatten"),
        helper.make_node("Gemm", ["c", "w_fc", "b_fc"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "hand", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 34, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1000])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _target(**precision):
    data = load_target("neurosim-22nm").to_dict()
    data["precision"].update(precision)
    return target_from_dict(data)


@pytest.fixture(scope="module")
def hand():
    model = _hand_model()
    return model, compile_detailed([model], "neurosim-22nm")


@pytest.fixture(scope="module")
def hand_images():
    return np.random.default_rng(1).standard_normal((4, 34, 2, 2)).astype(np.float32)


@pytest.fixture(scope="module")
def hand_ideal(hand, hand_images):
    _, result = hand
    return execute_plan(result.plan, result.group_model, hand_images)


def _relative_error(result, reference) -> float:
    got, want = result.logits(0), reference.logits(0)
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def _replace_tile(plan: Plan, tile_id: str, **changes) -> Plan:
    weights = tuple(
        dataclasses.replace(w, tiles=tuple(dataclasses.replace(t, **changes)
                                           if t.id == tile_id else t for t in w.tiles))
        for w in plan.weights)
    return dataclasses.replace(plan, weights=weights)


def _map_placements(plan: Plan, op_id: str, change) -> Plan:
    compute = tuple(
        dataclasses.replace(e, placements=change(e.placements)) if e.op == op_id else e
        for e in plan.compute)
    return dataclasses.replace(plan, compute=compute)


# ---- ideal mode: the plan computes the models ----------------------------------------
def _as_float64(model: ir.Model) -> onnx.ModelProto:
    proto = ir.serde.serialize_model(model)
    for init in proto.graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            array = numpy_helper.to_array(init).astype(np.float64)
            init.CopyFrom(numpy_helper.from_array(array, init.name))
    for info in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]:
        if info.type.tensor_type.elem_type == TensorProto.FLOAT:
            info.type.tensor_type.elem_type = TensorProto.DOUBLE
    return proto


def _subnet_as_float64(path) -> onnx.ModelProto:
    proto = onnx.load(path)
    for init in proto.graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            array = numpy_helper.to_array(init).astype(np.float64)
            init.CopyFrom(numpy_helper.from_array(array, init.name))
    for node in proto.graph.node:
        for attr in node.attribute:
            if node.op_type == "Constant" and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(numpy_helper.from_array(
                    numpy_helper.to_array(attr.t).astype(np.float64)))
    for info in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]:
        if info.type.tensor_type.elem_type == TensorProto.FLOAT:
            info.type.tensor_type.elem_type = TensorProto.DOUBLE
    return proto


def test_ideal_group_matches_onnxruntime_per_subnet(group4_result, group4_files):
    plan, group = group4_result.plan, group4_result.group_model
    images = np.random.default_rng(0).standard_normal((4, *plan.input_shape[1:]))
    images = images.astype(np.float32)
    result = execute_plan(plan, group, images)
    errors = compare_with_onnxruntime(result, group4_files, images)
    # onnxruntime computes in float32: its own run of the group model already differs
    # from the subnet files by ~1e-4 on these logits (magnitude up to ~25).
    ort_group = onnxruntime_outputs(group, images)
    ort_gaps = [
        float(np.max(np.abs(ort_group[s.outputs[0]]
                            - next(iter(onnxruntime_outputs(f, images).values())))))
        for s, f in zip(plan.subnets, group4_files, strict=True)]
    print("ideal vs onnxruntime (subnet files), max abs error per subnet:", errors)
    print("onnxruntime group model vs subnet files:", ort_gaps)
    for error, gap in zip(errors, ort_gaps, strict=True):
        assert error <= max(1e-4, 2 * gap)


def test_ideal_group_matches_float64_subnet_files(group4_result, group4_files):
    plan = group4_result.plan
    images = np.random.default_rng(5).standard_normal((2, *plan.input_shape[1:]))
    images = images.astype(np.float32)
    result = execute_plan(plan, group4_result.group_model, images)
    errors = []
    for outputs, path in zip(result.outputs, group4_files, strict=True):
        reference = ReferenceEvaluator(_subnet_as_float64(path))
        feed = reference.input_names[0]
        expected = np.concatenate([
            reference.run(None, {feed: images[k:k + 1].astype(np.float64)})[0]
            for k in range(images.shape[0])])
        errors.append(float(np.max(np.abs(next(iter(outputs.values())) - expected))))
    print("ideal vs float64 evaluation of the subnet files:", errors)
    # What is left is the group model's float32 BN folding, not the executor.
    assert max(errors) < 1e-4


def test_ideal_group_matches_float64_reference_exactly(group4_result):
    plan, group = group4_result.plan, group4_result.group_model
    images = np.random.default_rng(2).standard_normal((2, *plan.input_shape[1:]))
    images = images.astype(np.float32).astype(np.float64)  # the model's input is float32
    result = execute_plan(plan, group, images)
    reference = ReferenceEvaluator(_as_float64(group))
    for k in range(images.shape[0]):
        expected = dict(zip(reference.output_names,
                            reference.run(None, {reference.input_names[0]: images[k:k + 1]}),
                            strict=True))
        for outputs in result.outputs:
            for name, value in outputs.items():
                np.testing.assert_allclose(value[k:k + 1], expected[name], rtol=0, atol=1e-9)


def test_ideal_group_is_fast(group4_result):
    plan = group4_result.plan
    images = np.random.default_rng(3).standard_normal((8, *plan.input_shape[1:]))
    started = time.perf_counter()
    execute_plan(plan, group4_result.group_model, images)
    assert time.perf_counter() - started < 10.0


def test_ideal_runs_images_in_chunks_when_the_model_fixes_its_batch(hand, hand_images,
                                                                    hand_ideal):
    model, result = hand
    assert result.plan.batch == 1 and hand_images.shape[0] == 4
    assert max(compare_with_onnxruntime(hand_ideal, [model], hand_images)) < 1e-5


def test_dynamic_plan_reprograms_and_still_computes_the_model(hand_images):
    model = _hand_model()
    data = load_target("neurosim-22nm").to_dict()
    data["chip"]["crossbars"] = 66  # the Gemm's 64 tiles evict the conv's 6
    result = compile_detailed([model], target_from_dict(data))
    assert result.plan.mode == "dynamic"
    executed = execute_plan(result.plan, result.group_model, hand_images)
    assert max(compare_with_onnxruntime(executed, [model], hand_images)) < 1e-5


# ---- the executor goes through the plan's tiling --------------------------------------
def test_hand_model_spans_row_and_column_tiles(hand):
    _, result = hand
    conv = result.plan.weights[0]
    assert (conv.rows, conv.cols) == (306, 50)
    assert {t.row_start for t in conv.tiles} == {0, 128, 256}
    assert {t.col_start for t in conv.tiles} == {0, 32}


def test_a_tile_row_range_change_changes_the_output(hand, hand_images, hand_ideal):
    _, result = hand
    plan = _replace_tile(result.plan, "w0.t0", row_stop=120, phys_rows=120)
    changed = execute_plan(plan, result.group_model, hand_images)
    assert not np.allclose(changed.logits(0), hand_ideal.logits(0))


def test_a_placement_on_the_wrong_crossbar_raises(hand, hand_images):
    _, result = hand
    conv_id = result.plan.weights[0].tiles[0].id

    def swap_first_two(placements):
        first, second, *rest = placements
        return (Placement(first.tile, second.crossbar), Placement(second.tile, first.crossbar),
                *rest)

    plan = _map_placements(result.plan, "s0/conv", swap_first_two)
    with pytest.raises(ExecutionError, match=f"reads tile '{conv_id}'"):
        execute_plan(plan, result.group_model, hand_images)


def test_a_missing_placement_raises(hand, hand_images):
    _, result = hand
    plan = _map_placements(result.plan, "s0/conv", lambda placements: placements[1:])
    with pytest.raises(ExecutionError, match="no placement"):
        execute_plan(plan, result.group_model, hand_images)


def _swap_crossbars(plan: Plan, a: int, b: int) -> Plan:
    def other(crossbar):
        return {a: b, b: a}.get(crossbar, crossbar)

    program = tuple(dataclasses.replace(e, crossbar=other(e.crossbar)) for e in plan.program)
    compute = tuple(ComputeEvent(e.op, e.start_ns, e.end_ns,
                                 tuple(Placement(p.tile, other(p.crossbar))
                                       for p in e.placements), e.unit)
                    for e in plan.compute)
    return dataclasses.replace(plan, program=program, compute=compute)


def test_results_follow_the_crossbars_the_plan_names(hand, hand_images, hand_ideal):
    _, result = hand
    placements = next(e for e in result.plan.compute if e.op == "s0/conv").placements
    swapped = _swap_crossbars(result.plan, placements[0].crossbar, placements[1].crossbar)
    # Moving tiles consistently between crossbars computes the same in ideal mode...
    moved = execute_plan(swapped, result.group_model, hand_images)
    np.testing.assert_array_equal(moved.logits(0), hand_ideal.logits(0))
    # ...but stuck cells belong to crossbars, so with faults the placement shows.
    options = {"mode": "quantized", "stuck_at_fraction": 0.05, "seed": 3}
    before = execute_plan(result.plan, result.group_model, hand_images, **options)
    after = execute_plan(swapped, result.group_model, hand_images, **options)
    assert not np.array_equal(before.logits(0), after.logits(0))


def test_tiles_of_the_initial_state_need_no_programming(hand, hand_images, hand_ideal):
    _, result = hand
    first = result.plan.program[0]
    plan = dataclasses.replace(result.plan, program=result.plan.program[1:],
                               initial=(Placement(first.tile, first.crossbar),))
    executed = execute_plan(plan, result.group_model, hand_images)
    np.testing.assert_array_equal(executed.logits(0), hand_ideal.logits(0))
    unprogrammed = dataclasses.replace(result.plan, program=result.plan.program[1:])
    with pytest.raises(ExecutionError, match="which holds nothing"):
        execute_plan(unprogrammed, result.group_model, hand_images)


# ---- quantized mode ----------------------------------------------------------------
def test_group_quantized_top1_agreement_is_reported(group4_result, group4_files):
    plan = group4_result.plan
    images = np.random.default_rng(4).standard_normal((8, *plan.input_shape[1:]))
    reference = [onnxruntime_outputs(f, images) for f in group4_files]
    started = time.perf_counter()
    result = execute_plan(plan, group4_result.group_model, images, mode="quantized")
    seconds = time.perf_counter() - started
    agreement = top1_agreement(result, reference)
    print(f"neurosim-22nm quantized: top-1 agreement {agreement}, {seconds:.1f} s, "
          f"ADC clipping {result.adc_clip_fraction:.2e}")
    assert len(agreement) == 4 and all(0.0 <= a <= 1.0 for a in agreement)
    assert result.adc_conversions > 0
    assert seconds < 30.0


def test_high_resolution_adc_is_close_to_float(hand, hand_images, hand_ideal):
    _, result = hand
    quantized = execute_plan(result.plan, result.group_model, hand_images, mode="quantized",
                             target=_target(adc_bits=12))
    # The 8-bit floor: a Gaussian input quantized to 7 magnitude bits alone costs ~1%.
    assert _relative_error(quantized, hand_ideal) < 0.02


def test_error_falls_as_adc_bits_rise(hand, hand_images, hand_ideal):
    _, result = hand
    errors = [_relative_error(execute_plan(result.plan, result.group_model, hand_images,
                                           mode="quantized", target=_target(adc_bits=bits)),
                              hand_ideal)
              for bits in (5, 8, 12)]
    assert errors[0] > errors[1] > errors[2]


def test_full_range_adc_is_worse_than_calibrated_at_low_resolution(hand, hand_images,
                                                                   hand_ideal):
    _, result = hand
    errors = {policy: _relative_error(
        execute_plan(result.plan, result.group_model, hand_images, mode="quantized",
                     adc_range=policy), hand_ideal) for policy in ("full", "calibrated")}
    assert errors["full"] > errors["calibrated"]


def test_differential_scheme_is_close_to_float(hand_images, hand_ideal):
    model = _hand_model()
    target = _target(adc_bits=12, signed_scheme="differential")
    result = compile_detailed([model], target)
    assert result.plan.weights[0].columns_per_weight == 8
    quantized = execute_plan(result.plan, result.group_model, hand_images, mode="quantized")
    assert _relative_error(quantized, hand_ideal) < 0.02


def test_stuck_at_faults_increase_error(hand, hand_images, hand_ideal):
    _, result = hand
    target = _target(adc_bits=12)
    clean, faulty = (
        _relative_error(execute_plan(result.plan, result.group_model, hand_images,
                                     mode="quantized", target=target, stuck_at_fraction=f),
                        hand_ideal)
        for f in (0.0, 0.1))
    assert faulty > clean


def test_nonideal_runs_are_deterministic_for_a_seed(hand, hand_images):
    _, result = hand
    options = {"mode": "quantized", "variation_sigma": 0.05, "stuck_at_fraction": 0.02}
    first, again, other = (
        execute_plan(result.plan, result.group_model, hand_images, seed=seed, **options)
        for seed in (7, 7, 8))
    np.testing.assert_array_equal(first.logits(0), again.logits(0))
    assert not np.array_equal(first.logits(0), other.logits(0))


_PRECISIONS = st.builds(
    lambda w_bits, cell_bits, a_bits, dac, scheme: CrossbarPrecision(
        w_bits=w_bits, a_bits=a_bits, dac_bits=min(dac, a_bits), cell_bits=cell_bits,
        adc_bits=None, signed_scheme=scheme),
    st.integers(2, 8), st.integers(1, 4), st.integers(2, 8), st.integers(1, 4),
    st.sampled_from(list(SignedScheme)))


@settings(max_examples=30, deadline=None)
@given(precision=_PRECISIONS, rows=st.integers(1, 140), cols=st.integers(1, 9),
       vectors=st.integers(1, 5), signed=st.booleans(), seed=st.integers(0, 2**16))
def test_ideal_adc_datapath_reproduces_the_integer_product_exactly(
        precision, rows, cols, vectors, signed, seed):
    rng = np.random.default_rng(seed)
    w_max = (1 << (precision.w_bits - 1)) - 1
    q_w = rng.integers(-w_max, w_max + 1, size=(rows, cols))
    if signed:
        a_max = (1 << (precision.a_bits - 1)) - 1
        q_x = rng.integers(-a_max, a_max + 1, size=(vectors, rows))
    else:
        q_x = rng.integers(0, 1 << precision.a_bits, size=(vectors, rows))
    np.testing.assert_array_equal(integer_mvm(q_x, q_w, precision), q_x @ q_w)


# ---- helpers and options -------------------------------------------------------------
def test_accuracy_and_agreement_helpers(hand_ideal):
    labels = np.argmax(hand_ideal.logits(0), axis=1)
    assert accuracy(hand_ideal, labels) == [1.0]
    assert accuracy(hand_ideal, (labels + 1) % 1000) == [0.0]
    assert top1_agreement(hand_ideal, hand_ideal) == [1.0]
    assert top1_agreement(hand_ideal, [hand_ideal.logits(0)]) == [1.0]


@pytest.mark.parametrize("options, message", [
    ({"mode": "analog"}, "mode"),
    ({"mode": "quantized", "adc_range": "auto"}, "adc_range"),
    ({"mode": "quantized", "adc_range": 1.5}, "adc_range"),
    ({"variation_sigma": 0.1}, "quantized"),
    ({"mode": "quantized", "target": _target(w_bits=6)}, "columns per weight"),
])
def test_bad_options_raise(hand, hand_images, options, message):
    _, result = hand
    with pytest.raises(InputError, match=message):
        execute_plan(result.plan, result.group_model, hand_images, **options)


def test_images_of_the_wrong_shape_raise(hand):
    _, result = hand
    with pytest.raises(InputError, match="do not match"):
        execute_plan(result.plan, result.group_model, np.zeros((2, 3, 4, 4)))


def test_plan_target_is_not_modified(hand, hand_images):
    _, result = hand
    before = copy.deepcopy(result.plan.target)
    execute_plan(result.plan, result.group_model, hand_images, mode="quantized")
    assert result.plan.target == before
