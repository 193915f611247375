"""Forged plans: semantic lies made consistent, each rejected by ``validate --models``.

A forger edits a valid plan's JSON and then repairs everything the structural checks
would catch: it re-prices every operator and write on the plan's own target,
re-times the schedule (same order on every crossbar and unit, every dependency
honoured), re-sums the totals and recomputes the bounds the validator's way. Only the
semantic lie is left, so most forged plans pass ``validate`` without the models
(asserted: that is what docs/validation.md says cannot be checked without them), and
every one must be rejected, exit 1, with them.

No energy or time of a preset is written here: expectations come from re-pricing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import enasa_compiler
from enasa_compiler.cli import main
from enasa_compiler.errors import InputError
from enasa_compiler.plan import Plan
from enasa_compiler.plan.totals import compute_totals
from enasa_compiler.targets.target import load_target, target_from_dict
from enasa_compiler.validation._checks import PlanIndex
from enasa_compiler.validation._proof import UNCHECKED_WITHOUT_MODELS, recomputed_bound_ns
from enasa_compiler.validation.validator import validate

Data = dict[str, Any]


# ---- the forger's tools: re-price, re-time, re-total, re-bound ------------------------
def _index(data: Data) -> PlanIndex:
    return PlanIndex.build(Plan.from_dict(data), target_from_dict(data["target"]))


def _retime(data: Data) -> None:
    """Give every operator and write its price and its earliest start, order kept.

    Events are taken in their old start order; each starts when its crossbars (or
    digital unit) are free and the operators it depends on or reads from have ended.
    The order on every crossbar stays, so each compute still finds its tiles there.
    """
    index = _index(data)
    for op in data["operators"]:
        cost = index.costs.get(op["id"])
        if cost is not None:
            op["latency_ns"], op["energy_pj"] = cost.latency_ns, round(cost.energy_pj, 3)
    producers = {v: op["id"] for op in data["operators"] for v in op["outputs"]}
    needs = {op["id"]: {*op["deps"], *(producers[v] for v in op["inputs"] if v in producers)}
             for op in data["operators"]}
    schedule = data["schedule"]
    events = [(e["start_ns"], e["end_ns"], 0, e) for e in schedule["program"]]
    events += [(e["start_ns"], e["end_ns"], 1, e) for e in schedule["compute"]]
    events.sort(key=lambda item: item[:3])
    crossbar_free: dict[int, int] = {}
    unit_free: dict[int, int] = {}
    ended: dict[str, int] = {}
    for _, _, is_compute, event in events:
        if not is_compute:
            cost = index.write_costs[event["tile"]]
            start = crossbar_free.get(event["crossbar"], 0)
            event.update(start_ns=start, end_ns=start + cost.latency_ns,
                         energy_pj=round(cost.energy_pj, 3))
            crossbar_free[event["crossbar"]] = event["end_ns"]
            continue
        crossbars = [p["crossbar"] for p in event["placements"]]
        start = max([crossbar_free.get(c, 0) for c in crossbars]
                    + [ended.get(d, 0) for d in needs.get(event["op"], ())]
                    + ([unit_free.get(event["unit"], 0)] if event["unit"] is not None
                       else []))
        event.update(start_ns=start, end_ns=start + index.costs[event["op"]].latency_ns)
        for c in crossbars:
            crossbar_free[c] = event["end_ns"]
        if event["unit"] is not None:
            unit_free[event["unit"]] = event["end_ns"]
        ended[event["op"]] = event["end_ns"]


def _retotal(data: Data) -> None:
    plan = Plan.from_dict(data)
    target = target_from_dict(data["target"])
    totals = compute_totals(plan.operators, plan.tiles(), plan.program, plan.compute,
                            chip_crossbars=target.chip.crossbars,
                            crossbar_cells=target.crossbar.rows * target.crossbar.cols)
    data["totals"] = {k: round(v, 3) if k.endswith("_pj") else v
                      for k, v in totals.__dict__.items()}


def _rebound(data: Data) -> None:
    bound = recomputed_bound_ns(_index(data))
    assert bound is not None
    makespan = data["totals"]["makespan_ns"]
    lower = min(bound, makespan)
    data["bounds"].update(analytic_bound_ns=bound, solver_bound_ns=None,
                          lower_bound_ns=lower,
                          gap=(makespan - lower) / makespan if makespan else 0.0)


def make_consistent(data: Data) -> None:
    """Repair everything but the lie: prices, times, totals, bounds.

    The pipelined schedule is dropped (a plan may omit it): its figures would have to
    be re-derived too, and these forgeries are about what the batch schedule claims.
    """
    _retime(data)
    _retotal(data)
    _rebound(data)
    data["pipeline"] = None


# ---- small models -----------------------------------------------------------------------
def _tiny(path: Path, seed: int, channels: int = 16) -> Path:
    """Conv 3->channels 3x3, Relu, global pool, Flatten, Gemm channels->10."""
    rng = np.random.default_rng(seed)
    conv = numpy_helper.from_array(
        rng.standard_normal((channels, 3, 3, 3)).astype(np.float32), "w")
    fc = numpy_helper.from_array(rng.standard_normal((channels, 10)).astype(np.float32), "f")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="act"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["q"], name="flat"),
             helper.make_node("MatMul", ["q", "f"], ["y"], name="fc")]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], [conv, fc])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("tiny")
    return [_tiny(folder / f"t{seed}.onnx", seed) for seed in range(3)]


# ---- forgeries of the demo group's plan ----------------------------------------------------
def _ops(data: Data, kind: str) -> list[Data]:
    return [op for op in data["operators"] if op["kind"] == kind]


def _weight(data: Data, weight_id: str) -> Data:
    return next(w for w in data["weights"] if w["id"] == weight_id)


def shrink_work(data: Data) -> None:
    """Every crossbar operator claims a tenth of its vectors (and MACs)."""
    for op in _ops(data, "mvm"):
        vectors = max(1, op["vectors_per_image"] // 10)
        op["macs"] = op["macs"] // op["vectors_per_image"] * vectors
        op["vectors_per_image"] = vectors


def shrink_digital_work(data: Data) -> None:
    """Every digital operator claims a tenth of its elements and ops."""
    for op in _ops(data, "digital"):
        op["elements"] = max(1, op["elements"] // 10)
        op["ops"] = max(1, op["ops"] // 10)


def _drop_tiles(data: Data, weight: Data, keep: list[Data]) -> None:
    dropped = {t["id"] for t in weight["tiles"]} - {t["id"] for t in keep}
    weight["tiles"] = keep
    schedule = data["schedule"]
    schedule["program"] = [e for e in schedule["program"] if e["tile"] not in dropped]
    for event in schedule["compute"]:
        event["placements"] = [p for p in event["placements"] if p["tile"] not in dropped]
    data["initial_state"] = [p for p in data["initial_state"] if p["tile"] not in dropped]


def shrink_weights(data: Data) -> None:
    """Every matrix of more than one row block keeps its first row block only."""
    for weight in data["weights"]:
        rows = weight["tiles"][0]["row_stop"]
        if rows < weight["rows"]:
            weight["rows"] = rows
            _drop_tiles(data, weight, [t for t in weight["tiles"] if t["row_start"] == 0])


def retile_finer(data: Data) -> None:
    """A matrix's first tile split into two of half the rows, the half on a new crossbar."""
    weight = next(w for w in data["weights"] if w["tiles"][0]["phys_rows"] > 1)
    first = weight["tiles"][0]
    half = (first["row_start"] + first["row_stop"]) // 2
    extra = dict(first, id=first["id"] + "b", row_start=half,
                 phys_rows=first["row_stop"] - half)
    first.update(row_stop=half, phys_rows=half - first["row_start"])
    weight["tiles"].append(extra)
    schedule = data["schedule"]
    used = {e["crossbar"] for e in schedule["program"]} | {
        p["crossbar"] for p in data["initial_state"]}
    spare = next(c for c in range(data["target"]["chip"]["crossbars"]) if c not in used)
    schedule["program"].append({"tile": extra["id"], "crossbar": spare, "start_ns": 0,
                                "end_ns": 0, "energy_pj": 0.0})
    for event in schedule["compute"]:
        if any(p["tile"] == first["id"] for p in event["placements"]):
            event["placements"].append({"tile": extra["id"], "crossbar": spare})


