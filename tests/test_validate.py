"""The plan validator: a hand-built valid plan passes, and each corruption is caught.

The plan here is built by hand (not by the compiler), so the validator is tested
independently of the mapper: 4 operators over 2 subnets, resident mode, every
interval priced with the cost model.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from enasa_compiler.errors import InputError
from enasa_compiler.ir import DigitalOp, MvmOp, Tile, WeightMatrix
from enasa_compiler.plan import (
    ComputeEvent,
    Placement,
    Plan,
    PlanOperator,
    ProgramEvent,
    SubnetInfo,
)
from enasa_compiler.plan.schema import check_schema
from enasa_compiler.plan.totals import compute_totals
from enasa_compiler.targets.cost import digital_cost, mvm_cost, program_cost
from enasa_compiler.targets.target import load_target
from enasa_compiler.validation.validator import (
    COVERAGE,
    DEPENDENCY,
    DOUBLE_BOOKED,
    DUPLICATE_ID,
    DURATION,
    KINDS,
    MISSING_OP,
    MODELS,
    NOT_PROGRAMMED,
    PLACEMENT,
    PROGRAM,
    SCHEMA,
    TARGET,
    TILE_SIZE,
    TOTALS,
    UNKNOWN_REF,
    Violation,
    validate,
)

TARGET_PRESET = load_target("neurosim-22nm")


# ---- a small valid plan, by hand -----------------------------------------------------
def _tile(tile_id: str, rows: tuple[int, int], cols: tuple[int, int]) -> Tile:
    cpw = TARGET_PRESET.columns_per_weight
    return Tile(tile_id, rows[0], rows[1], cols[0], cols[1], rows[1] - rows[0],
                (cols[1] - cols[0]) * cpw)


def _priced(op: MvmOp | DigitalOp, deps: tuple[str, ...]) -> PlanOperator:
    is_mvm = isinstance(op, MvmOp)
    cost = mvm_cost(op, TARGET_PRESET) if is_mvm else digital_cost(op, TARGET_PRESET)
    return PlanOperator(
        id=op.id, kind=op.kind, op_type=op.op_type, subnets=op.subnets, inputs=op.inputs,
        outputs=op.outputs, deps=deps,
        weights=tuple(w.id for w in op.weights) if is_mvm else (),
        macs=op.macs if is_mvm else 0,
        vectors_per_image=op.vectors_per_image if is_mvm else 0,
        elements=0 if is_mvm else op.elements, ops=0 if is_mvm else op.ops,
        layer=op.layer, latency_ns=cost.latency_ns, energy_pj=round(cost.energy_pj, 3),
    )


def build_plan() -> Plan:
    """conv0 (w0, 2 tiles) -> relu0 (digital) -> gemm0 (w1); conv0 -> gemm1 (w1 shared).

    Subnet 0 is conv0, relu0, gemm0; subnet 1 is conv0, gemm1. w0's tiles sit on
    crossbars 0 and 1, w1's single tile on crossbar 2 (gemm1 and gemm0 take turns).
    """
    cpw = TARGET_PRESET.columns_per_weight
    w0 = WeightMatrix("w0", "a" * 64, 200, 16, cpw,
                      (_tile("w0.t0", (0, 128), (0, 16)), _tile("w0.t1", (128, 200), (0, 16))))
    w1 = WeightMatrix("w1", "b" * 64, 64, 10, cpw, (_tile("w1.t0", (0, 64), (0, 10)),))
    conv0 = MvmOp("conv0", "Conv", (0, 1), ("x",), ("c0",), (w0,), 16, 16 * 200 * 16, "l0")
    relu0 = DigitalOp("relu0", "Relu", (0,), ("c0",), ("r0",), 256, 256, "l1")
    gemm1 = MvmOp("gemm1", "Gemm", (1,), ("c0",), ("y1",), (w1,), 1, 640, "l2")
    gemm0 = MvmOp("gemm0", "Gemm", (0,), ("r0",), ("y0",), (w1,), 1, 640, "l2")
    operators = (_priced(conv0, ()), _priced(relu0, ("conv0",)), _priced(gemm1, ("conv0",)),
                 _priced(gemm0, ("relu0",)))
    latency = {o.id: o.latency_ns for o in operators}

    program = []
    for crossbar, tile in enumerate((*w0.tiles, *w1.tiles)):
        cost = program_cost(tile, TARGET_PRESET)
        program.append(ProgramEvent(tile.id, crossbar, 0, cost.latency_ns,
                                    round(cost.energy_pj, 3)))
    conv_start = max(program[0].end_ns, program[1].end_ns)
    conv_end = conv_start + latency["conv0"]
    relu_end = conv_end + latency["relu0"]
    gemm1_start = max(conv_end, program[2].end_ns)
    gemm1_end = gemm1_start + latency["gemm1"]
    gemm0_start = max(relu_end, gemm1_end)
    compute = (
        ComputeEvent("conv0", conv_start, conv_end,
                     (Placement("w0.t0", 0), Placement("w0.t1", 1))),
        ComputeEvent("relu0", conv_end, relu_end, unit=0),
        ComputeEvent("gemm1", gemm1_start, gemm1_end, (Placement("w1.t0", 2),)),
        ComputeEvent("gemm0", gemm0_start, gemm0_start + latency["gemm0"],
                     (Placement("w1.t0", 2),)),
    )
    tiles = {t.id: t for w in (w0, w1) for t in w.tiles}
    totals = compute_totals(
        operators, tiles, program, compute, chip_crossbars=TARGET_PRESET.chip.crossbars,
        crossbar_cells=TARGET_PRESET.crossbar.rows * TARGET_PRESET.crossbar.cols)
    # As Plan.to_dict: energies rounded, ratios kept (they are compared relatively).
    totals = type(totals)(**{k: round(v, 3) if k.endswith("_pj") else v
                             for k, v in totals.__dict__.items()})
    return Plan(
        target=TARGET_PRESET.to_dict(), target_sha256=TARGET_PRESET.sha256,
        mode="resident", solver="hand", batch=1, input_name="x", input_shape=(1, 8, 5, 5),
        subnets=(SubnetInfo(0, "a", "c" * 64, ("y0",), (0, 1)),
                 SubnetInfo(1, "b", "d" * 64, ("y1",), None)),
        weights=(w0, w1), operators=operators, program=tuple(program), compute=compute,
        totals=totals, dedup={"nodes_removed": 1},
    )


def corrupted(change: Callable[[dict[str, Any]], Any]) -> list[Violation]:
    """Validate the plan's JSON form after ``change`` edited it in place."""
    data = copy.deepcopy(build_plan().to_dict())
    change(data)
    return validate(data)


