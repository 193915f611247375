"""First-order cost model: latency and energy of crossbar, digital and programming work.

The model prices each event the mapping creates, so the mapper (which needs
latencies to schedule) and the plan report (which sums energies) agree by
construction, and the validator can re-derive every interval's minimum length.
Every energy is a count of events times a per-event energy from the target's
components (:mod:`enasa_compiler.targets.components`); ``docs/targets.md`` lists the
formulas.

Assumptions, stated once:

* The tiles of one operator run in parallel on their crossbars, in lock step; the
  operator takes as long as its slowest tile. An operator with ``copies`` copies of
  its weights (weight duplication) splits its input vectors evenly over the copies.
* A read applies ``dac_bits`` of every input of one vector; ``ceil(a_bits/dac_bits)``
  reads per vector. Each read is sensed by the crossbar's ADCs, each serving
  ``cols_per_adc`` columns, so the conversions of one read are
  ``ceil(cols_in_use / adcs_per_crossbar)`` deep. With ``serial`` sensing a read lasts
  pulse + conversions; with ``overlapped`` sensing (ISAAC's pipeline) the longer of
  the two.
* Per read, every cell of the tile conducts (an upper bound that ignores input
  sparsity), every row's DAC fires, every used column is sampled, converted and
  shift-added once.
* Partial sums of row blocks are added by digital adders (per extra row block and
  logical column). Each crossbar reads its inputs from the PE's input register and
  writes its outputs to the PE's output register; both cross the tile bus. Every input
  and output element of an operator crosses the tile buffer once, and its outputs
  cross the tile output register and one router hop, all at ``a_bits``.
* Buffer and interconnect transfers overlap the crossbar reads: they cost energy, not
  time. Static (leakage) power is charged over the makespan by the report, not per
  event.
* Programming writes one row at a time, all columns of the row in parallel, with
  ``write_pulses_per_cell`` program-and-verify pulses per cell; each pulse is followed
  by a verify read of the cell. The weight bits reach the PE over router and bus.

Times are integer nanoseconds (rounded up) so plans compare exactly.

A target with ``"cost_model": "neurosim"`` is priced by
:mod:`~enasa_compiler.targets.neurosim` instead (DNN+NeuroSim V1.3's structure); the
functions here dispatch to it, so callers need not know which model a target uses.
Programming and digital work are priced here for both.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from enasa_compiler.ir import DigitalOp, EventCost, MvmOp, Tile, ceil_ns
from enasa_compiler.targets import neurosim
from enasa_compiler.targets.target import Target

logger = logging.getLogger(__name__)

__all__ = [
    "ACCUMULATION",
    "ARRAY",
    "BUFFER",
    "CONVERSION",
    "EventCost",
    "INTERCONNECT",
    "MvmEnergy",
    "digital_cost",
    "digital_lanes_ns",
    "mvm_cost",
    "mvm_energy",
    "operator_cost",
    "program_cost",
    "read_cycle_ns",
    "tile_read_ns",
]

_BITS_PER_BYTE = 8

# Breakdown keys, grouped the way NeuroSim reports them.
ARRAY = ("cells",)
CONVERSION = ("dac", "sample_hold", "adc")
ACCUMULATION = ("shift_add", "accumulate")
BUFFER = ("input_register", "output_register", "buffer", "tile_output_register")
INTERCONNECT = ("bus", "router")


@dataclass(frozen=True)
class MvmEnergy:
    """An MVM operator's energy by component and its exact (unrounded) duration.

    Attributes:
        breakdown_pj: as :attr:`EventCost.breakdown_pj`.
        latency_ns: reads per copy times the slowest tile's read cycle.
        read_ns: the part of ``latency_ns`` the read pulses take.
        reads: crossbar reads per tile of one copy, over all copies.
        vectors: input vectors over the batch, all copies together.
        read_cycle_ns: one read of the slowest tile, sensing included.

    """

    breakdown_pj: dict[str, float]
    latency_ns: float
    read_ns: float
    reads: int
    vectors: int = 0
    read_cycle_ns: float = 0.0


def read_cycle_ns(phys_cols: int, target: Target) -> float:
    """Length of one crossbar read with ``phys_cols`` columns in use, sensing included."""
    if target.cost_model == "neurosim":
        return neurosim.read_cycle_ns(target)
    conversions_deep = math.ceil(phys_cols / target.adcs_per_crossbar)
    sensing_ns = conversions_deep * target.timing.adc_conversion_ns
    if target.timing.sensing == "overlapped":
        return max(target.crossbar.read_pulse_ns, sensing_ns)
    return target.crossbar.read_pulse_ns + sensing_ns


def tile_read_ns(tile: Tile, target: Target) -> float:
    """Latency of one crossbar read of this tile, sensing included."""
    return read_cycle_ns(tile.phys_cols, target)


def _bytes(elements: int, target: Target) -> float:
    return elements * target.precision.a_bits / _BITS_PER_BYTE


def mvm_energy(op: MvmOp, target: Target, batch: int = 1) -> MvmEnergy:
    """Price an MVM operator over ``batch`` images, by component, without rounding."""
    if target.cost_model == "neurosim":
        return _neurosim_energy(op, target, batch)
    base = op.base_weights
    copies = len(op.weights) // len(base) if base else 1
    tiles = tuple(t for w in base for t in w.tiles)
    vectors = batch * op.vectors_per_image
    reads_per_copy = math.ceil(vectors / copies) * target.input_cycles
    slowest_ns = max(tile_read_ns(t, target) for t in tiles)
    reads = vectors * target.input_cycles
    e = target.energy
    cells = sum(t.cells for t in tiles)
    rows_driven = sum(t.phys_rows for t in tiles)
    cols_sensed = sum(t.phys_cols for t in tiles)
    tile_outputs = sum(t.col_stop - t.col_start for t in tiles)
    extra_row_blocks = sum(len({(t.row_start, t.row_stop) for t in w.tiles}) - 1 for w in base)
    logical_cols = sum(w.cols for w in base)
    logical_rows = sum(w.rows for w in base)
    register_in = vectors * _bytes(rows_driven, target)
    register_out = vectors * _bytes(tile_outputs, target)
    outputs = vectors * _bytes(logical_cols, target)
    breakdown = {
        "cells": reads * cells * e.read_pj_per_cell,
        "dac": reads * rows_driven * e.dac_pj_per_row_read,
        "sample_hold": reads * cols_sensed * e.sample_hold_pj_per_sample,
        "adc": reads * cols_sensed * e.adc_pj_per_conversion,
        "shift_add": reads * cols_sensed * e.shift_add_pj_per_column_read,
        "accumulate": vectors * extra_row_blocks * logical_cols * e.digital_pj_per_op,
        "input_register": register_in * e.input_register_pj_per_byte,
        "output_register": register_out * e.output_register_pj_per_byte,
        "buffer": (vectors * _bytes(logical_rows, target) + outputs) * e.buffer_pj_per_byte,
        "tile_output_register": outputs * e.tile_output_register_pj_per_byte,
        "bus": (register_in + register_out) * e.bus_pj_per_byte,
        "router": outputs * e.router_pj_per_byte,
    }
    return MvmEnergy(breakdown, reads_per_copy * slowest_ns,
                     reads_per_copy * target.crossbar.read_pulse_ns, reads, vectors,
                     slowest_ns)


def _neurosim_energy(op: MvmOp, target: Target, batch: int) -> MvmEnergy:
    # The duration is the sensing time alone: at peak, as in throughput.peak_tops, the
    # crossbars read back to back and buffer and interconnect traffic is not waited on.
    event = neurosim.mvm_event_cost(op, target, batch)
    return MvmEnergy(dict(event.breakdown_pj), event.read_ns, event.read_ns,
                     event.vectors * event.reads_per_vector, event.vectors,
                     neurosim.read_cycle_ns(target))


def mvm_cost(op: MvmOp, target: Target, batch: int = 1) -> EventCost:
    """Cost of running a crossbar operator over ``batch`` images."""
    if target.cost_model == "neurosim":
        return neurosim.mvm_event_cost(op, target, batch)
    priced = mvm_energy(op, target, batch)
    return EventCost(ceil_ns(priced.latency_ns), sum(priced.breakdown_pj.values()),
                     priced.breakdown_pj, read_ns=priced.read_ns, vectors=priced.vectors,
                     reads_per_vector=target.input_cycles,
                     read_cycle_ns=priced.read_cycle_ns)


def digital_cost(op: DigitalOp, target: Target, batch: int = 1) -> EventCost:
    """Cost of a digital operator on one digital unit over ``batch`` images."""
    ops = batch * op.ops
    cycles = ops / target.chip.digital_ops_per_cycle
    latency_ns = cycles / target.clock_ghz
    moved = batch * op.elements * (len(op.inputs) + 1)
    breakdown = {
        "digital": ops * target.energy.digital_pj_per_op,
        "buffer": _bytes(moved, target) * target.energy.buffer_pj_per_byte,
    }
    return EventCost(ceil_ns(latency_ns), sum(breakdown.values()), breakdown)


def operator_cost(op: MvmOp | DigitalOp, target: Target, batch: int = 1) -> EventCost:
    """Cost of running any operator: on crossbars for MVM, on a digital unit otherwise."""
    if isinstance(op, MvmOp):
        return mvm_cost(op, target, batch)
    return digital_cost(op, target, batch)


def program_cost(tile: Tile, target: Target) -> EventCost:
    """Cost of writing one tile's weights into a crossbar (program and verify)."""
    timing, xbar = target.timing, target.crossbar
    pulses_per_cell = timing.write_pulses_per_cell
    pulse_ns = timing.write_pulse_ns + timing.verify_read_ns
    latency_ns = tile.phys_rows * pulses_per_cell * pulse_ns
    pulses = tile.cells * pulses_per_cell
    # A verify read of one cell lasts verify_read_ns instead of the read pulse.
    verify_pj_per_cell = xbar.read_pj_per_cell * timing.verify_read_ns / xbar.read_pulse_ns
    weight_bytes = tile.cells * xbar.cell_bits / _BITS_PER_BYTE
    breakdown = {
        "write": pulses * xbar.write_pj_per_pulse,
        "verify": pulses * verify_pj_per_cell,
        "bus": weight_bytes * target.tile.bus.pj_per_byte,
        "router": weight_bytes * target.tile.router.pj_per_byte,
    }
    return EventCost(ceil_ns(latency_ns), sum(breakdown.values()), breakdown,
                     cell_writes=tile.cells)


def digital_lanes_ns(op: DigitalOp, target: Target, lanes: int, batch: int = 1) -> int:
    """Latency of a digital operator spread over ``lanes`` digital units.

    Its operations split evenly over the lanes; each extra lane costs
    ``chip.lane_overhead_cycles`` to scatter inputs and gather outputs. One lane is
    :func:`digital_cost`'s latency. Energy does not depend on the lanes.
    """
    if lanes < 1:
        raise ValueError(f"lanes must be at least 1, not {lanes}")
    cycles = math.ceil(batch * op.ops / lanes) / target.chip.digital_ops_per_cycle
    cycles += (lanes - 1) * target.chip.lane_overhead_cycles
    return ceil_ns(cycles / target.clock_ghz)
