"""The parts of a ReRAM chip, level by level: crossbar, PE, tile, chip.

A target describes its hardware as a hierarchy (ISAAC's, NeuroSim's): a chip holds
tiles, a tile holds PEs (ISAAC calls them IMAs) and its buffer and interconnect, a PE
holds crossbars and their periphery. Each component states what one use of it costs
(picojoules per event: a conversion, a row driven for one read, a byte moved), what it
burns when idle (``leakage_mw``) and its silicon area (``area_mm2``), always for *one*
instance. Counts come from the level above (``crossbars_per_pe``, ``pes_per_tile``) or
from the geometry (one DAC per row, one sample-and-hold per column, one ADC per
``cols_per_adc`` columns), so the cost model, the power sum and the area sum all read
the same numbers.

These are plain frozen dataclasses; :mod:`enasa_compiler.targets.target` reads them from
a target file after the JSON Schema has checked every field.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from enasa_compiler.ir import SignedScheme

logger = logging.getLogger(__name__)

__all__ = [
    "COST_MODELS",
    "AdcSpec",
    "BusSpec",
    "ChipSpec",
    "CrossbarSpec",
    "DacSpec",
    "DigitalUnitSpec",
    "EnergySpec",
    "IoSpec",
    "NeurosimSpec",
    "PeSpec",
    "PrecisionSpec",
    "RegisterSpec",
    "RouterSpec",
    "SampleHoldSpec",
    "ShiftAddSpec",
    "TileSpec",
    "TimingSpec",
]


# ---- the crossbar --------------------------------------------------------------------
@dataclass(frozen=True)
class CrossbarSpec:
    """One crossbar (subarray) and its cells.

    Attributes:
        read_pj_per_cell: energy of one cell conducting for one read pulse (all rows
            driven: an upper bound that ignores input sparsity).
        write_pj_per_pulse: energy of one program pulse on one cell, driver included.
        leakage_mw: static power of one array (1T1R access transistors).
        area_mm2: area of one array.

    """

    rows: int
    cols: int
    cell_bits: int
    r_on_ohm: float
    r_off_ohm: float
    read_voltage_v: float
    read_pulse_ns: float
    write_voltage_v: float
    read_pj_per_cell: float
    write_pj_per_pulse: float
    leakage_mw: float
    area_mm2: float

    @property
    def cells(self) -> int:
        """Cells in one crossbar."""
        return self.rows * self.cols


@dataclass(frozen=True)
class PrecisionSpec:
    """Data precisions and the periphery that converts between domains."""

    w_bits: int
    a_bits: int
    dac_bits: int
    adc_bits: int
    cols_per_adc: int
    signed_scheme: SignedScheme


@dataclass(frozen=True)
class TimingSpec:
    """Latencies not implied by the crossbar's read pulse.

    Attributes:
        adc_conversion_ns: one conversion of one ADC.
        sensing: ``serial`` (NeuroSim: the ADCs convert after the pulse, so a read
            lasts pulse + conversions) or ``overlapped`` (ISAAC: the ADCs convert the
            previous read during the next pulse, so a read lasts the longer of the two).
        write_pulse_ns, verify_read_ns: one program pulse and the read that verifies it.
        write_pulses_per_cell: program-and-verify pulses a cell needs on average to
            reach its level (a multi-bit cell needs several).

    """

    adc_conversion_ns: float
    sensing: str
    write_pulse_ns: float
    verify_read_ns: float
    write_pulses_per_cell: int


# ---- PE periphery --------------------------------------------------------------------
@dataclass(frozen=True)
class AdcSpec:
    """One ADC; a crossbar has ``cols / cols_per_adc`` of them."""

    pj_per_conversion: float
    leakage_mw: float
    area_mm2: float


@dataclass(frozen=True)
class DacSpec:
    """One row driver (DAC); a crossbar has one per row."""

    pj_per_row_read: float
    leakage_mw: float
    area_mm2: float


@dataclass(frozen=True)
class SampleHoldSpec:
    """One sample-and-hold; a crossbar has one per column."""

    pj_per_sample: float
    leakage_mw: float
    area_mm2: float


@dataclass(frozen=True)
class ShiftAddSpec:
    """The PE's shift-and-add units, which recombine bit slices and input bits.

    One shift-add operation per ADC output; ``units`` only sizes area and leakage.
    """

    units: int
    pj_per_op: float
    leakage_mw: float
    area_mm2: float


@dataclass(frozen=True)
class RegisterSpec:
    """A register file or buffer: energy per byte accessed, capacity for the record."""

    size_bytes: int
    pj_per_byte: float
    leakage_mw: float
    area_mm2: float


@dataclass(frozen=True)
class PeSpec:
    """A processing element (ISAAC's IMA): crossbars sharing periphery and registers."""

    crossbars_per_pe: int
    adc: AdcSpec
    dac: DacSpec
    sample_hold: SampleHoldSpec
    shift_add: ShiftAddSpec
    input_register: RegisterSpec
    output_register: RegisterSpec


# ---- tile and chip -------------------------------------------------------------------
@dataclass(frozen=True)
class BusSpec:
    """The bus between a tile's buffer and its PEs."""

    pj_per_byte: float
    leakage_mw: float
    area_mm2: float


@dataclass(frozen=True)
class RouterSpec:
    """An on-chip network router, shared by ``tiles_per_router`` tiles."""

    tiles_per_router: int
    pj_per_byte: float
    leakage_mw: float
    area_mm2: float


@dataclass(frozen=True)
class TileSpec:
    """A tile: PEs, the buffer they read from and write to, bus and router."""

    pes_per_tile: int
    buffer: RegisterSpec
    output_register: RegisterSpec
    bus: BusSpec
    router: RouterSpec


@dataclass(frozen=True)
class DigitalUnitSpec:
    """One digital vector unit (activation, pooling, element-wise ops)."""

    pj_per_op: float
    leakage_mw: float
    area_mm2: float


@dataclass(frozen=True)
class IoSpec:
    """Off-chip links (ISAAC: HyperTransport); always on, so their power is static."""

    links: int
    leakage_mw: float
    area_mm2: float


@dataclass(frozen=True)
class ChipSpec:
    """Chip-level resources.

    ``crossbars`` is the capacity the mapper uses; tiles are filled in order, so the
    chip has ``ceil(crossbars / (pes_per_tile * crossbars_per_pe))`` tiles, the last
    one possibly part-populated. Digital units are spread evenly over the tiles.
    """

    crossbars: int
    digital_units: int
    digital_ops_per_cycle: int
    digital_unit: DigitalUnitSpec
    io: IoSpec
    # A pipelined plan may spread one digital operator over several units (lanes):
    # its elements split evenly, at ``lane_overhead_cycles`` per extra lane to scatter
    # the inputs and gather the outputs. 1 lane keeps every operator on one unit.
    digital_lanes_per_op: int = 1
    lane_overhead_cycles: float = 0.0
    # A segmented pipeline (the weights do not fit at once) keeps the activations that
    # cross a segment boundary in an on-chip buffer of ``buffer_kib``, or, when a
    # micro-batch's do not fit, in off-chip memory at ``offchip_pj_per_byte`` per byte
    # moved and ``offchip_gb_per_s`` of bandwidth (0: the chip has none).
    buffer_kib: float = 0.0
    offchip_pj_per_byte: float = 0.0
    offchip_gb_per_s: float = 0.0


@dataclass(frozen=True)
class EnergySpec:
    """Per-event energies the cost model reads, gathered from the components.

    A view for callers that want one flat record; the target file holds them in
    the component they belong to.
    """

    read_pj_per_cell: float
    dac_pj_per_row_read: float
    sample_hold_pj_per_sample: float
    adc_pj_per_conversion: float
    shift_add_pj_per_column_read: float
    input_register_pj_per_byte: float
    output_register_pj_per_byte: float
    buffer_pj_per_byte: float
    tile_output_register_pj_per_byte: float
    bus_pj_per_byte: float
    router_pj_per_byte: float
    digital_pj_per_op: float
    write_pj_per_pulse: float


def count_above(items: int, per_group: int) -> int:
    """Count the groups that hold ``items`` at ``per_group`` each (the last part-full)."""
    return math.ceil(items / per_group) if items else 0


# ---- the NeuroSim-style cost model's numbers -----------------------------------------
# Cost models a target may select (``cost_model``); the first is the default.
COST_MODELS = ("first-order", "neurosim")


@dataclass(frozen=True)
class NeurosimSpec:
    """The numbers of the NeuroSim-style model (a target file's ``neurosim`` section).

    Attributes:
        sensing_cycle_ns: clock period, set by the sense amplifier's delay.
        input_activity: fraction of input bits that are 1 (rows that conduct).
        sense_bias_pj_per_column: sense amplifier energy per column per read, no current.
        sense_integration_ns: time the cell current flows into the sense amplifier.
        subarray_read_pj: bit-line/word-line switching, decoders, muxes per subarray read.
        accumulate_pj_per_column: shift-add and adder trees per column per read.
        shift_add_cycles: cycles per vector of one copy for the shift-add.
        adder_tree_cycles_per_level: cycles per vector of one copy per adder-tree level.
        tile_accumulate_cycles: cycles per vector to add the partial sums of PEs.
        global_accumulate_cycles_per_level: cycles per vector per level of the adder
            tree over tile rows.
        partial_sum_bits: bits of a partial sum a tile writes to its output buffer.
        global_buffer_bits_per_cycle: global buffer bandwidth (all cores).
        tile_input_bits_per_cycle: tile input buffer bandwidth (read and write).
        tile_output_bits_per_cycle: tile output buffer bandwidth (read and write).
        interconnect_ns_per_global_bit, interconnect_ns_per_tile_input_bit,
        interconnect_ns_per_tile_output: H-tree time per bit moved (global, tile).
        buffer_pj_per_bit: buffer energy per bit written or read (global and tile).
        interconnect_pj_per_global_bit: global H-tree energy per bit.
        interconnect_pj_per_tile_bit: tile H-tree energy per bit (conventional tile).
        novel_interconnect_pj_per_tile_bit: the same in a novel-mapped (9-PE) tile.
        activation_units: ReLU units (one output per unit per cycle).
        energy_zeta: NeuroSim's post-layout energy factor, used for TOPS/W only.
        novel_mapping_pes: PEs of a novel-mapped tile (one per kernel position).

    """

    sensing_cycle_ns: float
    input_activity: float
    sense_bias_pj_per_column: float
    sense_integration_ns: float
    subarray_read_pj: float
    accumulate_pj_per_column: float
    shift_add_cycles: float
    adder_tree_cycles_per_level: float
    tile_accumulate_cycles: float
    global_accumulate_cycles_per_level: float
    partial_sum_bits: int
    global_buffer_bits_per_cycle: float
    tile_input_bits_per_cycle: float
    tile_output_bits_per_cycle: float
    interconnect_ns_per_global_bit: float
    interconnect_ns_per_tile_input_bit: float
    interconnect_ns_per_tile_output: float
    buffer_pj_per_bit: float
    interconnect_pj_per_global_bit: float
    interconnect_pj_per_tile_bit: float
    novel_interconnect_pj_per_tile_bit: float
    activation_units: int
    energy_zeta: float
    novel_mapping_pes: int