def event(data: dict[str, Any], op_id: str) -> dict[str, Any]:
    return next(e for e in data["schedule"]["compute"] if e["op"] == op_id)


def operator(data: dict[str, Any], op_id: str) -> dict[str, Any]:
    return next(o for o in data["operators"] if o["id"] == op_id)


def has(violations: list[Violation], kind: str, *words: str) -> bool:
    """Whether some violation of ``kind`` names every one of ``words``."""
    return any(v.kind == kind and all(w in v.message for w in words) for v in violations)


# ---- the valid plan -------------------------------------------------------------------
def test_hand_built_plan_is_valid():
    assert validate(build_plan()) == []


def test_json_round_trip_is_equal_and_still_valid(tmp_path):
    plan = build_plan()
    again = Plan.from_dict(json.loads(plan.to_json()))
    assert again == plan
    assert again.to_json() == plan.to_json()
    path = plan.save(tmp_path / "plan.json")
    assert validate(path) == []
    assert validate(str(path)) == []
    assert Plan.load(path) == plan


def test_schema_accepts_the_plan_document():
    assert check_schema(build_plan().to_dict()) == []


def test_violation_prints_kind_then_message():
    assert str(Violation(DOUBLE_BOOKED, "crossbar 2: x")) == "double-booked: crossbar 2: x"
    assert len(set(KINDS)) == len(KINDS)


# ---- one corruption per kind ----------------------------------------------------------
def test_two_operators_on_one_crossbar_at_once_are_double_booked():
    def overlap(data):
        gemm1, gemm0 = event(data, "gemm1"), event(data, "gemm0")
        length = gemm0["end_ns"] - gemm0["start_ns"]
        gemm0["start_ns"] = gemm1["start_ns"] + 1
        gemm0["end_ns"] = gemm0["start_ns"] + length

    assert has(corrupted(overlap), DOUBLE_BOOKED, "crossbar 2", "gemm1", "gemm0")


def test_programming_during_compute_is_double_booked():
    def overlap(data):
        data["schedule"]["program"][2]["start_ns"] = event(data, "gemm1")["start_ns"]
        data["schedule"]["program"][2]["end_ns"] = event(data, "gemm1")["end_ns"] + 100000

    assert has(corrupted(overlap), DOUBLE_BOOKED, "crossbar 2", "w1.t0", "gemm1")


