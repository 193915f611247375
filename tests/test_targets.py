"""Target files: presets load, every field is checked, errors name the field."""

from __future__ import annotations

import json

import pytest

from enasa_compiler.cli import main
from enasa_compiler.errors import InputError
from enasa_compiler.ir import SignedScheme
from enasa_compiler.targets import list_presets, load_target, target_from_dict


def test_neurosim_preset_has_the_v13_defaults():
    target = load_target("neurosim-22nm")
    assert (target.crossbar.rows, target.crossbar.cols, target.crossbar.cell_bits) == (
        128, 128, 2)
    assert (target.precision.adc_bits, target.precision.cols_per_adc) == (5, 8)
    assert (target.crossbar.r_on_ohm, target.crossbar.r_off_ohm) == (6000.0, 900000.0)
    assert target.crossbar.read_pulse_ns == 10.0 and target.clock_ghz == 1.0
    assert target.slices_per_weight == 4 and target.input_cycles == 8
    assert target.adcs_per_crossbar == 16
    # The cell energy is V^2 * mean conductance * pulse, as its source line says.
    expected_pj = 0.5**2 * (1 / 6000 + 1 / 900000) / 2 * 10e-9 * 1e12
    assert target.energy.read_pj_per_cell == pytest.approx(expected_pj, rel=1e-5)


def test_presets_are_listed_and_cite_their_sources(capsys):
    assert {"neurosim-22nm", "isaac-32nm", "edge"} <= set(list_presets())
    for name in ("neurosim-22nm", "isaac-32nm", "edge"):
        assert len(load_target(name).sources) >= 5, name
    assert main(["targets", "--json"]) == 0
    rows = {t["name"]: t for t in json.loads(capsys.readouterr().out)["targets"]}
    assert rows["isaac-32nm"]["crossbars"] == 168 * 12 * 8


def test_hierarchy_counts_follow_the_crossbar_capacity():
    isaac = load_target("isaac-32nm")
    assert (isaac.pes, isaac.tiles, isaac.routers) == (168 * 12, 168, 42)
    assert isaac.crossbars_per_tile == 96 and isaac.columns_per_weight == 8
    # A part-populated last tile still counts as a tile.
    data = load_target("neurosim-22nm").to_dict()
    # neurosim-22nm: 16 crossbars per PE, 4 PEs per tile (NeuroSim's VGG-8 floorplan).
    data["chip"]["crossbars"] = 65
    small = target_from_dict(data)
    assert (small.pes, small.tiles, small.routers) == (5, 2, 1)


def test_isaac_preset_has_the_paper_geometry():
    target = load_target("isaac-32nm")
    assert (target.precision.w_bits, target.precision.a_bits, target.precision.dac_bits,
            target.precision.adc_bits) == (16, 16, 1, 8)
    assert target.input_cycles == 16 and target.adcs_per_crossbar == 1
    assert target.timing.sensing == "overlapped" and target.clock_ghz == 1.2


def test_target_round_trips_through_its_file_format(tmp_path):
    for name in list_presets():
        target = load_target(name)
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(target.to_dict()))
        assert load_target(path) == target


def test_differential_scheme_doubles_the_columns():
    data = load_target("neurosim-22nm").to_dict()
    data["precision"]["signed_scheme"] = "differential"
    target = target_from_dict(data)
    assert target.precision.signed_scheme is SignedScheme.DIFFERENTIAL
    assert target.columns_per_weight == 8


def _set(path: str, value):
    def edit(data):
        *parents, key = path.split(".")
        node = data
        for parent in parents:
            node = node[parent]
        node[key] = value
    return edit


def _rename(path: str, new_key: str):
    def edit(data):
        *parents, key = path.split(".")
        node = data
        for parent in parents:
            node = node[parent]
        node[new_key] = node.pop(key)
    return edit


def _drop(path: str):
    def edit(data):
        *parents, key = path.split(".")
        node = data
        for parent in parents:
            node = node[parent]
        del node[key]
    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set("crossbar.rows", 0), r"field crossbar\.rows: 0 is less than the minimum"),
        (_set("crossbar.rows", -128), r"field crossbar\.rows: -128 is less than"),
        (_set("crossbar.rows", "128"), r"field crossbar\.rows: '128' is not of type"),
        (_set("crossbar.cell_bits", 2.5), r"field crossbar\.cell_bits"),
        (_set("chip.crossbars", -1), r"field chip\.crossbars"),
        (_set("precision.signed_scheme", "twos"), r"field precision\.signed_scheme"),
        (_set("pe.adc.pj_per_conversion", -0.1), r"field pe\.adc\.pj_per_conversion"),
        (_set("tile.router.area_mm2", "0.15 mm2"),
         r"field tile\.router\.area_mm2: .*not of type 'number' \(give a plain number: "
         r"the unit, mm\^2"),
        (_set("crossbar.read_pulse_ns", "10 us"),
         r"field crossbar\.read_pulse_ns: '10 us' is not of type 'number' .*unit, ns"),
        (_rename("crossbar.read_pulse_ns", "read_pulse_us"),
         r"field crossbar\.read_pulse_us: unknown key 'read_pulse_us'; did you mean "
         r"'read_pulse_ns'"),
        (_set("timing.bogus", 1), r"field timing\.bogus: unknown key 'bogus'"),
        (_drop("pe.dac.pj_per_row_read"),
         r"field pe\.dac\.pj_per_row_read: 'pj_per_row_read' is a required property"),
        (_drop("tile"), r"field tile: 'tile' is a required property"),
        (_set("timing.sensing", "parallel"), r"field timing\.sensing"),
        (_set("crossbar.r_on_ohm", 1e7), r"r_on_ohm must be below"),
        (_set("precision.cols_per_adc", 7), r"cols_per_adc must divide"),
        (_set("crossbar.read_pj_per_cell", 209.7), r"read_pj_per_cell .* check its unit"),
        (_set("version", 1), r"target format version 1 .* version 2"),
    ],
)
def test_bad_field_is_named(edit, message):
    data = load_target("neurosim-22nm").to_dict()
    edit(data)
    with pytest.raises(InputError, match=message):
        target_from_dict(data)


@pytest.mark.parametrize(
    ("edit", "field"),
    [(_set("crossbar.rows", -128), "crossbar.rows"),
     (_drop("crossbar.cell_bits"), "crossbar.cell_bits"),
     (_set("crossbar.read_pulse_ns", "10 us"), "crossbar.read_pulse_ns")],
)
def test_bad_target_file_exits_2_naming_the_field(edit, field, tmp_path, capsys,
                                                  group4_result, group4_files):
    data = load_target("neurosim-22nm").to_dict()
    edit(data)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    model = group4_files[0]
    assert main(["compile", str(model), "-t", str(bad), "-o", str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"field {field}" in err
    assert not (tmp_path / "p.json").exists()
    # A plan whose embedded target is broken the same way: the plan reads but fails its
    # checks, so simulate, validate and report all exit 1, naming the field (issue #16).
    plan = group4_result.plan.to_dict()
    edit(plan["target"])
    broken = tmp_path / "plan.json"
    broken.write_text(json.dumps(plan))
    assert main(["simulate", str(broken)]) == 1
    assert f"field {field}" in capsys.readouterr().err
    assert main(["validate", str(broken)]) == 1
    assert f"field {field}" in capsys.readouterr().out


def test_unknown_target_and_bad_json(tmp_path):
    with pytest.raises(InputError, match="unknown target 'nope'"):
        load_target("nope")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_target(bad)