def remove_dependency(data: Data) -> None:
    """An operator forgets the producer of what it reads (its start is still after it)."""
    op = next(o for o in data["operators"] if o["deps"])
    op["deps"] = op["deps"][1:]


def copies_on_the_same_crossbars(data: Data) -> None:
    """An operator claims two copies of its weights, both the same matrix: no copy."""
    op = next(o for o in _ops(data, "mvm") if o["copies"] == 1)
    op["copies"] = 2
    op["weights"] = op["weights"] * 2


def redirect_subnet_output(data: Data) -> None:
    """Subnet 0's output is said to be another operator's result."""
    subnet = data["subnets"][0]
    other = next(v for op in data["operators"] if 0 in op["subnets"] for v in op["outputs"]
                 if v not in subnet["outputs"])
    subnet["outputs"] = [other, *subnet["outputs"][1:]]


def change_op_type(data: Data) -> None:
    """A ReLU becomes a Sigmoid (priced as such)."""
    op = next(o for o in _ops(data, "digital") if o["op_type"] == "Relu")
    op["op_type"] = "Sigmoid"


def change_input_shape(data: Data) -> None:
    """The plan claims a smaller input image."""
    data["input"]["shape"] = [*data["input"]["shape"][:-2],
                              *(d // 2 for d in data["input"]["shape"][-2:])]


def swap_weight_contents(data: Data) -> None:
    """A matrix claims other contents (a hash of nothing in the models)."""
    data["weights"][0]["sha256"] = "0" * 64


def drop_subnet_from_operator(data: Data) -> None:
    """A shared operator no longer lists one of the subnets that computes it."""
    op = next(o for o in data["operators"] if len(o["subnets"]) > 1)
    op["subnets"] = op["subnets"][:-1]


def add_subnet_to_operator(data: Data) -> None:
    """An operator of one subnet claims to serve another that does not compute it."""
    everyone = {s["index"] for s in data["subnets"]}
    op = next(o for o in data["operators"] if len(o["subnets"]) == 1)
    op["subnets"] = sorted({*op["subnets"], min(everyone - set(op["subnets"]))})


def skip_an_activation(data: Data) -> None:
    """A ReLU is dropped; its readers read its input instead."""
    op = next(o for o in _ops(data, "digital") if o["op_type"] == "Relu"
              and len(o["inputs"]) == 1)
    data["operators"].remove(op)
    for other in data["operators"]:
        other["inputs"] = [op["inputs"][0] if v in op["outputs"] else v
                           for v in other["inputs"]]
        other["deps"] = list(dict.fromkeys(d2 for d in other["deps"] for d2 in (
            op["deps"] if d == op["id"] else [d])))
    data["schedule"]["compute"] = [e for e in data["schedule"]["compute"]
                                   if e["op"] != op["id"]]


def add_an_operator(data: Data) -> None:
    """An operator no model computes: a ReLU of the input nobody reads."""
    data["operators"].append({
        "id": "s0/forged", "kind": "digital", "op_type": "Relu", "subnets": [0],
        "inputs": [data["input"]["name"]], "outputs": ["forged_out"], "deps": [],
        "weights": [], "macs": 0, "vectors_per_image": 0, "elements": 10, "ops": 10,
        "layer": "", "latency_ns": 0, "energy_pj": 0.0, "copies": 1})
    data["schedule"]["compute"].append({"op": "s0/forged", "start_ns": 0, "end_ns": 0,
                                        "placements": [], "unit": 0})


def _time_fields(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in (
            [(*path, k)] if isinstance(v, int | float) and not isinstance(v, bool)
            and k.endswith("_ns") and v > 0 else _time_fields(v, (*path, k)))]
    return []


def faster_target_same_name(data: Data) -> None:
    """The target's times divided by ten, its name kept, its hash redone.

    Each time field is scaled on its own and kept only if the target still loads (a
    target file checks some figures against others), so the forgery follows whatever
    the preset holds today.
    """
    target = data["target"]
    for path in _time_fields(target):
        *outer, key = path
        holder = target
        for part in outer:
            holder = holder[part]
        before = holder[key]
        holder[key] = before / 10
        try:
            target_from_dict(target)
        except InputError:
            holder[key] = before
    data["target_sha256"] = target_from_dict(target).sha256


def claim_optimal(data: Data) -> None:
    """The bounds claim the makespan is optimal (lower bound = makespan, gap 0)."""
    data["bounds"].update(lower_bound_ns=data["totals"]["makespan_ns"], gap=0.0)


def claim_optimal_by_solver(data: Data) -> None:
    """As above, with a solver bound and status to back the claim."""
    makespan = data["totals"]["makespan_ns"]
    data["bounds"].update(lower_bound_ns=makespan, gap=0.0, solver_bound_ns=makespan,
                          solver_status="OPTIMAL", time_unit_ns=1)


def forge_analytic_bound(data: Data) -> None:
    """The analytic bound raised to the makespan: a lie about what the bound is."""
    makespan = data["totals"]["makespan_ns"]
    data["bounds"].update(analytic_bound_ns=makespan, lower_bound_ns=makespan, gap=0.0)


def bound_above_makespan(data: Data) -> None:
    """The lower bound lies above the makespan (the gap, which cannot be negative, 0)."""
    makespan = data["totals"]["makespan_ns"]
    data["bounds"].update(lower_bound_ns=makespan + 1000, gap=0.0)


def raise_utilization(data: Data) -> None:
    """Utilization raised a hundredfold (small enough to hide in an absolute 1e-3)."""
    data["totals"]["utilization"] *= 100


def raise_spatial_utilization(data: Data) -> None:
    """Spatial utilization nudged up by 5e-4."""
    data["totals"]["spatial_utilization"] += 5e-4


def claim_initial_state(data: Data) -> None:
    """Every tile claimed already in place: no write at all (cell writes to 0)."""
    first = {p["tile"]: p["crossbar"] for p in data["initial_state"]}
    taken = set(first.values())
    for write in data["schedule"]["program"]:
        if write["tile"] not in first and write["crossbar"] not in taken:
            first[write["tile"]] = write["crossbar"]
            taken.add(write["crossbar"])
    data["schedule"]["program"] = []
    data["initial_state"] = [{"tile": t, "crossbar": c} for t, c in first.items()]


# (forgery, repaired consistently, passes without --models)
FORGERIES: dict[str, tuple[Callable[[Data], None], bool, bool]] = {
    "shrink_work": (shrink_work, True, True),
    "shrink_digital_work": (shrink_digital_work, True, True),
    "shrink_weights": (shrink_weights, True, True),
    "retile_finer": (retile_finer, True, True),
    "remove_dependency": (remove_dependency, True, True),
    "copies_on_the_same_crossbars": (copies_on_the_same_crossbars, True, False),
    "redirect_subnet_output": (redirect_subnet_output, True, True),
    "change_op_type": (change_op_type, True, True),
    "change_input_shape": (change_input_shape, True, True),
    "swap_weight_contents": (swap_weight_contents, True, True),
    "drop_subnet_from_operator": (drop_subnet_from_operator, True, True),
    "add_subnet_to_operator": (add_subnet_to_operator, True, True),
    "skip_an_activation": (skip_an_activation, True, True),
    "add_an_operator": (add_an_operator, True, True),
    "faster_target_same_name": (faster_target_same_name, True, True),
    "claim_initial_state": (claim_initial_state, True, True),
    "claim_optimal": (claim_optimal, False, True),
    "claim_optimal_by_solver": (claim_optimal_by_solver, False, True),
    "forge_analytic_bound": (forge_analytic_bound, False, True),
    "bound_above_makespan": (bound_above_makespan, False, False),
    "raise_utilization": (raise_utilization, False, False),
    "raise_spatial_utilization": (raise_spatial_utilization, False, False),
}


def forged(plan: Plan, name: str) -> Data:
    """The plan's JSON with forgery ``name`` applied (and repaired, if it is repaired)."""
    data = json.loads(plan.to_json())
    forgery, repaired, _ = FORGERIES[name]
    forgery(data)
    if repaired:
        make_consistent(data)
    return data


def test_the_forgers_repairs_alone_leave_a_valid_plan(group4_result, group4_files):
    data = json.loads(group4_result.plan.to_json())
    make_consistent(data)
    assert validate(data, models=group4_files) == []


def test_there_are_at_least_20_kinds_of_forgery():
    assert len(FORGERIES) >= 20


@pytest.mark.parametrize("name", list(FORGERIES))
def test_a_forged_plan_is_rejected_with_the_models(name, group4_result, group4_files,
                                                  tmp_path, capsys):
    data = forged(group4_result.plan, name)
    assert data != json.loads(group4_result.plan.to_json()), "the forgery changed nothing"
    if FORGERIES[name][2]:
        # consistent: only the models (and what comes with them) can tell
        assert validate(data) == []
    assert validate(data, models=group4_files), f"forgery {name} was accepted"
    path = tmp_path / "forged.plan.json"
    path.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["validate", str(path), "--models", *map(str, group4_files)]) == 1


def test_the_forgeries_change_what_the_issue_says(group4_result):
    plan = group4_result.plan
    shrunk = forged(plan, "shrink_work")
    assert shrunk["totals"]["makespan_ns"] < plan.totals.makespan_ns
    assert shrunk["totals"]["energy_pj"] < plan.totals.energy_pj
    fewer = forged(plan, "shrink_weights")
    assert fewer["totals"]["crossbars_used"] < plan.totals.crossbars_used
    unwritten = forged(plan, "claim_initial_state")
    assert unwritten["totals"]["cell_writes"] == 0 < plan.totals.cell_writes
    faster = forged(plan, "faster_target_same_name")
    assert faster["target"]["name"] == plan.target["name"]
    assert faster["totals"]["makespan_ns"] < plan.totals.makespan_ns
    assert plan.bounds["lower_bound_ns"] < plan.totals.makespan_ns  # so optimal is a lie


def test_without_models_the_unchecked_claims_are_named(compiled_plan_path, capsys):
    assert main(["validate", str(compiled_plan_path)]) == 0
    out = capsys.readouterr().out
    assert "not proven without --models" in out
    assert main(["validate", str(compiled_plan_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["unchecked"] == list(UNCHECKED_WITHOUT_MODELS)


def test_with_models_nothing_is_left_unchecked(compiled_plan_path, group4_files, capsys):
    assert main(["validate", str(compiled_plan_path), "--json", "--models",
                 *map(str, group4_files)]) == 0
    assert json.loads(capsys.readouterr().out)["unchecked"] == []


# ---- online plans: the initial state against the previous plan ---------------------------
@pytest.fixture(scope="module")
def online(tiny_files) -> tuple[Plan, Plan]:
    # One copy of each matrix: the online plan then reuses every tile in place.
    previous = enasa_compiler.compile(tiny_files[:2], "neurosim-22nm", duplicate="off")
    plan = enasa_compiler.compile(tiny_files[1:], "neurosim-22nm", initial_state=previous,
                                  duplicate="off")
    assert plan.initial, "subnet t1's tiles should be found in place"
    return previous, plan


def test_a_true_initial_state_is_proven(online, tiny_files, tmp_path):
    previous, plan = online
    assert validate(plan, models=tiny_files[1:], initial_state=previous) == []
    prev_path, plan_path = previous.save(tmp_path / "prev.json"), plan.save(
        tmp_path / "plan.json")
    assert main(["validate", str(plan_path), "--models", *map(str, tiny_files[1:]),
                 "--initial-state", str(prev_path)]) == 0


def test_an_initial_state_without_the_previous_plan_is_not_proven(online, tiny_files):
    _, plan = online
    violations = validate(plan, models=tiny_files[1:])
    assert [v.kind for v in violations] == ["not-programmed"]
    assert "--initial-state" in violations[0].message


def test_a_forged_initial_state_is_rejected(online, tiny_files):
    previous, plan = online
    data = json.loads(plan.to_json())
    claim_initial_state(data)
    make_consistent(data)
    assert data["totals"]["cell_writes"] == 0
    assert validate(data) == []
    violations = validate(data, models=tiny_files[1:], initial_state=previous)
    assert violations and {v.kind for v in violations} == {"not-programmed"}


# ---- custom targets: the file given with -t -------------------------------------------------
@pytest.fixture(scope="module")
def custom(tiny_files, tmp_path_factory) -> tuple[Path, Plan]:
    data = load_target("neurosim-22nm").to_dict()
    data["name"] = "my-chip"
    data["chip"]["crossbars"] = 512
    path = tmp_path_factory.mktemp("target") / "my-chip.json"
    path.write_text(json.dumps(data))
    return path, enasa_compiler.compile(tiny_files[:2], load_target(path), duplicate="off")


def test_a_custom_target_is_proven_against_its_file(custom, tiny_files):
    path, plan = custom
    assert validate(plan, models=tiny_files[:2], target=path) == []
    unproven = validate(plan, models=tiny_files[:2])
    assert [v.kind for v in unproven] == ["target"] and "-t" in unproven[0].message


def test_a_forged_custom_target_is_rejected(custom, tiny_files, tmp_path):
    path, plan = custom
    data = json.loads(plan.to_json())
    faster_target_same_name(data)
    make_consistent(data)
    assert data["target"]["name"] == "my-chip"
    assert validate(data) == []
    violations = validate(data, models=tiny_files[:2], target=path)
    assert [v.kind for v in violations] == ["target"]
    forged_path = tmp_path / "forged.json"
    forged_path.write_text(json.dumps(data))
    assert main(["validate", str(forged_path), "-t", str(path), "--models",
                 *map(str, tiny_files[:2])]) == 1



def test_callers_that_know_the_target_pass_it_on(custom, tiny_files):
    from enasa_compiler.testing import compile_and_check

    path, plan = custom
    compile_and_check(tiny_files[:2], load_target(path))
    # the run before numeric execution checks the models' coverage, not the target
    assert validate(plan, models=tiny_files[:2], prove=False) == []


def test_a_small_utilization_raised_within_the_old_absolute_tolerance_is_rejected(
        online, tiny_files):
    previous, _ = online
    data = json.loads(previous.to_json())
    real = data["totals"]["utilization"]
    data["totals"]["utilization"] = real + 9e-4  # within the former absolute 1e-3
    assert data["totals"]["utilization"] > 2 * real  # more than doubled
    violations = validate(data, models=tiny_files[:2])
    assert [v.kind for v in violations] == ["totals"]
    assert "totals.utilization" in violations[0].message


def test_a_target_given_without_models_is_checked_and_not_listed_unchecked(
        custom, tmp_path, capsys):
    path, plan = custom
    plan_path = plan.save(tmp_path / "plan.json")
    assert main(["validate", str(plan_path), "-t", str(path), "--json"]) == 0
    unchecked = json.loads(capsys.readouterr().out)["unchecked"]
    assert unchecked and not any("-t)" in claim for claim in unchecked)
    assert main(["validate", str(plan_path), "-t", "neurosim-22nm"]) == 1
    assert "target: the plan's target 'my-chip'" in capsys.readouterr().out