def test_two_digital_ops_on_one_unit_at_once_are_double_booked():
    def add_twin(data):
        data["operators"].append(dict(operator(data, "relu0"), id="relu1", outputs=["r1"]))
        data["schedule"]["compute"].append(dict(event(data, "relu0"), op="relu1"))

    assert has(corrupted(add_twin), DOUBLE_BOOKED, "digital unit 0", "relu0", "relu1")


def test_starting_before_a_dependency_ends_is_caught():
    def early(data):
        relu = event(data, "relu0")
        relu["start_ns"] -= 5
        relu["end_ns"] -= 5

    assert has(corrupted(early), DEPENDENCY, "relu0", "conv0")


def test_dependency_cycle_is_caught():
    def cycle(data):
        operator(data, "conv0")["deps"] = ["gemm0"]

    assert has(corrupted(cycle), DEPENDENCY, "cycle", "conv0", "relu0", "gemm0")


def test_operator_without_compute_event_is_missing():
    def delete(data):
        data["schedule"]["compute"].remove(event(data, "relu0"))

    violations = corrupted(delete)
    assert has(violations, MISSING_OP, "relu0")
    assert {v.kind for v in violations} <= {MISSING_OP, TOTALS}


def test_subnet_output_nobody_produces_is_missing():
    def rename(data):
        data["subnets"][1]["outputs"] = ["y7"]

    assert has(corrupted(rename), MISSING_OP, "y7", "subnet 1")


def test_input_nobody_produces_is_missing():
    def rename(data):
        operator(data, "conv0")["inputs"] = ["images"]

    assert has(corrupted(rename), MISSING_OP, "images", "conv0")


def test_tile_larger_than_the_crossbar_is_caught():
    def grow(data):
        w0 = data["weights"][0]
        w0["rows"] = 201
        w0["tiles"][0].update(row_stop=129, phys_rows=129)
        w0["tiles"][1].update(row_start=129, row_stop=201, phys_rows=72)

    assert has(corrupted(grow), TILE_SIZE, "w0.t0", "129", "128 x 128")


def test_physical_size_must_follow_the_logical_span():
    def shrink(data):
        data["weights"][1]["tiles"][0]["phys_cols"] = 39

    assert has(corrupted(shrink), TILE_SIZE, "w1.t0", "39")


def test_tiles_that_overlap_or_leave_a_gap_break_coverage():
    def overlap(data):
        data["weights"][0]["tiles"][1].update(row_start=100, phys_rows=100)

    def gap(data):
        data["weights"][0]["tiles"][1].update(row_start=130, phys_rows=70)

    assert has(corrupted(overlap), COVERAGE, "w0.t0", "w0.t1", "overlap")
    assert has(corrupted(gap), COVERAGE, "w0", "gap")


def test_mvm_event_must_place_every_tile():
    def drop(data):
        event(data, "conv0")["placements"].pop()

    assert has(corrupted(drop), PLACEMENT, "conv0", "w0.t1")


def test_digital_event_must_name_a_unit():
    def no_unit(data):
        event(data, "relu0")["unit"] = None

    assert has(corrupted(no_unit), PLACEMENT, "relu0", "unit")


def test_compute_before_programming_is_caught():
    def elsewhere(data):
        data["schedule"]["program"][2]["crossbar"] = 3

    violations = corrupted(elsewhere)
    assert has(violations, NOT_PROGRAMMED, "gemm1", "w1.t0", "crossbar 2")
    assert has(violations, NOT_PROGRAMMED, "gemm0", "w1.t0", "crossbar 2")


def test_wrong_tile_in_the_crossbar_is_not_programmed():
    def swap(data):
        event(data, "conv0")["placements"] = [{"tile": "w0.t0", "crossbar": 1},
                                              {"tile": "w0.t1", "crossbar": 0}]

    assert has(corrupted(swap), NOT_PROGRAMMED, "conv0", "w0.t0", "crossbar 1", "w0.t1")


def test_wrong_totals_are_caught():
    def inflate(data):
        data["totals"]["makespan_ns"] += 1
        data["totals"]["energy_pj"] *= 1.01

    violations = corrupted(inflate)
    assert has(violations, TOTALS, "makespan_ns")
    assert has(violations, TOTALS, "totals.energy_pj")


