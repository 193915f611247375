"""NeuroSim-style cost model: DNN+NeuroSim V1.3's structure, layer by layer.

Selected by ``"cost_model": "neurosim"`` in a target file; the numbers are the file's
``neurosim`` section (:class:`NeurosimSpec`). :mod:`~enasa_compiler.targets.cost`
dispatches here, so pricing, scheduling and reports need no change.

What a crossbar operator costs, following NeuroSim V1.3 (``Chip.cpp``, ``Tile.cpp``,
``ProcessingUnit.cpp``, ``SubArray.cpp``), with ``V`` input vectors and ``s`` copies
of the weights (NeuroSim's "speed-up"; it divides only the vectors read in parallel):

* **ADC** (multilevel sense amplifier, ``cols_per_adc`` columns muxed onto one):
  each input bit of each vector is sensed column by column, one column of each ADC
  per clock, the clock being the sensing delay: ``V/s * a_bits * cols_per_adc``
  cycles. Energy per subarray read: a bias per column plus the cell current during
  the sensing (integration) time, only for the rows whose input bit is 1
  (``input_activity``) and the columns that hold weights, at the mean conductance of
  uniformly spread levels.
* **Accumulation**: the shift-add of the bit-serial partial sums and the adder tree
  over the subarray row blocks of a PE take ``V/s`` times a fixed number of cycles
  plus some per tree level; adding the partial sums of several PEs (tile) and of
  several tile rows (global) is done once per vector and does not shrink with
  copies. Energy: a fixed energy per column read.
* **Other**: bit-line/word-line switching, decoders, muxes and switch matrices, a
  fixed energy per subarray read; buffers (global and tile, moved bits over the
  buffer's bits per cycle; the global buffer's bandwidth is shared by all tiles of
  the chip, so an operator on ``T`` of ``N`` tiles gets ``T/N`` of it) and the H-tree
  interconnect (per bit moved). Buffer and interconnect time do not shrink with
  copies: they are 61-96 % of a VGG-8 layer's latency in NeuroSim.
* **Leakage**: per subarray, with its periphery (the target's components).

Latencies are counted in sensing cycles of ``sensing_cycle_ns``.
:mod:`~enasa_compiler.targets.neurosim_calibration` prices a network on NeuroSim's
own floorplan to compare with NeuroSim's per-layer report; ``docs/targets.md`` lists
every formula and where each number of the preset comes from.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from enasa_compiler.ir import EventCost, MvmOp, ceil_ns
from enasa_compiler.targets.components import COST_MODELS, NeurosimSpec

if TYPE_CHECKING:
    from enasa_compiler.targets.target import Target

logger = logging.getLogger(__name__)

__all__ = [
    "COST_MODELS",
    "LayerCost",
    "MvmWork",
    "NeurosimSpec",
    "mvm_breakdown",
    "mvm_event_cost",
    "neurosim_spec",
    "op_work",
    "price_work",
    "read_cycle_ns",
]



@dataclass(frozen=True)
class MvmWork:
    """What one crossbar operator (or NeuroSim layer) does, counted for the model.

    Attributes:
        vectors: input vectors over the batch, all copies together.
        copies: weight copies reading vectors in parallel (may be fractional).
        subarrays: (rows used, columns used) of every subarray of one copy.
        pe_row_blocks: subarray row blocks a PE adds with its adder tree.
        spans_pes: the partial sums of several PEs are added in the tile.
        tile_rows: tiles whose partial sums the global accumulator adds.
        global_bits: bits in and out of the global buffer.
        tile_input_bits, tile_output_bits: bits through the busiest tile's buffers.
        tile_bits_total: bits through all the tiles' buffers.
        tiles: tiles the operator occupies.
        chip_tiles: tiles on the chip (they share the global buffer's bandwidth).
        novel: novel mapping (NeuroSim's 9-PE tile), calibration only.
        whole_vectors: a copy reads whole vectors (``ceil(vectors / copies)``, the
            compiler's duplication); NeuroSim divides them fractionally.

    """

    vectors: float
    copies: float
    subarrays: tuple[tuple[int, int], ...]
    pe_row_blocks: int
    spans_pes: bool
    tile_rows: int
    global_bits: float
    tile_input_bits: float
    tile_output_bits: float
    tile_bits_total: float
    tiles: int
    chip_tiles: int
    novel: bool = False
    whole_vectors: bool = True


@dataclass(frozen=True)
class LayerCost:
    """Latency and dynamic energy of one operator or layer, by component.

    Latency keys: ``adc``, ``accumulation``, ``buffer``, ``interconnect``, ``other``;
    energy keys: ``adc``, ``accumulation``, ``array`` (switching and periphery),
    ``buffer``, ``interconnect``. ``scaled_ns`` is the part of the latency copies
    divide; the rest is fixed.
    """

    latency_ns: dict[str, float]
    energy_pj: dict[str, float]
    scaled_ns: float

    @property
    def total_ns(self) -> float:
        """Latency of all components."""
        return sum(self.latency_ns.values())

    @property
    def dynamic_pj(self) -> float:
        """Dynamic energy of all components."""
        return sum(self.energy_pj.values())

    def energy_shares(self) -> dict[str, float]:
        """ADC, accumulation and other energy as fractions of the total (NeuroSim's split)."""
        total = self.dynamic_pj
        adc, acc = self.energy_pj["adc"], self.energy_pj["accumulation"]
        return {"adc": adc / total, "accumulation": acc / total,
                "other": (total - adc - acc) / total}


def neurosim_spec(target: Target) -> NeurosimSpec:
    """Return the target's ``neurosim`` section (an error if it has none)."""
    if target.neurosim is None:
        raise ValueError(f"target {target.name} has no neurosim section")
    return target.neurosim


def _mean_conductance_s(target: Target) -> float:
    # Weights spread evenly over the levels put a cell midway between on and off.
    xbar = target.crossbar
    return (1 / xbar.r_on_ohm + 1 / xbar.r_off_ohm) / 2


def _sense_current_pj_per_cell(target: Target) -> float:
    ns = neurosim_spec(target)
    power_w = target.crossbar.read_voltage_v**2 * _mean_conductance_s(target)
    return ns.input_activity * power_w * ns.sense_integration_ns * 1e3


def read_cycle_ns(target: Target) -> float:
    """One input bit of one vector through a subarray: every column through its ADC."""
    return target.precision.cols_per_adc * neurosim_spec(target).sensing_cycle_ns


def _levels(count: int) -> int:
    return math.ceil(math.log2(count)) if count > 1 else 0


def price_work(work: MvmWork, target: Target) -> LayerCost:
    """Latency and energy of an operator's work by component (NeuroSim's structure)."""
    ns = neurosim_spec(target)
    clk = ns.sensing_cycle_ns
    a_bits = target.precision.a_bits
    per_copy = (math.ceil(work.vectors / work.copies) if work.whole_vectors
                else work.vectors / work.copies)
    adc_ns = per_copy * a_bits * read_cycle_ns(target)
    pe_accumulate = ns.shift_add_cycles + ns.adder_tree_cycles_per_level * _levels(
        work.pe_row_blocks)
    scaled_accumulate_ns = per_copy * pe_accumulate * clk
    fixed_accumulate = ns.tile_accumulate_cycles if work.spans_pes else 0.0
    fixed_accumulate += ns.global_accumulate_cycles_per_level * _levels(work.tile_rows)
    accumulate_ns = scaled_accumulate_ns + work.vectors * fixed_accumulate * clk
    share = math.ceil(work.chip_tiles / work.tiles)
    buffer_cycles = (work.global_bits / ns.global_buffer_bits_per_cycle * share
                     + work.tile_input_bits / ns.tile_input_bits_per_cycle
                     + work.tile_output_bits / ns.tile_output_bits_per_cycle)
    interconnect_ns = (work.global_bits * ns.interconnect_ns_per_global_bit
                       + work.tile_input_bits * ns.interconnect_ns_per_tile_input_bit
                       + work.tile_output_bits / ns.partial_sum_bits
                       * ns.interconnect_ns_per_tile_output)
    latency = {"adc": adc_ns, "accumulation": accumulate_ns,
               "buffer": buffer_cycles * clk, "interconnect": interconnect_ns,
               "other": 0.0}
    reads = work.vectors * a_bits
    cols = target.crossbar.cols
    current = _sense_current_pj_per_cell(target)
    adc_pj = reads * sum(cols * ns.sense_bias_pj_per_column + used_rows * used_cols * current
                         for used_rows, used_cols in work.subarrays)
    tile_ic = (ns.novel_interconnect_pj_per_tile_bit if work.novel
               else ns.interconnect_pj_per_tile_bit)
    energy = {
        "adc": adc_pj,
        "accumulation": reads * len(work.subarrays) * cols * ns.accumulate_pj_per_column,
        "array": reads * len(work.subarrays) * ns.subarray_read_pj,
        "buffer": (work.global_bits + work.tile_bits_total) * ns.buffer_pj_per_bit,
        "interconnect": (work.global_bits * ns.interconnect_pj_per_global_bit
                         + work.tile_bits_total * tile_ic),
    }
    return LayerCost(latency, energy, adc_ns + scaled_accumulate_ns)


# ---- the compiler's operators --------------------------------------------------------
def op_work(op: MvmOp, target: Target, batch: int = 1) -> MvmWork:
    """Count an operator's work the way NeuroSim counts a conventionally mapped layer."""
    ns = neurosim_spec(target)
    a_bits = target.precision.a_bits
    base = op.base_weights
    vectors = batch * op.vectors_per_image
    subarrays = tuple((t.phys_rows, t.phys_cols) for w in base for t in w.tiles)
    row_blocks = max(len({(t.row_start, t.row_stop) for t in w.tiles}) for w in base)
    pe_side = max(1, math.isqrt(target.pe.crossbars_per_pe))
    tile_side = max(1, math.isqrt(target.tile.pes_per_tile))
    rows_per_tile = pe_side * tile_side * target.crossbar.rows
    weights_per_tile = pe_side * tile_side * target.weights_per_crossbar_row
    logical_rows = sum(w.rows for w in base)
    logical_cols = sum(w.cols for w in base)
    tile_rows = math.ceil(row_blocks / (pe_side * tile_side))
    tile_cols = max(math.ceil(w.cols / weights_per_tile) for w in base)
    # Copies go into spare PEs of the same tiles (NeuroSim's speed-up), so one copy's
    # tiles set the operator's share of the global buffer, whatever the copies.
    tiles = max(1, math.ceil(len(subarrays) / target.crossbars_per_tile))
    tile_in = min(logical_rows, rows_per_tile) * a_bits * vectors
    tile_out = min(logical_cols, weights_per_tile) * ns.partial_sum_bits * vectors
    total_tile = (logical_rows * a_bits * tile_cols
                  + logical_cols * ns.partial_sum_bits * tile_rows) * vectors
    return MvmWork(
        vectors=vectors, copies=op.copies if base else 1, subarrays=subarrays,
        pe_row_blocks=min(row_blocks, pe_side), spans_pes=row_blocks > pe_side,
        tile_rows=tile_rows, global_bits=(logical_rows + logical_cols) * a_bits * vectors,
        tile_input_bits=tile_in, tile_output_bits=tile_out, tile_bits_total=total_tile,
        tiles=tiles, chip_tiles=target.tiles)


# Breakdown keys of the compiler's reports, in NeuroSim's groups; the first-order
# model's other keys are reported as 0, so every report reads the same keys.
_BREAKDOWN_KEYS = {"array": "cells", "adc": "adc", "accumulation": "shift_add",
                   "buffer": "buffer", "interconnect": "router"}
_UNUSED_KEYS = ("dac", "sample_hold", "accumulate", "input_register", "output_register",
                "tile_output_register", "bus")


def mvm_breakdown(op: MvmOp, target: Target, batch: int = 1) -> tuple[LayerCost, MvmWork]:
    """Price a compiler operator with the NeuroSim-style model."""
    work = op_work(op, target, batch)
    return price_work(work, target), work


def mvm_event_cost(op: MvmOp, target: Target, batch: int = 1) -> EventCost:
    """Price an operator as an :class:`EventCost` under the NeuroSim-style model."""
    priced, work = mvm_breakdown(op, target, batch)
    breakdown = dict.fromkeys(_UNUSED_KEYS, 0.0)
    breakdown.update({_BREAKDOWN_KEYS[k]: v for k, v in priced.energy_pj.items()})
    reads_per_vector = target.input_cycles
    per_read_ns = priced.scaled_ns / (math.ceil(work.vectors / work.copies)
                                      * reads_per_vector) if work.vectors else 0.0
    adc_ns = priced.latency_ns["adc"]
    return EventCost(ceil_ns(priced.total_ns), sum(breakdown.values()), breakdown,
                     read_ns=adc_ns, vectors=int(work.vectors),
                     reads_per_vector=reads_per_vector, read_cycle_ns=per_read_ns,
                     fixed_ns=priced.total_ns - priced.scaled_ns)
