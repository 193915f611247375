"""Validator fuzzing: >= 1000 random corruptions of 38 kinds, each rejected rightly.

Valid plans come from OPS on random operator graphs (resident and dynamic), each with
its pipelined run of many images (plan format 3's ``pipeline``: one periodic segment
for a resident plan, segments with their own writes for a dynamic one); each
corruption edits the plan's JSON the way a buggy tool or a tampering user might,
and the validator must name the right kind of violation, without crashing. A second
fuzzer writes random values of every JSON type into random fields of ``pipeline``:
the validator must never crash, and must reject every value of the wrong type.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Any

import pytest
from _programs import random_program

from enasa_compiler.frontend import SubnetModel
from enasa_compiler.ir import CrossbarProgram, MvmOp, Op, SignedScheme, WeightMatrix
from enasa_compiler.passes.lower import tile_matrix
from enasa_compiler.passes.mapping import schedule_ops
from enasa_compiler.passes.mapping.ops import RankingPolicy
from enasa_compiler.passes.price import price
from enasa_compiler.pipeline import assemble_plan, build_pipeline, build_segmented_pipeline
from enasa_compiler.targets import load_target, target_from_dict
from enasa_compiler.validation.validator import validate

Plan = dict[str, Any]


def _valid_plans() -> list[Plan]:
    plans = []
    for seed in range(6):
        rng = random.Random(seed)
        program = random_program(rng)
        data = load_target("neurosim-22nm").to_dict()
        largest = max(len(op.tiles) for op in program.mvm_ops())
        data["chip"]["crossbars"] = largest + 1 if seed % 2 else 64
        data["chip"]["digital_units"] = 2
        target = target_from_dict(data)
        schedule = schedule_ops(program, target, "dynamic" if seed % 2 else "resident")
        subnet = SubnetModel(name="s0", sha256="0" * 64, model=None, arch=None)  # type: ignore[arg-type]
        costs = price(program, target)
        images = (1, 7, 10_000)[seed % 3]
        pipeline = (build_segmented_pipeline(program, target, costs, images, RankingPolicy.OPS)
                    if seed % 2 else build_pipeline(program, target, schedule, images))
        plans.append(assemble_plan(program, costs, schedule, target, [subnet], {}, "ops",
                                   pipeline=pipeline).to_dict())
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
    plan["version"] = rng.choice([0, 1, 2, 99, "3"])
    return "schema"


def _tampered_target(plan: Plan, rng: random.Random) -> str:
    plan["target"]["chip"]["crossbars"] += rng.randint(1, 100)
    return "target"


def _unknown_tile(plan: Plan, rng: random.Random) -> str:
    event = rng.choice(_mvm_events(plan))
    event["placements"][0]["tile"] = f"nowhere.t{rng.randint(0, 9)}"
    return "unknown-ref"


# ---- the pipelined run (plan format 3) ----------------------------------------------
# Each returns the kind the validator must report, or None when the plan drawn has
# nothing to corrupt that way (the test then draws another plan).
def _segments(plan: Plan) -> list[dict[str, Any]]:
    return plan["pipeline"]["segments"]


Slot = tuple[dict[str, Any], dict[str, Any]]


def _slots(plan: Plan, *, mvm: bool | None = None) -> list[Slot]:
    """(segment, slot) pairs; MVM slots only, digital only, or all."""
    return [(seg, slot) for seg in _segments(plan) for slot in seg["slots"]
            if mvm is None or bool(slot["placements"]) == mvm]


def _ii_below_longest_slot(plan: Plan, rng: random.Random) -> str | None:
    segments = [seg for seg in _segments(plan)
                if max(s["duration_ns"] for s in seg["slots"]) > 1]
    if not segments:
        return None
    segment = rng.choice(segments)
    segment["ii_ns"] = rng.randint(1, max(s["duration_ns"] for s in segment["slots"]) - 1)
    return "duration"


def _ii_raised(plan: Plan, rng: random.Random) -> str:
    rng.choice(_segments(plan))["ii_ns"] += rng.randint(1, 5000)
    return "totals"  # the gap and the totals no longer follow from it


def _pipeline_starts_before_programming(plan: Plan, rng: random.Random) -> str | None:
    end = max((e["end_ns"] for e in plan["schedule"]["program"]), default=0)
    if plan["mode"] != "resident" or end == 0:
        return None
    plan["pipeline"]["start_ns"] = rng.randint(0, end - 1)
    return "pipeline"


def _slot_before_its_producer(plan: Plan, rng: random.Random) -> str | None:
    ops = {o["id"]: o for o in plan["operators"]}
    producer = {v: o["id"] for o in plan["operators"] for v in o["outputs"]}
    candidates = []
    for segment in _segments(plan):
        here = {s["op"]: s for s in segment["slots"]}
        for slot in segment["slots"]:
            op = ops[slot["op"]]
            deps = set(op["deps"]) | {producer[v] for v in op["inputs"] if v in producer}
            candidates += [(slot, here[d]) for d in sorted(deps) if d in here]
    if not candidates:
        return None
    slot, before = rng.choice(candidates)
    end = before["offset_ns"] + before["duration_ns"]
    slot["offset_ns"] = end - rng.randint(1, end)
    return "dependency"


def _slot_before_its_segment_writes(plan: Plan, rng: random.Random) -> str | None:
    # In-place writes only: prefetched ones may end after the segment's slot offsets
    # (they started during the previous segment; the totals charge any wait).
    def in_place(seg: dict[str, Any]) -> list[int]:
        return [w["end_ns"] for w in seg["writes"] if not w.get("prefetch")]

    segments = [seg for seg in _segments(plan) if max(in_place(seg), default=0) > 0]
    if not segments:
        return None
    segment = rng.choice(segments)
    end = max(in_place(segment))
    rng.choice(segment["slots"])["offset_ns"] = rng.randint(0, end - 1)
    return "dependency"


def _slot_shorter_than_its_cost(plan: Plan, rng: random.Random) -> str | None:
    slots = [slot for _, slot in _slots(plan) if slot["duration_ns"] > 1]
    if not slots:
        return None
    slot = rng.choice(slots)
    slot["duration_ns"] = rng.randint(1, slot["duration_ns"] - 1)
    return "duration"


def _slot_longer_than_ii(plan: Plan, rng: random.Random) -> str:
    segment, slot = rng.choice(_slots(plan))
    slot["duration_ns"] = segment["ii_ns"] + rng.randint(1, 1000)
    return "duration"


def _slots_clash_modulo_ii(plan: Plan, rng: random.Random) -> str | None:
    """Put a slot on another's crossbar (or unit) at the same phase of the period."""
    segment = rng.choice(_segments(plan))
    mvm = [s for s in segment["slots"] if s["placements"]]
    digital = [s for s in segment["slots"] if s["units"]]
    kind = rng.choice([k for k, group in (("mvm", mvm), ("digital", digital))
                       if len(group) >= 2] or [None])
    if kind is None:
        return None
    a, b = rng.sample(mvm if kind == "mvm" else digital, 2)
    b["offset_ns"] = a["offset_ns"] + segment["ii_ns"] * rng.randint(0, 3)
    if kind == "mvm":
        b["placements"][0]["crossbar"] = a["placements"][0]["crossbar"]
    else:
        b["units"][0] = a["units"][0]
    return "double-booked"