def test_duplicated_ids_are_caught():
    def duplicate(data):
        operator(data, "gemm1")["id"] = "gemm0"
        data["weights"][1]["tiles"][0]["id"] = "w0.t0"

    violations = corrupted(duplicate)
    assert has(violations, DUPLICATE_ID, "operator id 'gemm0'")
    assert has(violations, DUPLICATE_ID, "tile id 'w0.t0'")


def test_operator_computed_twice_is_caught():
    def twice(data):
        data["schedule"]["compute"].append(copy.deepcopy(event(data, "relu0")))

    assert has(corrupted(twice), DUPLICATE_ID, "relu0", "2 compute events")


def test_unknown_crossbar_unit_and_names_are_caught():
    def unknown(data):
        event(data, "gemm1")["placements"][0]["crossbar"] = 4096
        event(data, "relu0")["unit"] = 64
        operator(data, "gemm0")["deps"].append("nope")
        event(data, "conv0")["op"] = "conv9"

    violations = corrupted(unknown)
    assert has(violations, UNKNOWN_REF, "gemm1", "w1.t0", "crossbar 4096")
    assert has(violations, UNKNOWN_REF, "relu0", "digital unit 64")
    assert has(violations, UNKNOWN_REF, "gemm0", "'nope'")
    assert has(violations, UNKNOWN_REF, "conv9")


def test_too_short_interval_is_caught():
    def shorten(data):
        event(data, "conv0")["end_ns"] -= 1

    assert has(corrupted(shorten), DURATION, "conv0", "runs")


def test_recorded_latency_must_match_the_cost_model():
    def relabel(data):
        operator(data, "gemm0")["latency_ns"] += 1
        operator(data, "relu0")["energy_pj"] += 1.0

    violations = corrupted(relabel)
    assert has(violations, DURATION, "gemm0", "latency_ns")
    assert has(violations, DURATION, "relu0", "energy_pj")


def test_event_ending_before_it_starts_is_caught():
    def reverse(data):
        data["schedule"]["program"][0]["end_ns"] = 0
        data["schedule"]["program"][0]["start_ns"] = 10

    assert has(corrupted(reverse), DURATION, "w0.t0", "before it starts")


def test_resident_plan_must_program_each_tile_once():
    def reprogram(data):
        data["schedule"]["program"].append(dict(data["schedule"]["program"][0],
                                                crossbar=5))

    assert has(corrupted(reprogram), PROGRAM, "w0.t0", "2 times")


@pytest.mark.parametrize(("change", "field"), [
    (lambda d: d.pop("totals"), "field (top level): 'totals' is a required property"),
    (lambda d: d.update(batch="1"), "field batch:"),
    (lambda d: d.update(version=1), "field version:"),
    (lambda d: d.update(extra=1), "field (top level): Additional properties"),
    (lambda d: d["operators"][1].update(kind="analog"), "field operators.1.kind:"),
    (lambda d: d["schedule"]["compute"][0].pop("unit"), "field schedule.compute.0:"),
])
def test_malformed_documents_are_schema_violations_only(change, field):
    violations = corrupted(change)
    assert violations and {v.kind for v in violations} == {SCHEMA}
    assert any(v.message.startswith(field) for v in violations), violations


def test_schema_violations_are_sorted_by_path_with_numeric_indices():
    data = build_plan().to_dict()
    data["operators"] = [dict(data["operators"][0]) for _ in range(11)]
    data["operators"][10]["macs"] = -1
    data["operators"][2]["macs"] = "many"
    data["batch"] = 0
    lines = check_schema(data)
    assert [line.split(":")[0] for line in lines] == [
        "field batch", "field operators.2.macs", "field operators.10.macs"]


def test_plan_object_that_cannot_be_written_as_json_is_a_schema_violation():
    plan = build_plan()
    broken = dataclasses.replace(
        plan, operators=(dataclasses.replace(plan.operators[0], kind="mvm"),
                         *plan.operators[1:]))
    assert [v.kind for v in validate(broken)] == [SCHEMA]


def test_tampered_target_hash_is_caught():
    def tamper(data):
        data["target_sha256"] = "0" * 64

    assert has(corrupted(tamper), TARGET, "0" * 64, "neurosim-22nm")


