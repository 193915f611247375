"""NeuroSim V1.3's own floorplan and layer-by-layer report, for calibrating a target.

The compiler maps every layer conventionally and duplicates whole copies; NeuroSim
places a network its own way (novel mapping of 3x3 layers, one kernel position per
PE; duplication into spare PEs and subarrays, "speed-up"; ``Chip.cpp``
``ChipDesignInitialize`` and ``OverallEachLayer``). :func:`network_cost` prices a
network on that floorplan with :func:`~enasa_compiler.targets.neurosim.price_work`,
so ``tests/test_neurosim.py`` can compare a ``cost_model: neurosim`` target with
NeuroSim's printed per-layer latency, energy and mapping (``tests/data/neurosim``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from enasa_compiler.targets.neurosim import LayerCost, MvmWork, neurosim_spec, price_work

if TYPE_CHECKING:
    from enasa_compiler.targets.target import Target

logger = logging.getLogger(__name__)

__all__ = ["LayerMapping", "LayerShape", "NetworkCost", "network_cost", "neurosim_floorplan"]

_OPS_PER_MAC = 2


@dataclass(frozen=True)
class LayerShape:
    """A layer as NeuroSim's NetWork.csv gives it (FC: ``h = w = k = 1``)."""

    h: int
    w: int
    cin: int
    k: int
    cout: int
    pool: bool = False
    stride: int = 1

    @property
    def vectors(self) -> int:
        """Input vectors NeuroSim simulates: unpadded output positions."""
        return ((self.h - self.k + 1) // self.stride) * ((self.w - self.k + 1) // self.stride)

    @property
    def macs(self) -> int:
        """MACs in NeuroSim's TOPS count (full input height and width)."""
        return self.h * self.w * self.cin * self.k * self.k * self.cout


@dataclass(frozen=True)
class LayerMapping:
    """NeuroSim's placement of one layer: tiles, duplication ("speed-up"), utilisation."""

    novel: bool
    tile_rows: int
    tile_cols: int
    speed_up: int
    utilization: float
    subarrays_per_copy: int = field(default=0)

    @property
    def tiles(self) -> int:
        """Tiles the layer occupies."""
        return self.tile_rows * self.tile_cols


def _duplicates(size: int, pe_size: int, tile_size: int, subarray: int,
                pe_level: bool) -> int:
    """Count the copies of a weight dimension NeuroSim fits into spare PEs and subarrays."""
    if size > pe_size:
        return 1
    pe_dup = tile_size // pe_size if pe_level else 1
    return pe_dup * (pe_size // (math.ceil(size / subarray) * subarray))


def neurosim_floorplan(layers: Sequence[LayerShape], target: Target) -> list[LayerMapping]:
    """Place layers as NeuroSim V1.3 does, layer by layer: novel mapping, tiles, speed-up.

    ``Chip.cpp``: ``ChipDesignInitialize``, ``OverallEachLayer``. The conventional tile
    is the target's tile (``pes_per_tile`` PEs of ``crossbars_per_pe`` subarrays,
    square); a novel-mapped tile has ``novel_mapping_pes`` PEs of the same size, one
    per kernel position. Novel mapping is used for layers with the most common kernel
    area (other than 1) and at least a subarray's rows.
    """
    ns = neurosim_spec(target)
    sub = target.crossbar.rows
    pe_size = math.isqrt(target.pe.crossbars_per_pe) * sub
    tile_size = math.isqrt(target.tile.pes_per_tile) * pe_size
    per_weight = target.columns_per_weight
    areas = [layer.k * layer.k for layer in layers if layer.k > 1]
    common = max(set(areas), key=areas.count) if areas else 0
    plan = []
    for layer in layers:
        cols = layer.cout * per_weight
        novel = layer.k * layer.k == common and layer.cin * layer.k * layer.k >= sub
        if novel:
            rows = layer.cin
            tile_rows, tile_cols = math.ceil(rows / pe_size), math.ceil(cols / pe_size)
            dup = (_duplicates(rows, pe_size, pe_size, sub, False)
                   * _duplicates(cols, pe_size, pe_size, sub, False))
            cells = dup * rows * ns.novel_mapping_pes * cols
            capacity = tile_rows * tile_cols * pe_size * pe_size * ns.novel_mapping_pes
            copy = ns.novel_mapping_pes * math.ceil(rows / sub) * math.ceil(cols / sub)
        else:
            rows = layer.cin * layer.k * layer.k
            tile_rows, tile_cols = math.ceil(rows / tile_size), math.ceil(cols / tile_size)
            dup = (_duplicates(rows, pe_size, tile_size, sub, True)
                   * _duplicates(cols, pe_size, tile_size, sub, True))
            cells = dup * rows * cols
            capacity = tile_rows * tile_cols * tile_size * tile_size
            copy = math.ceil(rows / sub) * math.ceil(cols / sub)
        plan.append(LayerMapping(novel, tile_rows, tile_cols, dup, cells / capacity, copy))
    return plan


def _layer_work(layer: LayerShape, mapping: LayerMapping, chip_tiles: int,
                target: Target) -> MvmWork:
    ns = neurosim_spec(target)
    a_bits, sub = target.precision.a_bits, target.crossbar.rows
    per_weight = target.columns_per_weight
    vectors = layer.vectors
    out_bits = layer.cout * a_bits * vectors / (4 if layer.pool else 1)
    psum = ns.partial_sum_bits
    pe_side = math.isqrt(target.pe.crossbars_per_pe)
    if mapping.novel:
        pes = ns.novel_mapping_pes
        rows_per_pe = layer.cin
        subarrays = tuple((min(sub, rows_per_pe - r), min(sub, layer.cout * per_weight - c))
                          for _ in range(pes) for r in range(0, rows_per_pe, sub)
                          for c in range(0, layer.cout * per_weight, sub))
        in_bits = layer.cin * layer.k * a_bits * vectors
        side = math.isqrt(pes)
        cout_tile = math.ceil(layer.cout / mapping.tile_cols)
        tile_in = layer.cin * layer.k * layer.k * a_bits * vectors / side / mapping.tile_rows
        tile_out = cout_tile * psum * vectors / pes
        row_blocks, spans = math.ceil(rows_per_pe / sub), True
    else:
        rows = layer.cin * layer.k * layer.k
        cols = layer.cout * per_weight
        subarrays = tuple((min(sub, rows - r), min(sub, cols - c))
                          for r in range(0, rows, sub) for c in range(0, cols, sub))
        in_bits = rows * a_bits * vectors
        tile_size = math.isqrt(target.tile.pes_per_tile) * pe_side * sub
        tile_in = min(rows, tile_size) * a_bits * vectors
        tile_out = min(layer.cout, tile_size // per_weight) * psum * vectors
        blocks = math.ceil(rows / sub)
        full_dup = mapping.speed_up >= target.tile.pes_per_tile
        row_blocks = blocks if full_dup else min(blocks, pe_side)
        spans = blocks > pe_side and not full_dup
    total = (tile_in * mapping.tile_rows * mapping.tile_cols
             + tile_out * mapping.tile_rows * mapping.tile_cols)
    return MvmWork(vectors=vectors, copies=mapping.speed_up, subarrays=subarrays,
                   pe_row_blocks=row_blocks, spans_pes=spans, tile_rows=mapping.tile_rows,
                   global_bits=in_bits + out_bits, tile_input_bits=tile_in,
                   tile_output_bits=tile_out, tile_bits_total=total, tiles=mapping.tiles,
                   chip_tiles=chip_tiles, novel=mapping.novel, whole_vectors=False)


@dataclass(frozen=True)
class NetworkCost:
    """A network run layer by layer on NeuroSim's floorplan: per layer and chip totals."""

    mappings: tuple[LayerMapping, ...]
    layers: tuple[LayerCost, ...]
    leakage_pj: tuple[float, ...]
    macs: int
    energy_zeta: float

    @property
    def latency_ns(self) -> float:
        """Latency per image: the layers one after another."""
        return sum(layer.total_ns for layer in self.layers)

    @property
    def dynamic_pj(self) -> float:
        """Dynamic energy per image."""
        return sum(layer.dynamic_pj for layer in self.layers)

    @property
    def leakage_total_pj(self) -> float:
        """Leakage energy per image."""
        return sum(self.leakage_pj)

    @property
    def tops_per_w(self) -> float:
        """NeuroSim's TOPS/W: 2 ops per MAC over dynamic plus leakage energy, over zeta."""
        return _OPS_PER_MAC * self.macs / (self.dynamic_pj + self.leakage_total_pj) \
            / self.energy_zeta


def _tile_leakage_mw(target: Target, novel: bool) -> float:
    from enasa_compiler.targets.power import static_power_per_crossbar_mw
    ns = neurosim_spec(target)
    subarrays = target.crossbars_per_tile
    if novel:
        subarrays = ns.novel_mapping_pes * target.pe.crossbars_per_pe
    return static_power_per_crossbar_mw(target) * subarrays


def network_cost(layers: Sequence[LayerShape], target: Target) -> NetworkCost:
    """Price a network the way NeuroSim V1.3 does: its floorplan, layer by layer.

    A layer's leakage is that of the tiles of all other layers, idle while it runs,
    at this layer's tile leakage (NeuroSim's layer-by-layer accounting).
    """
    ns = neurosim_spec(target)
    mappings = neurosim_floorplan(layers, target)
    chip_tiles = sum(m.tiles for m in mappings)
    costs, leakage = [], []
    for layer, mapping in zip(layers, mappings, strict=True):
        priced = price_work(_layer_work(layer, mapping, chip_tiles, target), target)
        outputs = layer.vectors * layer.cout
        priced.latency_ns["other"] = (math.ceil(outputs / ns.activation_units)
                                      * ns.sensing_cycle_ns)
        costs.append(priced)
        idle_tiles = chip_tiles - mapping.tiles
        leakage.append(_tile_leakage_mw(target, mapping.novel) * idle_tiles
                       * priced.total_ns)
    return NetworkCost(tuple(mappings), tuple(costs), tuple(leakage),
                       sum(layer.macs for layer in layers), ns.energy_zeta)