def _slot_on_a_crossbar_without_its_tile(plan: Plan, rng: random.Random) -> str | None:
    slots = [slot for _, slot in _slots(plan, mvm=True)]
    if not slots:
        return None
    slot = rng.choice(slots)
    placement = rng.choice(slot["placements"])
    taken = {p["crossbar"] for _, s in _slots(plan, mvm=True) for p in s["placements"]}
    free = [x for x in range(plan["target"]["chip"]["crossbars"]) if x not in taken]
    placement["crossbar"] = rng.choice(free) if free and rng.random() < 0.5 else (
        rng.choice(sorted(taken - {placement["crossbar"]}) or [placement["crossbar"] + 1]))
    return "pipeline"


def _slot_drops_or_repeats_a_tile(plan: Plan, rng: random.Random) -> str | None:
    slots = [slot for _, slot in _slots(plan, mvm=True)]
    if not slots:
        return None
    placements = rng.choice(slots)["placements"]
    if rng.random() < 0.5:
        placements.pop(rng.randrange(len(placements)))
    else:
        placements.append(dict(rng.choice(placements)))
    return "pipeline"


def _digital_slot_units_wrong(plan: Plan, rng: random.Random) -> str | None:
    slots = [slot for _, slot in _slots(plan, mvm=False)]
    if not slots:
        return None
    slot = rng.choice(slots)
    chip = plan["target"]["chip"]
    slot["units"] = rng.choice([
        [], [chip["digital_units"] + rng.randint(0, 5)], slot["units"] * 2,
        list(range(chip["digital_lanes_per_op"] + 1)),
    ]) or []
    return "pipeline"