def test_edited_target_is_caught():
    def edit(data):
        data["target"]["crossbar"]["rows"] = 256

    def break_it(data):
        data["target"]["crossbar"]["rows"] = 0

    assert has(corrupted(edit), TARGET, "target_sha256")
    assert has(corrupted(break_it), TARGET, "crossbar.rows")


def test_unreadable_or_non_json_plan_file_raises(tmp_path):
    with pytest.raises(InputError):
        validate(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError):
        validate(bad)


# ---- models ---------------------------------------------------------------------------
def _tiny_model(name: str) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], [name])], name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 4])])
    return helper.make_model(graph)


def test_models_must_match_the_subnet_hashes(tmp_path):
    paths = []
    for name in ("y0", "y1"):
        path = tmp_path / f"{name}.onnx"
        onnx.save(_tiny_model(name), path)
        paths.append(path)
    data = build_plan().to_dict()
    for subnet, path in zip(data["subnets"], paths, strict=True):
        subnet["source_sha256"] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    # the hashes match, so each model's nodes are paired with the plan's operators:
    # these tiny models are not what the hand-built plan maps, and every difference is
    # named, by subnet and node on the models' side, by operator on the plan's
    rederived = validate(data, models=paths)
    assert {v.kind for v in rederived} == {MODELS, MISSING_OP}
    assert has(rederived, MISSING_OP, "subnet 0 ('a'): node 'Relu_0' (Relu)",
               "of the model is not in the plan")
    assert has(rederived, MODELS, "'conv0' in the plan is not in the models")
    assert has(rederived, MODELS, "subnet 1 ('b') takes input (1, 4)", "(1, 8, 5, 5)")
    assert has(validate(data, models=paths[:1]), MODELS, "1 model given", "2 subnets")
    assert has(validate(data, models=paths[::-1]), MODELS, "model 0", "subnet 0")
    with pytest.raises(InputError):
        validate(data, models=[tmp_path / "absent.onnx", paths[1]])


def test_models_given_as_protos_are_hashed_deterministically():
    protos = [_tiny_model("y0"), _tiny_model("y1")]
    data = build_plan().to_dict()
    for subnet, proto in zip(data["subnets"], protos, strict=True):
        subnet["source_sha256"] = hashlib.sha256(
            proto.SerializeToString(deterministic=True)).hexdigest()
    assert not [v for v in validate(data, models=protos) if "sha256" in v.message]


# ---- properties -----------------------------------------------------------------------
def _all_events(data: dict[str, Any]) -> list[dict[str, Any]]:
    return data["schedule"]["program"] + data["schedule"]["compute"]


@settings(max_examples=40, deadline=None)
@given(offset=st.integers(min_value=0, max_value=10**9))
def test_shifting_the_whole_schedule_keeps_the_plan_valid(offset):
    def shift(data):
        for e in _all_events(data):
            e["start_ns"] += offset
            e["end_ns"] += offset

    assert corrupted(shift) == []


# (mover, anchor): events that share a crossbar. Labels as the validator prints them.
_SAME_CROSSBAR = [
    (("compute", "gemm0"), ("compute", "gemm1")),
    (("compute", "gemm1"), ("compute", "gemm0")),
    (("compute", "gemm0"), ("program", "w1.t0")),
    (("program", "w1.t0"), ("compute", "gemm1")),
    (("compute", "conv0"), ("program", "w0.t1")),
    (("program", "w0.t0"), ("compute", "conv0")),
]


def _find(data: dict[str, Any], ref: tuple[str, str]) -> dict[str, Any]:
    kind, name = ref
    key = "op" if kind == "compute" else "tile"
    return next(e for e in data["schedule"][kind] if e[key] == name)


@settings(max_examples=40, deadline=None)
@given(pair=st.sampled_from(_SAME_CROSSBAR), where=st.floats(min_value=0, max_value=1))
def test_moving_one_event_onto_another_on_its_crossbar_is_double_booked(pair, where):
    mover_ref, anchor_ref = pair

    def move(data):
        mover, anchor = _find(data, mover_ref), _find(data, anchor_ref)
        length = mover["end_ns"] - mover["start_ns"]
        # Any start in (anchor.start - length, anchor.end) overlaps the anchor.
        low, high = anchor["start_ns"] - length + 1, anchor["end_ns"] - 1
        mover["start_ns"] = max(0, low + round(where * (high - low)))
        mover["end_ns"] = mover["start_ns"] + length

    assert has(corrupted(move), DOUBLE_BOOKED, f"'{mover_ref[1]}'", f"'{anchor_ref[1]}'")

