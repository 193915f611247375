"""Online mapping: a group compiled from the previous plan's crossbars writes less."""

from __future__ import annotations

import pytest

import enasa_compiler
from enasa_compiler.errors import InputError
from enasa_compiler.targets import load_target, target_from_dict


@pytest.fixture(scope="module")
def previous(group4_files):
    return enasa_compiler.compile(group4_files[:3], "neurosim-22nm")


@pytest.mark.parametrize("mode", ["resident", "dynamic"])
def test_next_group_writes_fewer_cells_from_the_previous_state(group4_files, previous, mode):
    fresh = enasa_compiler.compile(group4_files[1:], "neurosim-22nm", mode=mode)
    online = enasa_compiler.compile(group4_files[1:], "neurosim-22nm", mode=mode,
                                    initial_state=previous)
    assert enasa_compiler.validate(online) == []
    assert online.initial, "shared subnets' tiles should be found in place"
    tiles = online.tiles()
    saved = sum(tiles[p.tile].cells for p in online.initial)
    assert online.totals.cell_writes < fresh.totals.cell_writes
    if mode == "resident":
        # resident: exactly the cells already in place are not written again
        assert online.totals.cell_writes == fresh.totals.cell_writes - saved
    assert online.totals.write_energy_pj < fresh.totals.write_energy_pj


def test_initial_state_round_trips_and_tampering_is_caught(group4_files, previous, tmp_path):
    online = enasa_compiler.compile(group4_files[1:], "neurosim-22nm", initial_state=previous)
    path = online.save(tmp_path / "online.json")
    assert enasa_compiler.Plan.load(path).to_json() == online.to_json()
    data = online.to_dict()
    used = next(p for p in data["initial_state"]
                if any(q["crossbar"] == p["crossbar"] for e in data["schedule"]["compute"]
                       for q in e["placements"]))
    other = next(t["id"] for w in data["weights"] for t in w["tiles"]
                 if t["id"] != used["tile"])
    used["tile"] = other
    kinds = {v.kind for v in enasa_compiler.validate(data)}
    assert "not-programmed" in kinds


def test_initial_state_from_another_target_is_refused(group4_files, previous):
    data = load_target("neurosim-22nm").to_dict()
    data["chip"]["crossbars"] = 2048
    with pytest.raises(InputError, match="was made for target"):
        enasa_compiler.compile(group4_files[1:], target_from_dict(data),
                               initial_state=previous)


def test_cpsat_starts_from_an_initial_state_in_resident_mode(group4_files, previous):
    ops = enasa_compiler.compile(group4_files[1:], "neurosim-22nm", mode="resident",
                                 initial_state=previous)
    cpsat = enasa_compiler.compile(group4_files[1:], "neurosim-22nm", mode="resident",
                                   solver="cpsat", time_limit_s=2.0, initial_state=previous)
    assert enasa_compiler.validate(cpsat) == []
    assert cpsat.solver == "cpsat"
    assert [(p.tile, p.crossbar) for p in cpsat.initial] == [
        (p.tile, p.crossbar) for p in ops.initial]
    # The same tiles are in place, so both write the same cells; CP-SAT is no slower.
    assert cpsat.totals.cell_writes == ops.totals.cell_writes
    assert cpsat.totals.makespan_ns <= ops.totals.makespan_ns
    in_place = {p.tile for p in cpsat.initial}
    assert not in_place & {e.tile for e in cpsat.program}


def test_bound_counts_no_writes_for_tiles_in_place(group4_files, previous):
    from enasa_compiler.frontend import load_group
    from enasa_compiler.passes.lower import lower
    from enasa_compiler.passes.mapping.bounds import makespan_lower_bound
    from enasa_compiler.pipeline import build_group_model

    target = load_target("neurosim-22nm")
    program = lower(build_group_model(load_group(group4_files[1:]))[0], target)
    every_tile = [t.id for w in program.weight_matrices() for t in w.tiles]
    empty = makespan_lower_bound(program, target)
    full = makespan_lower_bound(program, target, every_tile)
    # With every tile in place nothing waits for a write: the bound drops by at least
    # the shortest write, and stays a bound of the plan compiled that way.
    assert full.critical_path_ns < empty.critical_path_ns
    assert full.capacity_ns <= empty.capacity_ns


def test_cpsat_with_an_initial_state_and_dynamic_mapping_is_refused(group4_files,
                                                                    previous):
    with pytest.raises(InputError, match="initial state in resident mode only"):
        enasa_compiler.compile(group4_files[1:], "neurosim-22nm", solver="cpsat",
                               mode="dynamic", initial_state=previous)