def _mvm_slot_names_units(plan: Plan, rng: random.Random) -> str | None:
    slots = [slot for _, slot in _slots(plan, mvm=True)]
    if not slots:
        return None
    rng.choice(slots)["units"] = [0]
    return "pipeline"


def _slot_removed_or_repeated(plan: Plan, rng: random.Random) -> str:
    segment = rng.choice(_segments(plan))
    slots = segment["slots"]
    if rng.random() < 0.5 and len(slots) > 0:
        slots.pop(rng.randrange(len(slots)))
    else:
        slots.append(copy.deepcopy(rng.choice(_slots(plan))[1]))
    return "pipeline"


def _slot_of_unknown_operator(plan: Plan, rng: random.Random) -> str:
    rng.choice(_slots(plan))[1]["op"] = f"ghost{rng.randint(0, 99)}"
    return "pipeline"


def _pipeline_bounds_wrong(plan: Plan, rng: random.Random) -> str:
    bounds = plan["pipeline"]["bounds"]
    key = rng.choice(["ii_lower_bound_ns", "gap", "best_ii_ns"])
    if key == "ii_lower_bound_ns":
        bounds[key] += rng.choice([-1, 1]) * rng.randint(1, 100)
        bounds[key] = abs(bounds[key]) if bounds[key] < 0 else bounds[key]
    elif key == "gap":
        bounds[key] = min(1.0, bounds[key] + rng.uniform(0.01, 0.5)) if bounds[key] < 0.5 \
            else bounds[key] - rng.uniform(0.01, 0.5)
    else:
        bounds[key] = bounds["ii_lower_bound_ns"] + rng.randint(1, 1000)
    return "totals"


def _pipeline_totals_wrong(plan: Plan, rng: random.Random) -> str:
    totals = plan["pipeline"]["totals"]
    key = rng.choice(["ii_ns", "latency_ns", "makespan_ns", "busy_crossbar_ns_per_image",
                      "crossbars_used", "compute_ns", "write_ns", "offchip_bytes",
                      "energy_pj", "compute_energy_pj", "write_energy_pj",
                      "allocated_utilization", "utilization"])
    if isinstance(totals[key], float):
        totals[key] = totals[key] * rng.uniform(1.01, 2.0) + rng.uniform(1.0, 1e3)
    else:
        totals[key] += rng.randint(1, 1000)
    return "totals"


def _pipeline_images_disagree(plan: Plan, rng: random.Random) -> str:
    pipeline = plan["pipeline"]
    key = rng.choice(["images", "micro_batch"])
    pipeline[key] = pipeline["images"] + rng.randint(1, 1000)
    return "pipeline"


def _resident_pipeline_gets_writes(plan: Plan, rng: random.Random) -> str | None:
    if plan["mode"] != "resident" or not plan["schedule"]["program"]:
        return None
    write = dict(rng.choice(plan["schedule"]["program"]))
    _segments(plan)[0]["writes"].append(write)
    return "pipeline"


def _prefetched(plan: Plan) -> list[tuple[int, dict[str, Any]]]:
    """(segment index, write) of every prefetched write (segment overlap)."""
    return [(k, w) for k, seg in enumerate(_segments(plan)) for w in seg["writes"]
            if w.get("prefetch")]


def _prefetch_into_a_running_segments_crossbar(plan: Plan, rng: random.Random) -> str | None:
    """A write made while the previous segment computes, on one of its crossbars."""
    segments = _segments(plan)
    candidates = [(k, w) for k, seg in enumerate(segments) for w in seg["writes"]
                  if len(segments) > 1]
    if not candidates:
        return None
    k, write = rng.choice(candidates)
    previous = segments[k - 1]
    busy = sorted({p["crossbar"] for s in previous["slots"] for p in s["placements"]})
    if not busy:
        return None
    write["prefetch"] = True
    write["crossbar"] = rng.choice(busy)
    return "double-booked"


