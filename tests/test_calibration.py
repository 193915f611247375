"""The isaac-32nm preset reproduces ISAAC's published figures from its components.

ISAAC (Shafiee et al., ISCA 2016): IMA ~24 mW, tile ~330 mW and ~0.372 mm^2, chip
~65.8 W and ~85.4 mm^2, peak 41.3 TOPS, 0.63 TOPS/W, 0.48 TOPS/mm^2 at 16 bits. Each
figure is summed from the preset's per-event energies, leakages and areas and counted
from its geometry; the tests also check the sums move as the components do, so a
figure cannot be met by a constant.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from enasa_compiler.ir import MvmOp
from enasa_compiler.targets import area, load_target, power, target_from_dict, throughput
from enasa_compiler.targets.cost import mvm_energy

WITHIN = 0.05  # ISAAC's figures are rounded; the issue asks for 5 %


@pytest.fixture(scope="module")
def isaac():
    return load_target("isaac-32nm")


@pytest.mark.parametrize(
    ("figure", "published"),
    [
        (power.pe_power_mw, 24.0),
        (power.tile_power_mw, 330.0),
        (area.tile_area_mm2, 0.372),
        (power.chip_power_w, 65.8),
        (area.chip_area_mm2, 85.4),
        (throughput.peak_tops, 41.3),
        (throughput.tops_per_w, 0.63),
        (throughput.tops_per_mm2, 0.48),
    ],
    ids=lambda x: getattr(x, "__name__", str(x)),
)
def test_isaac_figure_within_5_percent(isaac, figure, published):
    assert figure(isaac) == pytest.approx(published, rel=WITHIN)


def test_peak_tops_counts_two_ops_per_mac_over_bit_serial_reads(isaac):
    # 16 weights of 16 bits per 128-column row (8 columns of 2-bit cells each), 128 rows,
    # 16 one-bit input cycles of one 100 ns read each, 16128 crossbars.
    assert isaac.weights_per_crossbar_row == 16 and isaac.input_cycles == 16
    assert throughput.ops_per_crossbar_mvm(isaac) == 2 * 128 * 16
    assert throughput.crossbar_mvm_ns(isaac) == pytest.approx(16 * 100.0)
    assert throughput.peak_tops(isaac) == pytest.approx(16128 * 4096 / 1600 / 1e3)


def test_ima_area_and_the_twelve_imas_of_a_tile(isaac):
    # ISAAC Table 6: 12 IMAs take 0.157 mm^2.
    assert 12 * area.pe_area_mm2(isaac) == pytest.approx(0.157, rel=WITHIN)


def _with(target, **sections):
    data = target.to_dict()
    for path, value in sections.items():
        *parents, key = path.split("__")
        node = data
        for parent in parents:
            node = node[parent]
        node[key] = value
    return target_from_dict(data)


def test_power_is_summed_from_components_not_fixed(isaac):
    # Doubling the ADC's energy per conversion adds the 8 ADCs' 16 mW to an IMA again.
    doubled = _with(isaac, pe__adc__pj_per_conversion=2 * isaac.pe.adc.pj_per_conversion)
    assert power.pe_power_mw(doubled) - power.pe_power_mw(isaac) == pytest.approx(16.0,
                                                                                   rel=1e-3)
    # Without the HyperTransport links the chip is its 168 tiles alone (55.4 W).
    no_links = _with(isaac, chip__io__links=0)
    assert power.chip_power_w(no_links) == pytest.approx(168 * 0.330, rel=WITHIN)
    assert power.chip_power_w(isaac) - power.chip_power_w(no_links) == pytest.approx(10.4)
    # Leakage is static power: it adds to the peak unchanged.
    leaky = _with(isaac, tile__buffer__leakage_mw=1.0)
    assert power.tile_power_mw(leaky) - power.tile_power_mw(isaac) == pytest.approx(1.0)
    assert power.static_power_mw(leaky) - power.static_power_mw(isaac) == pytest.approx(168)


def test_throughput_follows_the_read_cycle(isaac):
    # Overlapped sensing: a read lasts the longer of pulse and 128 conversions, so a
    # shorter pulse alone gains nothing, and a faster ADC with it halves the cycle.
    short_pulse = _with(isaac, crossbar__read_pulse_ns=50.0)
    assert throughput.peak_tops(short_pulse) == pytest.approx(throughput.peak_tops(isaac))
    both = _with(isaac, crossbar__read_pulse_ns=50.0, timing__adc_conversion_ns=0.390625)
    assert throughput.peak_tops(both) == pytest.approx(2 * throughput.peak_tops(isaac))
    # Serial sensing adds the conversions to the pulse: 200 ns per read.
    serial = _with(isaac, timing__sensing="serial")
    assert throughput.peak_tops(serial) == pytest.approx(throughput.peak_tops(isaac) / 2)


def test_area_counts_the_hierarchy(isaac):
    parts = area.area_breakdown_mm2(isaac)
    assert parts["adc"] == pytest.approx(16128 * 0.0012)
    assert parts["router"] == pytest.approx(42 * 0.150)  # one router per 4 tiles
    assert parts["io"] == pytest.approx(22.88)
    assert sum(parts.values()) == pytest.approx(area.chip_area_mm2(isaac))
    assert area.chip_area_mm2(isaac) == pytest.approx(
        168 * area.tile_area_mm2(isaac) + 22.88)


def test_cost_model_energy_matches_the_power_budget(isaac):
    """An operator running flat out on one crossbar draws that crossbar's share of power."""
    op = power.full_crossbar_op(isaac)
    long_run = dataclasses.replace(op, vectors_per_image=1000)
    priced = mvm_energy(long_run, isaac)
    assert priced.latency_ns == pytest.approx(1000 * 1600.0)
    pe_dynamic_mw = sum(priced.breakdown_pj[k] for k in power.PE_KEYS) / priced.latency_ns
    assert isaac.pe.crossbars_per_pe * pe_dynamic_mw == pytest.approx(
        power.pe_power_mw(isaac), rel=1e-9)


def test_duplicated_operator_draws_power_on_every_copy(isaac):
    op = power.full_crossbar_op(isaac)
    many = dataclasses.replace(op, vectors_per_image=64)
    doubled = MvmOp(**{**{f.name: getattr(many, f.name) for f in dataclasses.fields(many)
                          if f.init}, "weights": many.weights * 2, "copies": 2})
    single, twice = mvm_energy(many, isaac), mvm_energy(doubled, isaac)
    assert twice.latency_ns == pytest.approx(single.latency_ns / 2)
    assert sum(twice.breakdown_pj.values()) == pytest.approx(sum(single.breakdown_pj.values()))


def test_neurosim_preset_peak_figures_are_derived_too():
    target = load_target("neurosim-22nm")
    # 8-bit: 32 weights per row (4 columns each); 8 bit-serial input cycles, each sensing
    # the 8 columns muxed onto one ADC, one per 2.03892 ns clock (NeuroSim's sensing-set
    # clock; tests/test_neurosim.py compares the whole model with NeuroSim's VGG-8 run).
    assert throughput.crossbar_mvm_ns(target) == pytest.approx(8 * 8 * 2.03892)
    expected_tops = 4096 * 2 * 128 * 32 / (8 * 8 * 2.03892) / 1e3
    assert throughput.peak_tops(target) == pytest.approx(expected_tops)
    assert math.isclose(throughput.tops_per_w(target),
                        expected_tops / power.chip_power_w(target))
