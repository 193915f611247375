"""Target files: presets load, every field is checked, errors name the field."""

from __future__ import annotations

import json

import pytest

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
    assert "neurosim-22nm" in list_presets()


def test_target_round_trips_through_its_file_format(tmp_path):
    target = load_target("neurosim-22nm")
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(target.to_dict()))
    again = load_target(path)
    assert again == target


def test_differential_scheme_doubles_the_columns():
    data = load_target("neurosim-22nm").to_dict()
    data["precision"]["signed_scheme"] = "differential"
    target = target_from_dict(data)
    assert target.precision.signed_scheme is SignedScheme.DIFFERENTIAL
    assert target.columns_per_weight == 8


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("crossbar", "rows", 0, "field crossbar.rows"),
        ("crossbar", "rows", "128", "field crossbar.rows"),
        ("crossbar", "cell_bits", 2.5, "field crossbar.cell_bits"),
        ("chip", "crossbars", -1, "field chip.crossbars"),
        ("precision", "signed_scheme", "twos", "field precision.signed_scheme"),
        ("energy", "adc_pj_per_conversion", -0.1, "field energy.adc_pj_per_conversion"),
        ("crossbar", "r_on_ohm", 1e7, "r_on_ohm must be below"),
        ("precision", "cols_per_adc", 7, "cols_per_adc must divide"),
        ("timing", "bogus", 1, "field timing"),
    ],
)
def test_bad_field_is_named(section, key, value, message):
    data = load_target("neurosim-22nm").to_dict()
    data[section][key] = value
    with pytest.raises(InputError, match=message):
        target_from_dict(data)


def test_unknown_target_and_bad_json(tmp_path):
    with pytest.raises(InputError, match="unknown target 'nope'"):
        load_target("nope")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_target(bad)