def _prefetch_ends_late(plan: Plan, rng: random.Random) -> str | None:
    """A prefetched write that ends after its segment would start: the wait is not paid."""
    candidates = _prefetched(plan)
    if not candidates:
        return None
    k, write = rng.choice(candidates)
    segments = _segments(plan)
    previous = segments[k - 1]
    finish = max(s["offset_ns"] + s["duration_ns"] for s in previous["slots"])
    finish += (plan["pipeline"]["micro_batch"] - 1) * previous["ii_ns"]
    first = min(s["offset_ns"] for s in segments[k]["slots"])
    write["end_ns"] = (max(w["end_ns"] for _, w in _prefetched(plan)) + finish + first
                       + rng.randint(1, 10_000))
    return "totals"


def _resident_write_marked_prefetch(plan: Plan, rng: random.Random) -> str | None:
    if plan["mode"] != "resident" or not plan["schedule"]["program"]:
        return None
    rng.choice(plan["schedule"]["program"])["prefetch"] = True
    return "pipeline"


def _pipeline_wrong_type(plan: Plan, rng: random.Random) -> str:
    pipeline = plan["pipeline"]
    target = rng.choice([pipeline, pipeline["totals"], pipeline["bounds"],
                         rng.choice(_segments(plan)), rng.choice(_slots(plan))[1]])
    key = rng.choice(sorted(target))
    if rng.random() < 0.3:
        del target[key]
    else:
        old = target[key]
        target[key] = rng.choice([v for v in ("x", None, [1], {"a": 1}, -1, 1.5, True)
                                  if type(v) is not type(old) or v == -1])
    return "schema"


CORRUPTIONS: list[Callable[[Plan, random.Random], str | None]] = [
    _double_book, _break_dependency, _delete_event, _oversize_tile,
    _compute_before_programming, _wrong_totals, _duplicate_id, _unknown_crossbar,
    _too_short, _missing_key, _wrong_type, _unknown_version, _tampered_target,
    _unknown_tile,
    _ii_below_longest_slot, _ii_raised, _pipeline_starts_before_programming,
    _slot_before_its_producer, _slot_before_its_segment_writes,
    _slot_shorter_than_its_cost, _slot_longer_than_ii, _slots_clash_modulo_ii,
    _slot_on_a_crossbar_without_its_tile, _slot_drops_or_repeats_a_tile,
    _digital_slot_units_wrong, _mvm_slot_names_units, _slot_removed_or_repeated,
    _slot_of_unknown_operator, _pipeline_bounds_wrong, _pipeline_totals_wrong,
    _pipeline_images_disagree, _resident_pipeline_gets_writes, _pipeline_wrong_type,
    _prefetch_into_a_running_segments_crossbar, _prefetch_ends_late,
    _resident_write_marked_prefetch,
]


@pytest.fixture(scope="module")
def plans() -> list[Plan]:
    valid = _valid_plans()
    for plan in valid:
        assert plan["version"] == 3 and plan["pipeline"] is not None
        assert validate(plan) == []
    # Both shapes of pipelined run are fuzzed: one resident segment, written segments.
    assert {p["mode"] for p in valid} == {"resident", "dynamic"}
    assert any(seg["writes"] for p in valid for seg in p["pipeline"]["segments"])
    return valid


def test_a_thousand_random_corruptions_are_all_rejected_with_the_right_kind(plans):
    rng = random.Random(20261127)
    counts: dict[str, int] = {}
    for trial in range(1120):
        corruption = CORRUPTIONS[trial % len(CORRUPTIONS)]
        for _ in range(50):  # draw plans until one has what this corruption edits
            plan = copy.deepcopy(rng.choice(plans))
            expected = corruption(plan, rng)
            if expected is not None:
                break
        else:
            pytest.fail(f"{corruption.__name__} found nothing to corrupt")
        kinds = {v.kind for v in validate(plan)}
        assert expected in kinds, (corruption.__name__, trial, kinds)
        counts[corruption.__name__] = counts.get(corruption.__name__, 0) + 1
    assert len(counts) == len(CORRUPTIONS) >= 30
    assert sum(counts.values()) >= 1000


