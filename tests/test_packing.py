"""Tile packing of resident pipelines (issue #15): the packer, the plan, the checks.

The packer (passes/mapping/packing.py) puts the small tiles of several crossbars into
one where their cells fit side by side and their busy phases never overlap modulo II.
These tests check its invariants on random instances, its result against a
brute-force optimum on tiny ones, the packed plan of the 4-subnet group (valid, same
II, fewer crossbars, same outputs through the pipelined executor), and that the
validator rejects hand-made corruptions of a packed plan.
"""

from __future__ import annotations

import copy
import itertools
import json
import random
from typing import Any

import pytest

from enasa_compiler.passes.mapping.packing import (
    Packing,
    PackItem,
    _merge,
    busy_phases,
    pack_items,
    packing_lower_bound,
    phase_lower_bound,
)
from enasa_compiler.validation.validator import validate

ROWS, COLS = 128, 128


def _random_items(rng: random.Random, count: int, ii: int) -> list[PackItem]:
    items = []
    for key in range(count):
        rows = rng.choice([ROWS, 64, 32, 16, 80, 27])
        cols = rng.choice([COLS, 64, 32, 100])
        phases = []
        for _ in range(rng.randint(1, 3)):
            start = rng.randrange(ii)
            phases.append((start, min(ii, start + rng.randint(1, ii // 3))))
        items.append(PackItem(key, rows, cols, _merge(phases)))
    return items


def _check_packing(items: list[PackItem], ii: int, packing: Packing) -> None:
    by_crossbar: dict[int, list[PackItem]] = {}
    for item in items:
        by_crossbar.setdefault(packing.spots[item.key].crossbar, []).append(item)
    assert packing.crossbars_after == len(by_crossbar) <= len(items)
    assert packing.lower_bound <= packing.crossbars_after
    assert packing.phase_lower_bound <= packing.crossbars_after
    for members in by_crossbar.values():
        regions: list[tuple[int, int, int, int]] = []
        for item in members:
            spot = packing.spots[item.key]
            region = (spot.row_offset, spot.col_offset, spot.row_offset + item.rows,
                      spot.col_offset + item.cols)
            assert region[0] >= 0 and region[1] >= 0
            assert region[2] <= ROWS and region[3] <= COLS  # inside the crossbar
            for other in regions:  # no two regions share a cell
                assert not (region[0] < other[2] and other[0] < region[2]
                            and region[1] < other[3] and other[1] < region[3])
            regions.append(region)
        phases = sorted(p for item in members for p in item.phases)
        for (_, end), (start, _) in itertools.pairwise(phases):
            assert end <= start  # never two computations at once modulo II
        assert sum(item.busy_ns for item in members) <= ii


def test_packer_regions_never_overlap_and_times_fit_the_period():
    rng = random.Random(7)
    for trial in range(40):
        ii = rng.randint(100, 10_000)
        items = _random_items(rng, rng.randint(1, 60), ii)
        _check_packing(items, ii, pack_items(items, ROWS, COLS, ii))
        assert trial >= 0


def test_full_size_tiles_are_never_shared():
    items = [PackItem(0, ROWS, COLS, ((0, 1),)), PackItem(1, 16, 16, ((5, 6),)),
             PackItem(2, 16, 16, ((7, 8),))]
    packing = pack_items(items, ROWS, COLS, 100)
    assert packing.spots[0].crossbar not in {packing.spots[1].crossbar,
                                             packing.spots[2].crossbar}
    assert packing.crossbars_after == packing.lower_bound == 2


def _optimum(items: list[PackItem]) -> int:
    """Fewest crossbars over every partition of the items (tiny instances only).

    A group fits one crossbar when its phases are disjoint and its regions fit;
    regions are tried at every corner order (all placements of so few rectangles are
    found by the bottom-left rule over some insertion order).
    """
    from enasa_compiler.passes.mapping.packing import _Bin

    def fits(group: tuple[PackItem, ...]) -> bool:
        phases = sorted(p for item in group for p in item.phases)
        if any(a[1] > b[0] for a, b in itertools.pairwise(phases)):
            return False
        for order in itertools.permutations(group):
            box = _Bin()
            for item in order:
                corner = box.corner(item.rows, item.cols, ROWS, COLS)
                if corner is None:
                    break
                box.add(item, *corner)
            else:
                return True
        return False

    best = len(items)

    def search(rest: list[PackItem], bins: list[tuple[PackItem, ...]]) -> None:
        nonlocal best
        if len(bins) >= best:
            return
        if not rest:
            best = len(bins)
            return
        head, tail = rest[0], rest[1:]
        for i, group in enumerate(bins):
            if fits((*group, head)):
                search(tail, [*bins[:i], (*group, head), *bins[i + 1:]])
        search(tail, [*bins, (head,)])

    search(list(items), [])
    return best


def test_packer_against_a_brute_force_optimum_on_tiny_instances():
    """First-fit decreasing finds the optimum on most tiny instances, never 2 worse."""
    rng = random.Random(11)
    ii = 1000
    exact = 0
    for _ in range(60):
        items = _random_items(rng, rng.randint(2, 6), ii)
        found = pack_items(items, ROWS, COLS, ii).crossbars_after
        best = _optimum(items)
        assert packing_lower_bound(items, ROWS, COLS, ii) <= best <= found <= best + 1
        assert phase_lower_bound(items, ROWS, COLS) <= best
        exact += found == best
    assert exact >= 50


def test_a_designed_instance_packs_to_its_lower_bound():
    # Four half-crossbar tiles busy a quarter of the period each, at different phases:
    # two crossbars by area, one by time; the packer needs exactly two.
    items = [PackItem(k, 64, COLS, ((k * 250, k * 250 + 250),)) for k in range(4)]
    packing = pack_items(items, ROWS, COLS, 1000)
    assert packing.crossbars_after == packing.lower_bound == 2


def test_busy_phases_wrap_around_the_period():
    from enasa_compiler.ir import PeriodicSlot, Placement

    slots = [PeriodicSlot("a", 950, 100, (Placement("t", 3),)),
             PeriodicSlot("b", 2010, 10, (Placement("t", 3),))]
    assert busy_phases(slots, 1000) == {3: ((0, 50), (950, 1000))}


# ---- the packed plan of the 4-subnet group ------------------------------------------
@pytest.fixture(scope="module")
def packed(group4_files):
    from enasa_compiler.pipeline import compile_detailed

    return compile_detailed(group4_files, "neurosim-22nm", pack_tiles=True)


def test_packed_plan_is_valid_keeps_ii_and_uses_fewer_crossbars(packed, group4_default):
    plan, unpacked = packed.plan, group4_default.plan
    assert validate(plan) == []
    assert plan.pipeline is not None and unpacked.pipeline is not None
    t, b = plan.pipeline.totals, plan.pipeline.bounds
    assert t.ii_ns == unpacked.pipeline.totals.ii_ns
    assert b["unpacked_crossbars"] == unpacked.pipeline.totals.crossbars_used
    assert b["packed_crossbars_lower_bound"] <= t.crossbars_used
    assert t.crossbars_used < unpacked.pipeline.totals.crossbars_used
    assert t.allocated_utilization > unpacked.pipeline.totals.allocated_utilization
    assert t.busy_crossbar_ns_per_image == unpacked.pipeline.totals.busy_crossbar_ns_per_image
    writes = plan.to_dict()["schedule"]["program"]
    assert all("row_offset" in w and "col_offset" in w for w in writes)
    assert "row_offset" not in unpacked.to_json()  # packing off: the old bytes


def test_packed_plan_round_trips_through_its_file(packed, tmp_path):
    from enasa_compiler.plan import Plan

    path = packed.plan.save(tmp_path / "packed.json")
    again = Plan.load(path)
    assert again.to_json() == packed.plan.to_json()
    assert validate(again) == []


def test_packed_plan_executes_to_the_unpacked_outputs(packed, group4_default):
    """simulate --execute --pipelined on the packed plan: the unpacked plan's outputs."""
    import numpy as np

    from enasa_compiler.targets.executor import execute_plan

    plan = packed.plan
    images = np.random.default_rng(0).normal(
        size=(2, *plan.input_shape[1:])).astype(np.float32)
    reference = execute_plan(group4_default.plan, group4_default.group_model, images)
    piped = execute_plan(plan, packed.group_model, images, pipelined=True)
    batch = execute_plan(plan, packed.group_model, images)
    for a, b, c in zip(reference.outputs, piped.outputs, batch.outputs, strict=True):
        for name in a:
            np.testing.assert_allclose(b[name], a[name], rtol=0, atol=1e-9)
            np.testing.assert_allclose(c[name], a[name], rtol=0, atol=1e-9)


# ---- the validator on corrupted packed plans -----------------------------------------
def _shared(data: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    """A crossbar holding several packed tiles, and its writes."""
    by_crossbar: dict[int, list[dict[str, Any]]] = {}
    for write in data["schedule"]["program"]:
        by_crossbar.setdefault(write["crossbar"], []).append(write)
    crossbar, writes = max(by_crossbar.items(), key=lambda kv: len(kv[1]))
    assert len(writes) >= 2
    return crossbar, writes


@pytest.fixture(scope="module")
def packed_data(packed) -> dict[str, Any]:
    return json.loads(packed.plan.to_json())


def _kinds(data: dict[str, Any]) -> set[str]:
    return {str(v.kind) for v in validate(data)}


def test_overlapping_regions_are_rejected(packed_data):
    data = copy.deepcopy(packed_data)
    _, writes = _shared(data)
    writes[1]["row_offset"], writes[1]["col_offset"] = (writes[0]["row_offset"],
                                                        writes[0]["col_offset"])
    assert "program" in _kinds(data)


def test_a_region_outside_the_crossbar_is_rejected(packed_data):
    data = copy.deepcopy(packed_data)
    _, writes = _shared(data)
    writes[0]["row_offset"] = data["target"]["crossbar"]["rows"] - 1
    assert "tile-size" in _kinds(data)


def test_one_offset_only_is_rejected(packed_data):
    data = copy.deepcopy(packed_data)
    _, writes = _shared(data)
    del writes[0]["col_offset"]
    assert "program" in _kinds(data)


def test_modulo_ii_overlap_on_a_packed_crossbar_is_rejected(packed_data):
    data = copy.deepcopy(packed_data)
    crossbar, writes = _shared(data)
    slots = data["pipeline"]["segments"][0]["slots"]
    sharing = [s for s in slots if any(p["crossbar"] == crossbar for p in s["placements"])]
    assert len(sharing) >= 2
    ii = data["pipeline"]["segments"][0]["ii_ns"]
    a, b = sharing[:2]
    # Move b to a's phase, a whole number of periods later (after its producers).
    b["offset_ns"] = a["offset_ns"] + ii * (1 + max(0, b["offset_ns"] - a["offset_ns"]) // ii)
    assert "double-booked" in _kinds(data)


def test_a_packed_write_over_another_tile_evicts_it(packed_data):
    """Two packed tiles at one corner: the one written first is gone when images run."""
    data = copy.deepcopy(packed_data)
    _, writes = _shared(data)
    first, second = sorted(writes[:2], key=lambda w: w["end_ns"])
    second["row_offset"], second["col_offset"] = first["row_offset"], first["col_offset"]
    kinds = _kinds(data)
    assert {"program", "pipeline", "not-programmed"} <= kinds


def test_plain_and_packed_writes_on_one_crossbar_are_rejected(packed_data):
    data = copy.deepcopy(packed_data)
    _, writes = _shared(data)
    del writes[0]["row_offset"], writes[0]["col_offset"]
    assert "program" in _kinds(data)


@pytest.mark.parametrize("key", ["unpacked_crossbars", "packed_crossbars_lower_bound"])
def test_wrong_packing_bounds_are_rejected(packed_data, key):
    data = copy.deepcopy(packed_data)
    data["pipeline"]["bounds"][key] += 1
    assert "totals" in _kinds(data)


def test_packing_bounds_in_a_plan_without_packing_are_checked(compiled_plan_path):
    data = json.loads(compiled_plan_path.read_text())
    assert validate(data) == []  # an old plan: no offsets, no packing bounds
    data["pipeline"]["bounds"]["unpacked_crossbars"] = 1
    assert "totals" in _kinds(data)


def test_compile_cli_packs_and_reports_crossbars_before_and_after(group4_files, tmp_path,
                                                                   capsys):
    from enasa_compiler.cli import main

    out = tmp_path / "plan.json"
    assert main(["compile", *map(str, group4_files), "-o", str(out), "--pack"]) == 0
    text = capsys.readouterr().out
    assert "tiles packed from" in text
    assert main(["simulate", str(out)]) == 0
    assert "tile packing" in capsys.readouterr().out


def test_packed_plan_runs_quantized_with_stuck_cells_at_its_corner(packed):
    """Quantized, with stuck-at faults: a packed tile meets the faults of its region."""
    import numpy as np

    from enasa_compiler.targets.executor import execute_plan

    plan = packed.plan
    images = np.random.default_rng(1).normal(
        size=(1, *plan.input_shape[1:])).astype(np.float32)
    clean = execute_plan(plan, packed.group_model, images, mode="quantized",
                         adc_range="full", pipelined=True)
    faulty = execute_plan(plan, packed.group_model, images, mode="quantized",
                          adc_range="full", stuck_at_fraction=0.05, pipelined=True)
    for a, b in zip(clean.outputs, faulty.outputs, strict=True):
        for name in a:
            assert a[name].shape == b[name].shape
            assert np.isfinite(b[name]).all()


def test_executor_refuses_a_packed_region_outside_the_crossbar(packed, group4_default):
    import numpy as np

    from enasa_compiler.plan import Plan
    from enasa_compiler.targets._plan_runner import ExecutionError
    from enasa_compiler.targets.executor import execute_plan

    data = json.loads(packed.plan.to_json())
    _, writes = _shared(data)
    writes[0]["col_offset"] = data["target"]["crossbar"]["cols"]
    plan = Plan.from_dict(data)
    images = np.zeros((1, *plan.input_shape[1:]), dtype=np.float32)
    with pytest.raises(ExecutionError, match="does not fit"):
        execute_plan(plan, packed.group_model, images)
