"""First-order cost model: latency and energy of crossbar, digital and programming work.

The model prices each event the mapping creates, so the mapper (which needs
latencies to schedule) and the plan report (which sums energies) agree by
construction, and the validator can re-derive every interval's minimum length.

Assumptions, stated once:

* The tiles of one operator run in parallel on their crossbars, in lock step; the
  operator takes as long as its slowest tile.
* A read applies ``dac_bits`` of every input of one vector; ``ceil(a_bits/dac_bits)``
  reads per vector. Each read is sensed by the crossbar's ADCs, each serving
  ``cols_per_adc`` columns, so the conversions of one read are
  ``ceil(cols_in_use / adcs_per_crossbar)`` deep.
* Cell read energy uses the mean of the on and off conductances, every cell of the
  tile conducting during the pulse: an upper bound that ignores input sparsity.
* Partial sums of row blocks and bit slices are added by shift-add units
  (per column read) and digital adders (per extra row block); every input and
  output element of an operator crosses the buffer once at ``a_bits``.
* Programming writes one row at a time, all columns of the row in parallel, with
  ``write_pulses_per_cell`` program-and-verify pulses per cell.

Times are integer nanoseconds (rounded up) so plans compare exactly.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from enasa_compiler.ir import DigitalOp, MvmOp, Tile
from enasa_compiler.targets.target import Target

logger = logging.getLogger(__name__)

__all__ = [
    "EventCost",
    "tile_read_ns",
    "digital_cost",
    "mvm_cost",
    "operator_cost",
    "program_cost",
]

_PJ_PER_J = 1e12
_S_PER_NS = 1e-9
_BITS_PER_BYTE = 8


@dataclass(frozen=True)
class EventCost:
    """Latency and energy of one scheduled event, with the energy broken down.

    Attributes:
        latency_ns: interval length the schedule must give the event (rounded up).
        energy_pj: total dynamic energy.
        breakdown_pj: energy per component (``cells``, ``dac``, ``adc``,
            ``shift_add``, ``accumulate``, ``buffer``, ``digital``, ``write``).
        cell_writes: cells programmed (programming events only).

    """

    latency_ns: int
    energy_pj: float
    breakdown_pj: dict[str, float]
    cell_writes: int = 0


def _ceil_ns(value_ns: float) -> int:
    return max(1, math.ceil(value_ns - 1e-9))


def _cell_read_energy_pj(target: Target) -> float:
    xbar = target.crossbar
    mean_conductance_s = (1.0 / xbar.r_on_ohm + 1.0 / xbar.r_off_ohm) / 2.0
    joules = xbar.read_voltage_v**2 * mean_conductance_s * xbar.read_pulse_ns * _S_PER_NS
    return joules * _PJ_PER_J


def tile_read_ns(tile: Tile, target: Target) -> float:
    """Latency of one crossbar read of this tile, sensing included."""
    conversions_deep = math.ceil(tile.phys_cols / target.adcs_per_crossbar)
    return target.crossbar.read_pulse_ns + conversions_deep * target.timing.adc_conversion_ns


def mvm_cost(op: MvmOp, target: Target, batch: int = 1) -> EventCost:
    """Cost of running a crossbar operator over ``batch`` images."""
    reads = batch * op.vectors_per_image * target.input_cycles
    tiles = op.tiles
    latency_ns = reads * max(tile_read_ns(t, target) for t in tiles)
    energy = target.energy
    cell_pj = _cell_read_energy_pj(target)
    cells = sum(t.cells for t in tiles)
    rows_driven = sum(t.phys_rows for t in tiles)
    cols_sensed = sum(t.phys_cols for t in tiles)
    vectors = batch * op.vectors_per_image
    extra_row_blocks = sum(
        len({(t.row_start, t.row_stop) for t in w.tiles}) - 1 for w in op.weights
    )
    logical_cols = sum(w.cols for w in op.weights)
    logical_rows = sum(w.rows for w in op.weights)
    bytes_moved = vectors * (logical_rows + logical_cols) * target.precision.a_bits
    breakdown = {
        "cells": reads * cells * cell_pj,
        "dac": reads * rows_driven * energy.dac_pj_per_row_read,
        "adc": reads * cols_sensed * energy.adc_pj_per_conversion,
        "shift_add": reads * cols_sensed * energy.shift_add_pj_per_column_read,
        "accumulate": vectors * extra_row_blocks * logical_cols * energy.digital_pj_per_op,
        "buffer": bytes_moved / _BITS_PER_BYTE * energy.buffer_pj_per_byte,
    }
    return EventCost(_ceil_ns(latency_ns), sum(breakdown.values()), breakdown)


def digital_cost(op: DigitalOp, target: Target, batch: int = 1) -> EventCost:
    """Cost of a digital operator on one digital unit over ``batch`` images."""
    ops = batch * op.ops
    cycles = ops / target.chip.digital_ops_per_cycle
    latency_ns = cycles / target.clock_ghz
    bytes_moved = batch * op.elements * (len(op.inputs) + 1) * target.precision.a_bits
    breakdown = {
        "digital": ops * target.energy.digital_pj_per_op,
        "buffer": bytes_moved / _BITS_PER_BYTE * target.energy.buffer_pj_per_byte,
    }
    return EventCost(_ceil_ns(latency_ns), sum(breakdown.values()), breakdown)


def operator_cost(op: MvmOp | DigitalOp, target: Target, batch: int = 1) -> EventCost:
    """Cost of running any operator: on crossbars for MVM, on a digital unit otherwise."""
    if isinstance(op, MvmOp):
        return mvm_cost(op, target, batch)
    return digital_cost(op, target, batch)


def program_cost(tile: Tile, target: Target) -> EventCost:
    """Cost of writing one tile's weights into a crossbar (program and verify)."""
    timing = target.timing
    pulses_per_cell = timing.write_pulses_per_cell
    pulse_ns = timing.write_pulse_ns + timing.verify_read_ns
    latency_ns = tile.phys_rows * pulses_per_cell * pulse_ns
    write_pj = tile.cells * pulses_per_cell * target.energy.write_pj_per_pulse
    return EventCost(_ceil_ns(latency_ns), write_pj, {"write": write_pj},
                     cell_writes=tile.cells)
