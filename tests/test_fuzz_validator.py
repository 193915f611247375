"""Validator fuzzing: >= 1000 random corruptions of 14 kinds, each rejected rightly.

Valid plans come from OPS on random operator graphs (resident and dynamic); each
corruption edits the plan's JSON the way a buggy tool or a tampering user might,
and the validator must name the right kind of violation, without crashing.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Any

import pytest

from enasa_compiler.frontend import SubnetModel
from enasa_compiler.ir import CrossbarProgram, DigitalOp, MvmOp, Op, SignedScheme, WeightMatrix
from enasa_compiler.passes.lower import tile_matrix
from enasa_compiler.passes.mapping import schedule_ops
from enasa_compiler.passes.price import price
from enasa_compiler.pipeline import assemble_plan
from enasa_compiler.targets import load_target, target_from_dict
from enasa_compiler.validation.validator import validate

Plan = dict[str, Any]


def _program(rng: random.Random) -> CrossbarProgram:
    shapes = [(rng.randint(8, 300), rng.randint(4, 60)) for _ in range(3)]
    weights = [WeightMatrix(f"w{k}", f"{k:064x}", rows, cols, 4,
                            tile_matrix(f"w{k}", rows, cols, 128, 128, 4))
               for k, (rows, cols) in enumerate(shapes)]
    ops: list[Op] = []
    deps: dict[str, tuple[str, ...]] = {}
    for i in range(rng.randint(6, 10)):
        src = -1 if i == 0 else rng.randrange(i)
        inputs = ("x",) if src < 0 else (f"v{src}",)
        deps[f"op{i}"] = () if src < 0 else (f"op{src}",)
        if i % 2 == 0:
            weight = rng.choice(weights)
            ops.append(MvmOp(f"op{i}", "Conv", (0,), inputs, (f"v{i}",), (weight,), 16,
                             weight.rows * weight.cols))
        else:
            ops.append(DigitalOp(f"op{i}", "Relu", (0,), inputs, (f"v{i}",), 500, 500))
    consumed = {n for op in ops for n in op.inputs}
    outputs = tuple(v for op in ops for v in op.outputs if v not in consumed)
    return CrossbarProgram(ops=tuple(ops), deps=deps, subnet_outputs=(outputs,),
                           input_name="x", input_shape=(1, 3, 8, 8), subnet_names=("s0",),
                           w_bits=8, cell_bits=2, a_bits=8, signed_scheme=SignedScheme.OFFSET)


def _valid_plans() -> list[Plan]:
    plans = []
    for seed in range(6):
        rng = random.Random(seed)
        program = _program(rng)
        data = load_target("neurosim-22nm").to_dict()
        largest = max(len(op.tiles) for op in program.mvm_ops())
        data["chip"]["crossbars"] = largest + 1 if seed % 2 else 64
        data["chip"]["digital_units"] = 2
        target = target_from_dict(data)
        schedule = schedule_ops(program, target, "dynamic" if seed % 2 else "resident")
        subnet = SubnetModel(name="s0", sha256="0" * 64, model=None, arch=None)  # type: ignore[arg-type]
        plans.append(assemble_plan(program, price(program, target), schedule, target,
                                    [subnet], {}, "ops").to_dict())
    return plans


def _mvm_events(plan: Plan) -> list[dict[str, Any]]:
    return [e for e in plan["schedule"]["compute"] if e["placements"]]


def _double_book(plan: Plan, rng: random.Random) -> str:
    events = _mvm_events(plan)
    a, b = rng.sample(events, 2)
    b["start_ns"], b["end_ns"] = a["start_ns"], a["start_ns"] + (b["end_ns"] - b["start_ns"])
    b["placements"][0]["crossbar"] = a["placements"][0]["crossbar"]
    return "double-booked"


def _break_dependency(plan: Plan, rng: random.Random) -> str:
    ops = {o["id"]: o for o in plan["operators"]}
    event = rng.choice([e for e in plan["schedule"]["compute"] if ops[e["op"]]["deps"]])
    dep_end = next(e["end_ns"] for e in plan["schedule"]["compute"]
                   if e["op"] == ops[event["op"]]["deps"][0])
    shift = event["start_ns"] - dep_end + rng.randint(1, 50)
    event["start_ns"] -= shift
    event["end_ns"] -= shift
    return "dependency"


def _delete_event(plan: Plan, rng: random.Random) -> str:
    events = plan["schedule"]["compute"]
    events.pop(rng.randrange(len(events)))
    return "missing-op"


def _oversize_tile(plan: Plan, rng: random.Random) -> str:
    tile = rng.choice([t for w in plan["weights"] for t in w["tiles"]])
    tile["phys_rows"] = plan["target"]["crossbar"]["rows"] + rng.randint(1, 50)
    return "tile-size"


def _compute_before_programming(plan: Plan, rng: random.Random) -> str:
    event = rng.choice(_mvm_events(plan))
    tile = event["placements"][0]["tile"]
    write = next(w for w in plan["schedule"]["program"] if w["tile"] == tile)
    delay = event["start_ns"] - write["start_ns"] + rng.randint(1, 100)
    write["start_ns"] += delay
    write["end_ns"] += delay
    return "not-programmed"


def _wrong_totals(plan: Plan, rng: random.Random) -> str:
    key = rng.choice(["makespan_ns", "cell_writes", "crossbars_used", "busy_crossbar_ns",
                      "macs"])
    plan["totals"][key] += rng.randint(1, 1000)
    return "totals"


def _duplicate_id(plan: Plan, rng: random.Random) -> str:
    a, b = rng.sample(plan["operators"], 2)
    b["id"] = a["id"]
    return "duplicate-id"


def _unknown_crossbar(plan: Plan, rng: random.Random) -> str:
    event = rng.choice(_mvm_events(plan))
    chip = plan["target"]["chip"]["crossbars"]
    event["placements"][0]["crossbar"] = chip + rng.randint(0, 9)
    return "unknown-ref"


def _too_short(plan: Plan, rng: random.Random) -> str:
    event = rng.choice(plan["schedule"]["compute"])
    op = next(o for o in plan["operators"] if o["id"] == event["op"])
    event["end_ns"] = event["start_ns"] + rng.randint(0, op["latency_ns"] - 1)
    return "duration"


def _missing_key(plan: Plan, rng: random.Random) -> str:
    del plan[rng.choice(["operators", "weights", "schedule", "totals", "target", "batch"])]
    return "schema"


def _wrong_type(plan: Plan, rng: random.Random) -> str:
    event = rng.choice(plan["schedule"]["compute"])
    event["start_ns"] = rng.choice([str(event["start_ns"]), None, [1], 1.5])
    return "schema"


def _unknown_version(plan: Plan, rng: random.Random) -> str:
    plan["version"] = rng.choice([0, 1, 99, "2"])
    return "schema"


def _tampered_target(plan: Plan, rng: random.Random) -> str:
    plan["target"]["chip"]["crossbars"] += rng.randint(1, 100)
    return "target"


def _unknown_tile(plan: Plan, rng: random.Random) -> str:
    event = rng.choice(_mvm_events(plan))
    event["placements"][0]["tile"] = f"nowhere.t{rng.randint(0, 9)}"
    return "unknown-ref"


CORRUPTIONS: list[Callable[[Plan, random.Random], str]] = [
    _double_book, _break_dependency, _delete_event, _oversize_tile,
    _compute_before_programming, _wrong_totals, _duplicate_id, _unknown_crossbar,
    _too_short, _missing_key, _wrong_type, _unknown_version, _tampered_target,
    _unknown_tile,
]


@pytest.fixture(scope="module")
def plans() -> list[Plan]:
    valid = _valid_plans()
    for plan in valid:
        assert validate(plan) == []
    return valid


def test_a_thousand_random_corruptions_are_all_rejected_with_the_right_kind(plans):
    rng = random.Random(20261127)
    counts: dict[str, int] = {}
    for trial in range(1100):
        corruption = CORRUPTIONS[trial % len(CORRUPTIONS)]
        plan = copy.deepcopy(rng.choice(plans))
        expected = corruption(plan, rng)
        kinds = {v.kind for v in validate(plan)}
        assert expected in kinds, (corruption.__name__, trial, kinds)
        counts[corruption.__name__] = counts.get(corruption.__name__, 0) + 1
    assert len(counts) == len(CORRUPTIONS) >= 10
    assert sum(counts.values()) >= 1000
