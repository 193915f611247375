"""Pipelined (periodic) schedules: the II bound, throughput duplication, validation.

The synthetic programs are small enough to enumerate every copy and lane choice, so
the duplication's II is checked against a brute-force optimum, and each periodic
schedule is unrolled over several images and checked interval by interval, by a
route that shares nothing with the modulo reasoning of the scheduler or validator.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from dataclasses import replace

import pytest

from enasa_compiler.cli import main
from enasa_compiler.ir import (
    CostTable,
    CrossbarProgram,
    DigitalOp,
    EventCost,
    MvmOp,
    Placement,
    SignedScheme,
    Tile,
    WeightMatrix,
)
from enasa_compiler.passes.duplicate import duplicate
from enasa_compiler.passes.mapping.periodic import (
    balance_throughput,
    best_allocated_utilization,
    image_costs,
    schedule_periodic,
)
from enasa_compiler.pipeline import compile_detailed
from enasa_compiler.targets.cost import digital_lanes_ns
from enasa_compiler.targets.target import load_target
from enasa_compiler.validation.validator import validate


def _matrix(name: str, tiles: int) -> WeightMatrix:
    return WeightMatrix(
        id=name, sha256=name * 8, rows=128 * tiles, cols=16, columns_per_weight=8,
        tiles=tuple(Tile(f"{name}.t{k}", 128 * k, 128 * (k + 1), 0, 16, 128, 128)
                    for k in range(tiles)))


def _toy(crossbars: int = 12):
    """Three MVM operators (two sharing a matrix), two digital ones, in a chain."""
    w0, w1 = _matrix("w0", 2), _matrix("w1", 1)
    ops = (
        MvmOp("a", "Conv", (0,), ("x",), ("va",), (w0,), vectors_per_image=9, macs=1),
        DigitalOp("r", "Relu", (0,), ("va",), ("vr",), elements=4096, ops=4096),
        MvmOp("b", "Conv", (1,), ("x",), ("vb",), (w0,), vectors_per_image=9, macs=1),
        MvmOp("c", "Conv", (0, 1), ("vr",), ("vc",), (w1,), vectors_per_image=6, macs=1),
        DigitalOp("p", "Add", (1,), ("vb", "vc"), ("vp",), elements=2048, ops=2048),
    )
    deps = {"a": (), "r": ("a",), "b": (), "c": ("r",), "p": ("b", "c")}
    program = CrossbarProgram(ops=ops, deps=deps, subnet_outputs=(("vc",), ("vp",)),
                              input_name="x", input_shape=(1, 3, 8, 8),
                              subnet_names=("s0", "s1"), w_bits=8, cell_bits=2, a_bits=8,
                              signed_scheme=SignedScheme.OFFSET)
    base = load_target("neurosim-22nm")
    target = replace(base, chip=replace(base.chip, crossbars=crossbars, digital_units=3,
                                        digital_lanes_per_op=2))

    def cost(vectors: int, fixed: float) -> EventCost:
        return EventCost(latency_ns=math.ceil(vectors * 100 + fixed), energy_pj=1.0,
                         breakdown_pj={}, vectors=vectors, reads_per_vector=1,
                         read_cycle_ns=100.0, fixed_ns=fixed)

    costs = CostTable(batch=1, operators={
        "a": cost(9, 50.0), "b": cost(9, 50.0), "c": cost(6, 30.0),
        "r": EventCost(64, 1.0, {}), "p": EventCost(32, 1.0, {})}, writes={})
    return program, target, costs


def _brute_force_ii(program: CrossbarProgram, target, costs: CostTable) -> int:
    """Smallest resource bound over every copy count per matrix and lane count per op."""
    a, c = costs.operators["a"], costs.operators["c"]
    digital = [op for op in program.ops if isinstance(op, DigitalOp)]
    best = math.inf
    for shared, single in itertools.product(range(1, 10), range(1, 7)):
        if 2 * shared + single > target.chip.crossbars:
            continue
        crossbar_ns = max(2 * a.latency_with_copies(shared), c.latency_with_copies(single))
        for lanes in itertools.product(range(1, 3), repeat=len(digital)):
            times = [digital_lanes_ns(op, target, n) for op, n in zip(digital, lanes,
                                                                       strict=True)]
            lane_ns = sum(n * t for n, t in zip(lanes, times, strict=True))
            bound = max(crossbar_ns, math.ceil(lane_ns / target.chip.digital_units),
                        max(times))
            best = min(best, bound)
    return int(best)


@pytest.mark.parametrize("crossbars", [3, 5, 8, 12, 30])
def test_throughput_duplication_reaches_the_brute_force_optimum(crossbars):
    program, target, costs = _toy(crossbars)
    choice = balance_throughput(program, target, costs)
    assert choice.ii_ns == _brute_force_ii(program, target, costs)
    assert choice.copies.get("a") == choice.copies.get("b")  # one matrix, one count
    used = 2 * choice.copies.get("a", 1) + choice.copies.get("c", 1)
    assert used <= crossbars


def _placements(program: CrossbarProgram) -> dict[str, tuple[Placement, ...]]:
    """Resident placement: each distinct tile on its own crossbar, in first-use order."""
    where: dict[str, int] = {}
    out = {}
    for op in program.mvm_ops():
        out[op.id] = tuple(Placement(t.id, where.setdefault(t.id, len(where)))
                           for t in op.tiles)
    return out


def _unrolled_conflicts(program, schedule, images: int) -> list[str]:
    """Expand ``images`` images into plain intervals and look for any clash."""
    busy: dict[tuple[str, int], list[tuple[int, int, str]]] = {}
    finish: dict[tuple[str, int], int] = {}
    for slot in schedule.slots:
        for image in range(images):
            start = slot.offset_ns + image * schedule.ii_ns
            finish[slot.op, image] = start + slot.duration_ns
            keys = [("xbar", p.crossbar) for p in slot.placements]
            keys += [("unit", u) for u in slot.units]
            for key in set(keys):
                busy.setdefault(key, []).append((start, start + slot.duration_ns,
                                                 f"{slot.op}#{image}"))
    problems = []
    for key, intervals in busy.items():
        intervals.sort()
        for (_, end, first), (start, _, second) in itertools.pairwise(intervals):
            if start < end:
                problems.append(f"{key}: {first} and {second}")
    starts = {s.op: s.offset_ns for s in schedule.slots}
    for op in program.ops:
        for dep in program.deps[op.id]:
            for image in range(images):
                if starts[op.id] + image * schedule.ii_ns < finish[dep, image]:
                    problems.append(f"{op.id}#{image} before {dep}#{image}")
    return problems


@pytest.mark.parametrize("crossbars", [3, 8, 30])
def test_periodic_schedule_is_conflict_free_when_unrolled(crossbars):
    program, target, costs = _toy(crossbars)
    choice = balance_throughput(program, target, costs)
    program = duplicate(program, choice.copies)
    copied = image_costs(program, target)
    schedule, bound = schedule_periodic(program, target, copied, choice.lanes,
                                        _placements(program), start_ns=10)
    assert _unrolled_conflicts(program, schedule, images=6) == []
    assert bound.bound_ns <= schedule.ii_ns <= 1.05 * bound.bound_ns
    assert all(s.offset_ns >= 10 for s in schedule.slots)
    # The II bound is what the busiest resource needs: the two operators on w0's
    # crossbars run one after the other every period.
    durations = {s.op: s.duration_ns for s in schedule.slots}
    assert schedule.ii_ns >= durations["a"] + durations["b"]


def test_best_utilization_bounds_every_duplication_that_fits():
    program, target, costs = _toy(12)
    choice = balance_throughput(program, target, costs)
    ii = choice.ii_ns
    a, c = costs.operators["a"], costs.operators["c"]
    reachable = 0.0
    for shared, single in itertools.product(range(1, 10), range(1, 7)):
        alloc = 2 * shared + single
        times = (2 * a.latency_with_copies(shared), c.latency_with_copies(single))
        if alloc > 12 or max(times) > ii:
            continue
        busy = 2 * shared * times[0] + single * times[1]
        reachable = max(reachable, busy / (alloc * ii))
    bound = best_allocated_utilization(program, costs, ii, 12)
    assert bound >= reachable - 1e-9
    assert bound <= reachable + 0.02  # tight on this program, not just any number


def test_group_plan_pipeline_meets_its_bounds(group4_default):
    plan = group4_default.plan
    pipe = plan.pipeline
    assert pipe is not None and pipe.images == pipe.micro_batch == 10_000
    assert len(pipe.segments) == 1 and not pipe.segments[0].writes
    bounds, totals = pipe.bounds, pipe.totals
    assert bounds["best_ii_ns"] <= bounds["ii_lower_bound_ns"] <= totals.ii_ns
    assert totals.ii_ns <= 1.05 * bounds["ii_lower_bound_ns"]
    assert totals.allocated_utilization <= bounds["best_allocated_utilization"] + 1e-9
    assert totals.allocated_utilization >= bounds["best_allocated_utilization"] - 0.05
    # Pipelining N images beats running them one batch after another by far.
    assert totals.makespan_ns * 10 <= plan.totals.makespan_ns * totals.images
    assert validate(plan) == []


def _forge(plan_dict: dict, change) -> list[str]:
    forged = copy.deepcopy(plan_dict)
    change(forged)
    return [str(v) for v in validate(forged)]


def test_validator_rejects_hand_made_modulo_conflicts(group4_default):
    data = group4_default.plan.to_dict()
    slots = data["pipeline"]["segments"][0]["slots"]
    by_op = {s["op"]: s for s in slots}
    ops = {o["id"]: o for o in data["operators"]}
    # Two operators sharing one weight matrix, moved to the same phase of the period.
    sharing = {}
    for o in data["operators"]:
        if o["kind"] == "mvm":
            sharing.setdefault(tuple(o["weights"]), []).append(o["id"])
    first, second = next(ids for ids in sharing.values() if len(ids) > 1)[:2]

    def same_phase(d):
        segment = d["pipeline"]["segments"][0]
        slot = {s["op"]: s for s in segment["slots"]}
        slot[second]["offset_ns"] = slot[first]["offset_ns"] + segment["ii_ns"] * 3

    found = _forge(data, same_phase)
    assert any(v.startswith("double-booked") and "crossbar" in v and "modulo II" in v
               for v in found)

    consumer = next(o for o in data["operators"] if o["deps"])
    producer = consumer["deps"][0]

    def early(d):
        slot = {s["op"]: s for s in d["pipeline"]["segments"][0]["slots"]}
        slot[consumer["id"]]["offset_ns"] = slot[producer]["offset_ns"]

    assert any(v.startswith("dependency: pipeline slot") for v in _forge(data, early))

    def below_bound(d):
        bound = d["pipeline"]["bounds"]["ii_lower_bound_ns"]
        d["pipeline"]["segments"][0]["ii_ns"] = bound - 1

    assert any("below the resource bound" in v for v in _forge(data, below_bound))

    def shorter(d):
        mvm = next(s for s in d["pipeline"]["segments"][0]["slots"] if s["placements"])
        mvm["duration_ns"] = 1

    assert any("the cost model needs" in v for v in _forge(data, shorter))

    def lanes(d):
        digital = next(s for s in d["pipeline"]["segments"][0]["slots"] if s["units"])
        digital["units"] = list(range(40))

    assert any("distinct ones" in v for v in _forge(data, lanes))
    assert ops and by_op  # the forgeries above edited real entries


def test_plan_size_does_not_depend_on_images(group4_files, tmp_path):
    one = compile_detailed(group4_files, "neurosim-22nm", images=1).plan
    many = compile_detailed(group4_files, "neurosim-22nm", images=10_000).plan
    assert one.pipeline is not None and many.pipeline is not None
    assert one.pipeline.segments == many.pipeline.segments
    assert abs(len(one.to_json()) - len(many.to_json())) < 100
    assert many.pipeline.totals.makespan_ns - one.pipeline.totals.makespan_ns == (
        9_999 * many.pipeline.totals.ii_ns)


def test_cli_images_and_simulate_report_the_pipeline(group4_files, tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert main(["compile", *map(str, group4_files), "-o", str(out), "--images", "500"]) == 0
    assert "pipelined, 500 images: II" in capsys.readouterr().out
    assert json.loads(out.read_text())["pipeline"]["images"] == 500
    assert main(["simulate", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pipeline"]["totals"]["images"] == 500
    assert report["pipeline"]["bounds"]["gap"] >= 0
    assert main(["compile", *map(str, group4_files), "-o", str(out), "--force",
                 "--images", "0"]) == 2


def _small_edge():
    from enasa_compiler.targets.target import target_from_dict

    data = load_target("edge").to_dict()
    data["name"] = "edge-64"
    data["chip"]["crossbars"] = 64
    return target_from_dict(data)


@pytest.fixture(scope="module")
def segmented(group4_files):
    """The four-subnet group on a chip too small for its weights, OPS and FCFS order."""
    target = _small_edge()
    return {solver: compile_detailed(group4_files, target, solver=solver, images=1000).plan
            for solver in ("ops", "fcfs")}


def test_segmented_pipeline_is_valid_and_counts_writes(segmented):
    for plan in segmented.values():
        pipe = plan.pipeline
        assert plan.mode == "dynamic" and pipe is not None and len(pipe.segments) > 1
        assert validate(plan) == []
        tiles = sum(len(w.tiles) for w in plan.weights)
        writes = sum(len(seg.writes) for seg in pipe.segments)
        assert writes >= tiles  # every tile is written at least once per pass
        passes = -(-pipe.images // pipe.micro_batch)
        per_pass_pj = sum(w.energy_pj for seg in pipe.segments for w in seg.writes)
        assert pipe.totals.write_energy_pj == pytest.approx(passes * per_pass_pj, rel=1e-6)
        assert pipe.totals.makespan_ns >= passes * sum(
            seg.duration_ns(min(pipe.micro_batch, pipe.images)) for seg in pipe.segments
        ) // 2
    ops, fcfs = segmented["ops"].pipeline, segmented["fcfs"].pipeline
    # The ranking groups weight-sharing operators of different subnets into one
    # segment, so their matrix is written once per pass, not once per subnet.
    assert sum(len(s.writes) for s in ops.segments) < sum(len(s.writes) for s in fcfs.segments)


def test_validator_rejects_a_segment_missing_its_writes(segmented):
    data = segmented["ops"].to_dict()
    forged = copy.deepcopy(data)
    segment = next(s for s in forged["pipeline"]["segments"] if s["writes"])
    segment["writes"] = segment["writes"][1:]
    assert any("holds" in str(v) for v in validate(forged))
    forged = copy.deepcopy(data)
    # Running a later segment's operator first breaks the data flow between segments.
    first, last = forged["pipeline"]["segments"][0], forged["pipeline"]["segments"][-1]
    first["slots"], last["slots"] = last["slots"], first["slots"]
    assert any(str(v).startswith(("dependency", "pipeline")) for v in validate(forged))


def test_cpsat_proves_the_bisection_optimal_and_the_schedule_meets_it(group4_files):
    """Two exact methods agree on the minimal II bound; the 4-subnet plan reaches it."""
    from enasa_compiler.frontend import load_group
    from enasa_compiler.passes.lower import lower
    from enasa_compiler.passes.mapping.periodic_cpsat import minimal_ii_cpsat
    from enasa_compiler.pipeline import build_group_model

    target = load_target("neurosim-22nm")
    group, _ = build_group_model(load_group(group4_files))
    program = lower(group, target)
    costs = image_costs(program, target)
    proof = minimal_ii_cpsat(program, target, costs)
    assert proof.status == "OPTIMAL"
    assert proof.ii_ns == proof.bound_ns == balance_throughput(program, target, costs).ii_ns
    plan = compile_detailed(group4_files, target).plan
    assert plan.pipeline is not None
    assert plan.pipeline.totals.ii_ns <= 1.10 * proof.bound_ns


@pytest.mark.parametrize("which", ["resident", "segmented"])
def test_pipelined_execution_gives_the_batch_schedule_outputs(which, group4_default,
                                                             segmented):
    """Image by image through the pipeline's segments, writes and slots: same outputs."""
    import numpy as np

    from enasa_compiler.targets.executor import execute_plan

    plan = group4_default.plan if which == "resident" else segmented["ops"]
    group = group4_default.group_model
    images = np.random.default_rng(0).normal(
        size=(3, *plan.input_shape[1:])).astype(np.float32)
    batch = execute_plan(plan, group, images)
    piped = execute_plan(plan, group, images, pipelined=True)
    for a, b in zip(batch.outputs, piped.outputs, strict=True):
        for name in a:
            np.testing.assert_allclose(b[name], a[name], rtol=0, atol=1e-9)