# ---- tile packing (optional offsets on programming events) ---------------------------
def _packable_program(rng: random.Random) -> CrossbarProgram:
    """A chain of MVM operators on small matrices of their own, run for unlike times."""
    ops: list[Op] = []
    deps: dict[str, tuple[str, ...]] = {}
    for i in range(rng.randint(6, 12)):
        inputs = ("x",) if i == 0 else (f"v{i - 1}",)
        deps[f"op{i}"] = () if i == 0 else (f"op{i - 1}",)
        rows, cols = rng.randint(8, 200), rng.randint(4, 40)
        weight = WeightMatrix(f"w{i}", f"{i:064x}", rows, cols, 4,
                              tile_matrix(f"w{i}", rows, cols, 128, 128, 4))
        ops.append(MvmOp(f"op{i}", "Conv", (0,), inputs, (f"v{i}",), (weight,),
                         rng.choice([1, 4, 16, 64]), rows * cols * 4))
    return CrossbarProgram(ops=tuple(ops), deps=deps, subnet_outputs=((ops[-1].outputs),),
                           input_name="x", input_shape=(1, 3, 8, 8), subnet_names=("s0",),
                           w_bits=8, cell_bits=2, a_bits=8, signed_scheme=SignedScheme.OFFSET)


def _packed_plans() -> list[Plan]:
    """Resident plans with their small tiles packed (pipeline.pack_pipeline)."""
    from enasa_compiler.ir import MappingMode, Schedule
    from enasa_compiler.pipeline import pack_pipeline

    plans = []
    for seed in range(6):
        rng = random.Random(seed)
        program = random_program(rng) if seed % 3 == 2 else _packable_program(rng)
        data = load_target("neurosim-22nm").to_dict()
        data["chip"]["crossbars"] = 64
        data["chip"]["digital_units"] = 2
        target = target_from_dict(data)
        schedule = schedule_ops(program, target, "resident")
        assert schedule.mode is MappingMode.RESIDENT
        subnet = SubnetModel(name="s0", sha256="0" * 64, model=None, arch=None)  # type: ignore[arg-type]
        costs = price(program, target)
        pipeline = build_pipeline(program, target, schedule, (1, 7, 10_000)[seed % 3])
        packed, pipeline = pack_pipeline(program, target, Schedule(
            schedule.mode, schedule.program, schedule.compute), pipeline)
        plans.append(assemble_plan(program, costs, packed, target, [subnet], {}, "ops",
                                   pipeline=pipeline).to_dict())
    return plans


def _shared_crossbar(plan: Plan) -> list[dict[str, Any]] | None:
    by_crossbar: dict[int, list[dict[str, Any]]] = {}
    for write in plan["schedule"]["program"]:
        by_crossbar.setdefault(write["crossbar"], []).append(write)
    shared = [writes for writes in by_crossbar.values() if len(writes) > 1]
    return shared[0] if shared else None


def _packed_regions_overlap(plan: Plan, rng: random.Random) -> str | None:
    writes = _shared_crossbar(plan)
    if writes is None:
        return None
    a, b = rng.sample(writes, 2)
    b["row_offset"], b["col_offset"] = a["row_offset"], a["col_offset"]
    return "program"


def _packed_region_outside(plan: Plan, rng: random.Random) -> str:
    write = rng.choice(plan["schedule"]["program"])
    key, size = rng.choice([("row_offset", "rows"), ("col_offset", "cols")])
    write[key] = plan["target"]["crossbar"][size] - rng.randint(0, 1)
    return "tile-size"


def _packed_one_offset(plan: Plan, rng: random.Random) -> str:
    write = rng.choice(plan["schedule"]["program"])
    del write[rng.choice(["row_offset", "col_offset"])]
    return "program"


