"""Segment overlap: a segmented pipeline's writes prefetched while the previous segment runs.

Hand-timed segments (wait, makespan, exposed and hidden write time), the crossbar
choice that makes room for prefetching, never slower than the sequential form on
random groups, the validator's rejections, and the executor on a real group.
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import replace
from typing import Any

import pytest
from _programs import random_program

from enasa_compiler.frontend import SubnetModel
from enasa_compiler.ir import (
    CostTable,
    EventCost,
    MvmOp,
    PeriodicSchedule,
    PeriodicSlot,
    PipelineSegment,
    Placement,
    ProgramEvent,
    WeightMatrix,
)
from enasa_compiler.passes.lower import tile_matrix
from enasa_compiler.passes.mapping import schedule_ops
from enasa_compiler.passes.mapping.ops import RankingPolicy
from enasa_compiler.passes.mapping.segments import _assign, _kept, _writes
from enasa_compiler.passes.price import price
from enasa_compiler.pipeline import assemble_plan, build_segmented_pipeline
from enasa_compiler.plan import Plan
from enasa_compiler.plan.totals import compute_pipeline_totals, pipeline_write_ns
from enasa_compiler.targets import load_target, target_from_dict
from enasa_compiler.validation.validator import validate

_CHIP = load_target("edge").chip


def _segment(crossbar: int, write_ns: int, *, prefetch: bool, offset: int = -1,
             duration: int = 50, ii: int = 50) -> PipelineSegment:
    """One slot on ``crossbar`` after one write of ``write_ns`` into it."""
    write = ProgramEvent(f"t{crossbar}", crossbar, 0, write_ns, 1.0, prefetch=prefetch)
    start = (0 if prefetch else write_ns) if offset < 0 else offset
    slot = PeriodicSlot(f"op{crossbar}", start, duration,
                        (Placement(f"t{crossbar}", crossbar),))
    return PipelineSegment(writes=(write,), schedule=PeriodicSchedule(ii, (slot,)))


def _totals(segments: list[PipelineSegment], images: int, micro_batch: int) -> Any:
    return compute_pipeline_totals(images=images, micro_batch=micro_batch, start_ns=0,
                                   segments=segments, image_energy_pj=0.0, program=(),
                                   moved_bytes_per_image=0, chip=_CHIP)


def test_hand_timed_prefetch_hides_behind_the_previous_segment():
    # A writes crossbar 0 in place (100 ns), then runs: one image ends at 150 ns, each
    # further image 50 ns later. B's write into crossbar 1 (300 ns) starts with A.
    a = _segment(0, 100, prefetch=False)
    b = _segment(1, 300, prefetch=True)
    assert b.writes_end_ns() == 0 and b.prefetch_end_ns() == 300
    # One image: A finishes at 150, B waits 150 more for its write, then 50: 350 ns
    # (sequential: 150 + 300 + 50 = 500 ns).
    assert b.wait_ns(a.schedule.finish_ns(1)) == 150
    assert _totals([a, b], 1, 1).makespan_ns == 350
    # Four images: A takes 300 ns, the write is hidden: 300 + 200 = 500 (800).
    assert b.wait_ns(a.schedule.finish_ns(4)) == 0
    four = _totals([a, b], 4, 4)
    assert four.makespan_ns == 500 and four.write_ns == 100
    assert pipeline_write_ns([a, b], 4, 4) == {"total_ns": 400, "exposed_ns": 100,
                                              "hidden_ns": 300}
    sequential = [a, _segment(1, 300, prefetch=False)]
    assert _totals(sequential, 1, 1).makespan_ns == 500
    assert _totals(sequential, 4, 4).makespan_ns == 800
    assert pipeline_write_ns(sequential, 4, 4)["hidden_ns"] == 0


def test_first_segment_prefetches_behind_the_previous_pass():
    # Both segments prefetch: A's write hides behind B of the previous pass, but the
    # first pass has nothing before it and waits for it.
    a = _segment(0, 120, prefetch=True)
    b = _segment(1, 120, prefetch=True)
    # Pass 1: A waits 120, runs 4 images (200); B's write (from A's start) is done.
    # Pass 2: A's write started with B of pass 1, which ran 200 ns: no wait.
    totals = _totals([a, b], 8, 4)
    assert totals.makespan_ns == (120 + 200 + 200) + (200 + 200)
    assert totals.write_ns == 120
    assert totals.ii_ns == 400 // 4  # the steady pass
    assert pipeline_write_ns([a, b], 8, 4) == {"total_ns": 480, "exposed_ns": 120,
                                              "hidden_ns": 360}
    # A last, partial pass of one image: B of the full pass (200 ns) hides A's write;
    # A's one image (50 ns) does not hide B's (120 ns): B waits 70.
    assert _totals([a, b], 9, 4).makespan_ns == 920 + 50 + (70 + 50)


def test_totals_without_prefetch_are_the_sequential_sum():
    # Old plans: no write is prefetched; every segment waits for its writes in place.
    segments = [_segment(0, 100, prefetch=False), _segment(1, 300, prefetch=False)]
    totals = _totals(segments, 10, 3)
    per_pass = {3: (100 + 50 + 2 * 50) + (300 + 50 + 2 * 50), 1: (150) + (350)}
    assert totals.makespan_ns == 3 * per_pass[3] + per_pass[1]
    assert totals.write_ns == 4 * 400


def _matrix(name: str) -> WeightMatrix:
    return WeightMatrix(name, f"{abs(hash(name)):064x}", 64, 16, 4,
                        tile_matrix(name, 64, 16, 128, 128, 4))


def _mvm(name: str, weight: WeightMatrix) -> MvmOp:
    return MvmOp(name, "Conv", (0,), ("x",), (f"v{name}",), (weight,), 4, 1024)


def test_crossbars_avoiding_the_previous_segment_make_every_write_a_prefetch():
    # Two segments of two one-tile operators on a chip of four crossbars: the plain
    # choice reuses nothing and writes segment 1 into empty crossbars 2 and 3 anyway;
    # with three segments of two on four crossbars, segment 2 must take crossbars of
    # segment 0, which segment 1 does not use: all prefetched.
    weights = [_matrix(f"w{k}") for k in range(6)]
    ops = [_mvm(f"op{k}", w) for k, w in enumerate(weights)]
    groups = [ops[0:2], ops[2:4], ops[4:6]]
    write_costs = CostTable(batch=1, operators={}, writes={
        w.tiles[0].id: EventCost(1000, 2.0, {}) for w in weights})
    plain = _assign(groups, 4, write_costs)
    assert [sorted(where.values()) for where in plain] == [[0, 1], [2, 3], [0, 1]]
    writes = _writes(plain, _kept(plain), write_costs, True)
    # Segment 0's previous one is segment 2 of the previous pass (crossbars 0, 1).
    assert [[w.prefetch for w in mine] for mine in writes] == [[False, False],
                                                                [True, True],
                                                                [True, True]]
    sequential = _writes(plain, _kept(plain), write_costs, False)
    assert not any(w.prefetch for mine in sequential for w in mine)
    # Five operators on four crossbars: the plain choice evicts the tile needed latest
    # and may take the previous segment's crossbar; avoiding it prefetches more.
    groups = [ops[0:3], ops[3:4], ops[4:6]]
    plain = _assign(groups, 4, write_costs)
    avoiding = _assign(groups, 4, write_costs, avoid_previous=True,
                       first_avoid=frozenset(plain[-1].values()))
    for where, group in zip(avoiding, groups, strict=True):
        assert len(set(where.values())) == len(group)
    count = [sum(w.prefetch for mine in _writes(a, _kept(a), write_costs, True) for w in mine)
             for a in (plain, avoiding)]
    assert count[1] >= count[0]


def _plan(seed: int, images: int, *, overlap: bool = True,
          crossbars: int | None = None) -> tuple[Plan, Any]:
    rng = random.Random(seed)
    program = random_program(rng)
    data = load_target("neurosim-22nm").to_dict()
    largest = max(len(op.tiles) for op in program.mvm_ops())
    data["chip"]["crossbars"] = crossbars or largest + 1 + seed % 3
    data["chip"]["digital_units"] = 2
    target = target_from_dict(data)
    schedule = schedule_ops(program, target, "dynamic")
    costs = price(program, target)
    pipeline = build_segmented_pipeline(program, target, costs, images, RankingPolicy.OPS,
                                        overlap=overlap)
    subnet = SubnetModel(name="s0", sha256="0" * 64, model=None, arch=None)  # type: ignore[arg-type]
    return assemble_plan(program, costs, schedule, target, [subnet], {}, "ops",
                         pipeline=pipeline), pipeline


@pytest.mark.parametrize("images", [1, 7, 1000])
def test_never_slower_than_sequential_and_valid(images):
    hidden = 0
    for seed in range(6):
        plan, pipe = _plan(seed, images)
        sequential_plan, sequential = _plan(seed, images, overlap=False)
        assert pipe.totals.makespan_ns <= sequential.totals.makespan_ns, seed
        # Same energy per write: more writes only where they bought time.
        if pipe.totals.makespan_ns == sequential.totals.makespan_ns:
            assert pipe.totals.write_energy_pj <= sequential.totals.write_energy_pj * (
                1 + 1e-9)
        assert not any(w.prefetch for seg in sequential.segments for w in seg.writes)
        assert validate(plan) == [] and validate(sequential_plan) == []
        times = pipeline_write_ns(pipe.segments, pipe.images, pipe.micro_batch)
        assert times["exposed_ns"] + pipe.totals.compute_ns == pipe.totals.makespan_ns
        assert times["hidden_ns"] >= 0
        hidden += times["hidden_ns"]
    if images == 1:
        assert hidden > 0  # short passes: some writes hide behind compute


def _prefetching_plan() -> dict[str, Any]:
    for seed in range(12):
        plan, pipe = _plan(seed, 1)
        if len(pipe.segments) > 2 and any(w.prefetch for seg in pipe.segments[1:]
                                          for w in seg.writes):
            return plan.to_dict()
    raise AssertionError("no random group prefetches")


def _kinds(data: dict[str, Any]) -> set[str]:
    return {v.kind.value for v in validate(data)}


def test_validator_rejects_corrupted_prefetches():
    data = _prefetching_plan()
    assert validate(data) == []
    segments = data["pipeline"]["segments"]
    k = next(k for k, seg in enumerate(segments)
             if k > 0 and any(w.get("prefetch") for w in seg["writes"]))
    # A write into a crossbar the running (previous) segment computes on.
    forged = copy.deepcopy(data)
    write = next(w for w in forged["pipeline"]["segments"][k]["writes"] if w.get("prefetch"))
    busy = {p["crossbar"] for s in forged["pipeline"]["segments"][k - 1]["slots"]
            for p in s["placements"]}
    write["crossbar"] = min(busy)
    assert "double-booked" in _kinds(forged)
    # A prefetched write that ends after its segment starts computing: the totals
    # hide it without paying the wait.
    forged = copy.deepcopy(data)
    write = next(w for w in forged["pipeline"]["segments"][k]["writes"] if w.get("prefetch"))
    write["end_ns"] += 10**9
    assert "totals" in _kinds(forged)
    # A segment's slot before its in-place writes end.
    forged = copy.deepcopy(data)
    seg = next(s for s in forged["pipeline"]["segments"]
               if any(not w.get("prefetch") for w in s["writes"]))
    end = max(w["end_ns"] for w in seg["writes"] if not w.get("prefetch"))
    seg["slots"][0]["offset_ns"] = end - 1
    assert "dependency" in _kinds(forged)
    # A prefetch in a resident plan's programming, or one with no previous segment.
    forged = copy.deepcopy(data)
    forged["pipeline"]["segments"] = forged["pipeline"]["segments"][:1]
    assert "pipeline" in _kinds(forged)
    # Totals that do not match the overlap.
    forged = copy.deepcopy(data)
    forged["pipeline"]["totals"]["write_ns"] += 1
    assert "totals" in _kinds(forged)


def test_old_plans_without_prefetch_load_and_validate():
    plan, pipe = _plan(1, 7, overlap=False)
    text = plan.to_json()
    assert '"prefetch"' not in text
    assert validate(Plan.from_dict(json.loads(text))) == []
    prefetching = _prefetching_plan()
    assert Plan.from_dict(prefetching).to_dict() == prefetching


def test_resident_plan_with_a_prefetched_programming_event_is_rejected():
    from enasa_compiler.pipeline import build_pipeline

    program = random_program(random.Random(0))
    target = load_target("neurosim-22nm")
    schedule = schedule_ops(program, target, "resident")
    subnet = SubnetModel(name="s0", sha256="0" * 64, model=None, arch=None)
    plan = assemble_plan(program, price(program, target), schedule, target, [subnet], {},
                         "ops", pipeline=build_pipeline(program, target, schedule, 100))
    data = plan.to_dict()
    assert validate(data) == []
    data["schedule"]["program"][0]["prefetch"] = True
    assert "pipeline" in _kinds(data)


def test_executor_runs_a_prefetching_plan_and_catches_a_clobber(group4_files):
    import numpy as np

    from enasa_compiler.pipeline import compile_detailed
    from enasa_compiler.targets._plan_runner import ExecutionError
    from enasa_compiler.targets.executor import execute_plan

    data = load_target("edge").to_dict()
    data["name"] = "edge-64"
    data["chip"]["crossbars"] = 64
    result = compile_detailed(group4_files, target_from_dict(data), solver="fcfs", images=1)
    plan = result.plan
    assert plan.pipeline is not None and validate(plan) == []
    segments = plan.pipeline.segments
    assert sum(w.prefetch for seg in segments for w in seg.writes) > 0
    group = result.group_model
    images = np.random.default_rng(0).normal(
        size=(2, *plan.input_shape[1:])).astype(np.float32)
    batch = execute_plan(plan, group, images)
    piped = execute_plan(plan, group, images, pipelined=True)
    for a, b in zip(batch.outputs, piped.outputs, strict=True):
        for name in a:
            np.testing.assert_allclose(b[name], a[name], rtol=0, atol=1e-9)
    # Prefetch a tile into a crossbar the previous segment still reads: the executor
    # writes it while that segment runs, and the segment finds the wrong tile.
    k = next(k for k in range(1, len(segments)) if segments[k].writes)
    busy = sorted({p.crossbar for s in segments[k - 1].schedule.slots for p in s.placements})
    write = segments[k].writes[0]
    forged = list(segments)
    forged[k] = replace(segments[k], writes=(replace(write, crossbar=busy[0], prefetch=True),
                                             *segments[k].writes[1:]))
    broken = replace(plan, pipeline=replace(plan.pipeline, segments=tuple(forged)))
    with pytest.raises(ExecutionError):
        execute_plan(broken, group, images, pipelined=True)
