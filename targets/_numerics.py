"""What a crossbar holds and how it multiplies, in the executor's two modes.

The plan runner (``_plan_runner.py``) decides *which* crossbar holds which tile and
which tiles an operator reads; the classes here decide *what* is written into a
crossbar and how a read turns into numbers. ``IdealNumerics`` stores float64 weight
blocks and multiplies exactly; ``QuantizedNumerics`` stores conductance levels (with
optional variation and stuck-at faults) and runs the bit-serial, ADC-converted
datapath of :mod:`._crossbar_math`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from enasa_compiler.ir import Tile, WeightMatrix
from enasa_compiler.targets import _crossbar_math as xbm
from enasa_compiler.targets.target import Target

logger = logging.getLogger(__name__)

__all__ = ["AdcRange", "Calibration", "IdealNumerics", "Numerics", "QuantizedNumerics"]

AdcRange = Literal["full", "calibrated"] | float
"""ADC full scale: the largest possible column sum, the per-tile calibrated maximum, or a
fraction in ``(0, 1]`` of the largest possible column sum."""

Unrolled = Callable[[str], np.ndarray]
"""Weight id -> its float64 unrolled ``(rows, cols)`` matrix."""

StoredTiles = Sequence[tuple[Tile, np.ndarray]]


@dataclass
class Calibration:
    """Ranges fitted on calibration images.

    Attributes:
        activation: per activation value name, its largest magnitude and whether it
            was ever negative.
        tile_max: per tile id, the largest column sum its reads produced.

    """

    activation: dict[str, tuple[float, bool]] = field(default_factory=dict)
    tile_max: dict[str, float] = field(default_factory=dict)


class IdealNumerics:
    """Float64 arithmetic through the tiles; records activation ranges for calibration."""

    def __init__(self, unrolled: Unrolled) -> None:
        self.unrolled = unrolled
        self.calibration = Calibration()
        self.conversions = 0
        self.clipped = 0

    def program(self, matrix: WeightMatrix, tile: Tile, write: tuple[int, int], crossbar: int,
                offset: tuple[int, int] = (0, 0)) -> np.ndarray:
        """Return what programming ``tile`` writes: its block of the float matrix."""
        return self.unrolled(matrix.id)[tile.row_start:tile.row_stop,
                                        tile.col_start:tile.col_stop].copy()

    def multiply(self, value: str, matrix: WeightMatrix, vectors: np.ndarray,
                 stored: StoredTiles) -> np.ndarray:
        """Multiply ``(vectors, rows)`` by the matrix held in ``stored`` tiles."""
        peak = float(np.max(np.abs(vectors))) if vectors.size else 0.0
        signed = bool(vectors.size and np.min(vectors) < 0)
        old_peak, old_signed = self.calibration.activation.get(value, (0.0, False))
        self.calibration.activation[value] = (max(peak, old_peak), signed or old_signed)
        out = np.zeros((vectors.shape[0], matrix.cols))
        for tile, block in stored:
            rows = vectors[:, tile.row_start:tile.row_stop]
            out[:, tile.col_start:tile.col_stop] += rows @ block
        return out


class QuantizedNumerics:
    """The crossbar datapath: cells, bit-serial reads, ADCs, shift-add, dequantization.

    Args:
        unrolled: weight id -> float matrix (quantized here, per output column).
        target: precisions, crossbar size and on/off resistances.
        calibration: activation ranges (from an ideal pass) and, for the calibrated
            ADC range, per-tile maxima; filled in when ``observe_tiles``.
        adc_range: the ADC full-scale policy.
        variation_sigma: relative Gaussian spread of each cell's conductance.
        stuck_at_fraction: share of each crossbar's cells stuck at 0 or the top level.
        seed: seeds variation (per write) and faults (per crossbar).
        observe_tiles: calibration pass: ideal ADC, record each tile's largest sum.

    """

    def __init__(self, unrolled: Unrolled, target: Target, calibration: Calibration, *,
                 adc_range: AdcRange, variation_sigma: float, stuck_at_fraction: float,
                 seed: int, observe_tiles: bool) -> None:
        p = target.precision
        self.unrolled = unrolled
        self.precision = xbm.CrossbarPrecision(
            w_bits=p.w_bits, a_bits=p.a_bits, dac_bits=p.dac_bits,
            cell_bits=target.crossbar.cell_bits,
            adc_bits=None if observe_tiles else p.adc_bits, signed_scheme=p.signed_scheme)
        self.crossbar_shape = (target.crossbar.rows, target.crossbar.cols)
        g_on, g_off = 1.0 / target.crossbar.r_on_ohm, 1.0 / target.crossbar.r_off_ohm
        # The off state conducts too: variation on a level-0 cell is relative to g_off,
        # expressed in level units (one level = (g_on - g_off) / max_level).
        self.off_level = g_off / ((g_on - g_off) / self.precision.max_level)
        self.calibration = calibration
        self.adc_range = adc_range
        self.sigma = variation_sigma
        self.stuck_fraction = stuck_at_fraction
        self.seed = seed
        self.observe_tiles = observe_tiles
        self.conversions = 0
        self.clipped = 0
        self._quantized: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._programmed: dict[tuple[int, int], np.ndarray] = {}
        self._faults: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def quantized(self, weight_id: str) -> tuple[np.ndarray, np.ndarray]:
        """Return the weight's integers and per-column scales (computed once)."""
        if weight_id not in self._quantized:
            self._quantized[weight_id] = xbm.quantize_weight_matrix(
                self.unrolled(weight_id), self.precision.w_bits)
        return self._quantized[weight_id]

    def program(self, matrix: WeightMatrix, tile: Tile, write: tuple[int, int], crossbar: int,
                offset: tuple[int, int] = (0, 0)) -> np.ndarray:
        """Return the levels writing ``tile`` into ``crossbar`` leaves in its cells.

        ``write`` identifies the write (its kind and index) and seeds its variation;
        ``offset`` is the corner of the tile's cells in the crossbar (tile packing),
        which decides the crossbar's stuck cells it meets.
        """
        # Replayed for every chunk of images: the same write gives the same cells.
        if write in self._programmed:
            return self._programmed[write]
        q, _ = self.quantized(matrix.id)
        block = q[tile.row_start:tile.row_stop, tile.col_start:tile.col_stop]
        levels = xbm.weight_cell_levels(block, self.precision).astype(np.float64)
        if self.sigma > 0:
            noise = np.random.default_rng([self.seed, *write]).standard_normal(
                levels.shape)
            levels = levels + (levels + self.off_level) * self.sigma * noise
        if self.stuck_fraction > 0:
            stuck, high = self.faults(crossbar)
            rows, cols = levels.shape
            row, col = offset
            stuck = stuck[row:row + rows, col:col + cols]
            high = high[row:row + rows, col:col + cols]
            levels = np.where(stuck, np.where(high, float(self.precision.max_level), 0.0),
                              levels)
        self._programmed[write] = levels
        return levels

    def faults(self, crossbar: int) -> tuple[np.ndarray, np.ndarray]:
        """Return a crossbar's stuck cells and which of them are stuck at the top level.

        Faults belong to the device, so they are drawn per crossbar (whatever tile it
        holds), half stuck at level 0 and half at the top level.
        """
        if crossbar not in self._faults:
            rng = np.random.default_rng([self.seed, 1, crossbar])
            stuck = rng.random(self.crossbar_shape) < self.stuck_fraction
            self._faults[crossbar] = (stuck, rng.random(self.crossbar_shape) < 0.5)
        return self._faults[crossbar]

    def full_scale(self, tile: Tile) -> float:
        """Return the ADC full scale for reads of ``tile``, per the range policy."""
        largest = self.precision.full_scale(tile.phys_rows)
        if self.adc_range == "full":
            return largest
        if self.adc_range == "calibrated":
            observed = self.calibration.tile_max.get(tile.id, 0.0)
            return observed if observed > 0 else largest
        return float(self.adc_range) * largest

    def multiply(self, value: str, matrix: WeightMatrix, vectors: np.ndarray,
                 stored: StoredTiles) -> np.ndarray:
        """Quantize ``vectors``, read every stored tile, add row blocks, dequantize."""
        peak, signed = self.calibration.activation.get(value, (0.0, False))
        levels_of_x = (1 << (self.precision.a_bits - (1 if signed else 0))) - 1
        scale = peak / levels_of_x if peak > 0 else 1.0
        q_x = xbm.quantize_activations(vectors, self.precision.a_bits, scale, signed)
        planes, plane_weights = xbm.activation_planes(q_x, self.precision, signed)
        _, w_scale = self.quantized(matrix.id)
        out = np.zeros((vectors.shape[0], matrix.cols))
        offset = self.precision.weight_offset
        for tile, levels in stored:
            rows = slice(tile.row_start, tile.row_stop)
            read = xbm.read_tile(planes[:, :, rows], plane_weights, levels, self.precision,
                                 self.full_scale(tile))
            self.conversions += read.conversions
            self.clipped += read.clipped
            if self.observe_tiles:
                known = self.calibration.tile_max.get(tile.id, 0.0)
                self.calibration.tile_max[tile.id] = max(known, read.max_current)
            partial = read.values
            if offset:
                # The offset column's share, subtracted digitally from the input sum.
                partial = partial - offset * q_x[:, rows].sum(axis=1, keepdims=True)
            out[:, tile.col_start:tile.col_stop] += partial
        return out * scale * w_scale[None, :]


Numerics = IdealNumerics | QuantizedNumerics