def _packed_slots_clash(plan: Plan, rng: random.Random) -> str | None:
    writes = _shared_crossbar(plan)
    if writes is None:
        return None
    crossbar = writes[0]["crossbar"]
    segment = plan["pipeline"]["segments"][0]
    sharing = [s for s in segment["slots"]
               if any(p["crossbar"] == crossbar for p in s["placements"])]
    if len(sharing) < 2:
        return None
    a, b = rng.sample(sharing, 2)
    ii = segment["ii_ns"]
    b["offset_ns"] = a["offset_ns"] + ii * (1 + max(0, b["offset_ns"] - a["offset_ns"]) // ii)
    return "double-booked"


def _packing_bounds_wrong(plan: Plan, rng: random.Random) -> str:
    bounds = plan["pipeline"]["bounds"]
    key = rng.choice(["unpacked_crossbars", "packed_crossbars_lower_bound"])
    bounds[key] += rng.choice([-1, 1]) * rng.randint(1, 5)
    bounds[key] = abs(bounds[key])
    return "totals"


def _packed_offset_wrong_type(plan: Plan, rng: random.Random) -> str:
    write = rng.choice(plan["schedule"]["program"])
    write[rng.choice(["row_offset", "col_offset"])] = rng.choice(["x", None, -1, 1.5, [0]])
    return "schema"


PACKING_CORRUPTIONS: list[Callable[[Plan, random.Random], str | None]] = [
    _packed_regions_overlap, _packed_region_outside, _packed_one_offset,
    _packed_slots_clash, _packing_bounds_wrong, _packed_offset_wrong_type,
]


def test_corruptions_of_packed_plans_are_rejected_with_the_right_kind():
    """Packed plans: every corruption above that applies, and the packing ones."""
    packed = _packed_plans()
    for plan in packed:
        assert validate(plan) == []
    assert any(_shared_crossbar(plan) for plan in packed)
    rng = random.Random(20261201)
    corruptions = CORRUPTIONS + PACKING_CORRUPTIONS * 3
    counts: dict[str, int] = {}
    for trial in range(len(corruptions) * 6):
        corruption = corruptions[trial % len(corruptions)]
        for _ in range(50):
            plan = copy.deepcopy(rng.choice(packed))
            try:
                expected = corruption(plan, rng)
            except (ValueError, IndexError, StopIteration):  # nothing of its kind here
                expected = None
            if expected is not None:
                break
        else:
            continue
        kinds = {v.kind for v in validate(plan)}
        assert expected in kinds, (corruption.__name__, trial, kinds)
        counts[corruption.__name__] = counts.get(corruption.__name__, 0) + 1
    assert {c.__name__ for c in PACKING_CORRUPTIONS} <= set(counts)
    assert sum(counts.values()) >= 250


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of every scalar under ``node`` (dict keys and list indices)."""
    if isinstance(node, dict):
        return [p for key, value in node.items() for p in _leaves(value, (*path, key))]
    if isinstance(node, list):
        return [p for i, value in enumerate(node) for p in _leaves(value, (*path, i))]
    return [path]


_JSON_TYPES = {bool: "boolean", int: "number", float: "number", str: "string",
               type(None): "null", list: "array", dict: "object"}


def test_random_pipeline_values_never_crash_the_validator(plans):
    """Any value of any JSON type in any ``pipeline`` field: violations, never a crash.

    A value of another JSON type than the field's must be rejected; a number of the
    right type may happen to describe another valid run, so only the crash is checked.
    """
    rng = random.Random(31337)
    pool: list[Any] = [0, 1, -1, 2**31, 10**30, 0.5, -0.0, 1e308, True, False, None, "",
                       "x", [], [0], {}, {"op": "x"}]
    rejected = 0
    for trial in range(300):
        plan = copy.deepcopy(rng.choice(plans))
        path = rng.choice(_leaves(plan["pipeline"], ("pipeline",)))
        *parents, key = path
        holder = plan
        for step in parents:
            holder = holder[step]
        old = holder[key]
        new = rng.choice(pool + [old + rng.randint(-3, 3)] if isinstance(old, int)
                         and not isinstance(old, bool) else pool)
        holder[key] = new
        violations = validate(plan)  # must not raise, whatever the value
        if _JSON_TYPES[type(new)] != _JSON_TYPES[type(old)]:
            assert violations, (trial, path, old, new)
            rejected += 1
    assert rejected >= 100
