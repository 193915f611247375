"""Crossbar arithmetic in numpy: quantization, bit slicing, bit-serial reads, ADC, shift-add.

The functional executor needs to show that a tiled plan computes what the float
network computes, and how far the analog periphery moves it away. This module holds
the arithmetic of one crossbar read, free of plans and ONNX, so it can be tested on
its own (an ideal ADC must reproduce the integer product exactly).

Conventions (``docs/executor.md`` explains them):

* Weights are quantized symmetrically per output column to ``w_bits`` integers in
  ``[-(2**(w_bits-1) - 1), 2**(w_bits-1) - 1]``.
* ``offset`` scheme: a cell stores the unsigned ``q + 2**(w_bits-1)``; the periphery
  subtracts ``2**(w_bits-1) * sum(inputs)``. ``differential``: ``max(q, 0)`` and
  ``max(-q, 0)`` sit in a positive and a negative column, converted separately and
  subtracted after the ADC.
* A stored weight is split LSB first into ``ceil(w_bits/cell_bits)`` slices of
  ``cell_bits`` each; the physical columns of logical column ``j`` are
  ``j*columns_per_weight + sign*slices + slice``.
* Activations are applied ``dac_bits`` at a time (LSB chunk first). Signed
  activations are split into positive and negative magnitudes of ``a_bits - 1``
  bits, each applied as its own bit-serial pass and subtracted digitally.
* An ADC of ``adc_bits`` maps ``[0, full_scale]`` uniformly onto ``2**adc_bits``
  codes (round to nearest, clip outside).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from enasa_compiler.ir import SignedScheme

logger = logging.getLogger(__name__)

__all__ = [
    "CrossbarPrecision",
    "TileRead",
    "activation_planes",
    "adc_convert",
    "integer_mvm",
    "quantize_activations",
    "quantize_weight_matrix",
    "read_tile",
    "weight_cell_levels",
]

# float32 holds every integer below 2**24 exactly: above that the column sums move
# to float64 so an ideal ADC stays exact.
_FLOAT32_EXACT_LIMIT = 1 << 24


@dataclass(frozen=True)
class CrossbarPrecision:
    """The precisions a crossbar read is simulated at.

    Attributes:
        w_bits: weight bits (sign included).
        a_bits: activation bits (sign included for signed activations).
        dac_bits: input bits applied per crossbar read.
        cell_bits: bits one cell stores.
        adc_bits: ADC resolution; ``None`` is an ideal ADC (no rounding, no clipping).
        signed_scheme: how signed weights are stored.

    """

    w_bits: int
    a_bits: int
    dac_bits: int
    cell_bits: int
    adc_bits: int | None
    signed_scheme: SignedScheme

    @property
    def slices(self) -> int:
        """Cells one weight is split into (per sign column)."""
        return math.ceil(self.w_bits / self.cell_bits)

    @property
    def signs(self) -> int:
        """Columns per slice: 2 for differential pairs, else 1."""
        return 2 if self.signed_scheme is SignedScheme.DIFFERENTIAL else 1

    @property
    def columns_per_weight(self) -> int:
        """Physical columns of one logical weight column."""
        return self.slices * self.signs

    @property
    def weight_offset(self) -> int:
        """The bias added to stored weights in the offset scheme (0 for differential)."""
        return 1 << (self.w_bits - 1) if self.signed_scheme is SignedScheme.OFFSET else 0

    @property
    def max_level(self) -> int:
        """The highest conductance level of a cell."""
        return (1 << self.cell_bits) - 1

    def full_scale(self, rows: int) -> float:
        """Return the largest column sum ``rows`` driven rows can produce in one read."""
        return float(rows * self.max_level * ((1 << self.dac_bits) - 1))


class TileRead(NamedTuple):
    """One tile's contribution and what its ADCs saw.

    Attributes:
        values: ``(vectors, cols)`` recombined integer-domain partial sums.
        max_current: the largest column sum seen (before the ADC).
        conversions: ADC conversions made.
        clipped: conversions above the ADC's full scale.

    """

    values: np.ndarray
    max_current: float
    conversions: int
    clipped: int


def quantize_weight_matrix(matrix: np.ndarray, w_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Quantize an unrolled ``(rows, cols)`` matrix symmetrically per output column.

    Per column, because a column's scale can be applied after its own accumulation
    at no cost, and columns of one layer differ widely in range.

    Returns:
        ``(q, scale)``: int64 ``q`` of the matrix's shape and float64 ``scale`` per
        column, with ``matrix ~= q * scale``.

    """
    q_max = (1 << (w_bits - 1)) - 1
    peak = np.max(np.abs(matrix), axis=0) if matrix.shape[0] else np.zeros(matrix.shape[1])
    scale = np.where(peak > 0, peak / q_max, 1.0).astype(np.float64)
    q = np.clip(np.rint(matrix / scale), -q_max, q_max).astype(np.int64)
    return q, scale


def weight_cell_levels(q: np.ndarray, precision: CrossbarPrecision) -> np.ndarray:
    """Cell levels of quantized weights, in the crossbar's physical column layout.

    Args:
        q: ``(rows, cols)`` signed weight integers.
        precision: the slicing and signed scheme.

    Returns:
        ``(rows, cols * columns_per_weight)`` int64 levels in ``[0, max_level]``.

    """
    if precision.signed_scheme is SignedScheme.OFFSET:
        stored = (q + precision.weight_offset)[:, :, None]
    else:
        stored = np.stack([np.maximum(q, 0), np.maximum(-q, 0)], axis=2)
    shifts = precision.cell_bits * np.arange(precision.slices)
    levels = (stored[..., None] >> shifts) & precision.max_level
    return levels.reshape(q.shape[0], -1)


def quantize_activations(
    x: np.ndarray, a_bits: int, scale: float, signed: bool
) -> np.ndarray:
    """Round activations to ``a_bits`` integers (``x ~= q * scale``), clipping the range.

    Unsigned activations use all ``a_bits`` for the magnitude; signed ones keep one
    bit for the sign (``|q| <= 2**(a_bits-1) - 1``).
    """
    if signed:
        q_max = (1 << (a_bits - 1)) - 1
        low = -q_max
    else:
        q_max = (1 << a_bits) - 1
        low = 0
    return np.clip(np.rint(x / scale), low, q_max).astype(np.int64)


def activation_planes(
    q: np.ndarray, precision: CrossbarPrecision, signed: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Split integer activations into the bit chunks the DACs apply, one read each.

    Args:
        q: ``(vectors, rows)`` activation integers.
        precision: ``a_bits`` and ``dac_bits``.
        signed: whether ``q`` may be negative (sign split into two passes).

    Returns:
        ``(planes, plane_weights)``: ``(reads, vectors, rows)`` chunk values in
        ``[0, 2**dac_bits - 1]`` and the signed power of two each read's result is
        weighted by in the shift-add.

    """
    dac = precision.dac_bits
    mask = (1 << dac) - 1
    magnitude_bits = precision.a_bits - 1 if signed else precision.a_bits
    chunks = max(1, math.ceil(magnitude_bits / dac))
    parts = [(np.maximum(q, 0), 1.0), (np.maximum(-q, 0), -1.0)] if signed else [(q, 1.0)]
    planes = []
    weights = []
    for magnitude, sign in parts:
        for chunk in range(chunks):
            planes.append((magnitude >> (chunk * dac)) & mask)
            weights.append(sign * float(1 << (chunk * dac)))
    return np.stack(planes).astype(np.float32), np.asarray(weights)


def adc_convert(currents: np.ndarray, adc_bits: int, full_scale: float) -> np.ndarray:
    """Convert column sums with a uniform ``adc_bits`` ADC over ``[0, full_scale]``."""
    steps = (1 << adc_bits) - 1
    lsb = full_scale / steps
    return np.clip(np.rint(currents / lsb), 0, steps) * lsb


def read_tile(
    planes: np.ndarray,
    plane_weights: np.ndarray,
    levels: np.ndarray,
    precision: CrossbarPrecision,
    full_scale: float | None,
) -> TileRead:
    """Run every read of one tile, convert each column sum, and shift-add the results.

    Args:
        planes: ``(reads, vectors, rows)`` input chunks (see :func:`activation_planes`).
        plane_weights: weight of each read in the recombination.
        levels: ``(rows, phys_cols)`` conductance levels as programmed (may carry
            variation and faults).
        precision: slicing, signed scheme and ADC bits (``None``: ideal ADC).
        full_scale: ADC full scale in level units; ignored for an ideal ADC.

    Returns:
        The recombined partial sums per logical column, before the offset correction.

    """
    reads, vectors, rows = planes.shape
    worst_sum = rows * precision.max_level * ((1 << precision.dac_bits) - 1)
    dtype = np.float32 if worst_sum < _FLOAT32_EXACT_LIMIT else np.float64
    currents = planes.reshape(reads * vectors, rows).astype(dtype, copy=False) @ levels.astype(
        dtype, copy=False)
    max_current = float(currents.max()) if currents.size else 0.0
    clipped = 0
    if precision.adc_bits is not None and full_scale is not None:
        clipped = int(np.count_nonzero(currents > full_scale))
        currents = adc_convert(currents, precision.adc_bits, full_scale)
    cols = levels.shape[1] // precision.columns_per_weight
    split = currents.astype(np.float64).reshape(
        reads, vectors, cols, precision.signs, precision.slices)
    slice_weights = np.exp2(precision.cell_bits * np.arange(precision.slices))
    sign_weights = np.array([1.0, -1.0])[: precision.signs]
    per_read = (split @ slice_weights) @ sign_weights
    values = np.tensordot(plane_weights, per_read, axes=(0, 0))
    return TileRead(values, max_current, int(currents.size), clipped)


def integer_mvm(
    q_x: np.ndarray,
    q_w: np.ndarray,
    precision: CrossbarPrecision,
    full_scale: float | None = None,
) -> np.ndarray:
    """Multiply integer activations by integer weights through one crossbar's datapath.

    Slices the weights into cells, applies the inputs bit-serially, converts with the
    ADC and recombines; with an ideal ADC the result equals ``q_x @ q_w`` exactly.

    Args:
        q_x: ``(vectors, rows)`` activation integers (negative values allowed).
        q_w: ``(rows, cols)`` weight integers within ``w_bits``.
        precision: the datapath's precisions.
        full_scale: ADC full scale; defaults to the largest possible column sum.

    """
    signed = bool(np.any(q_x < 0))
    planes, plane_weights = activation_planes(q_x, precision, signed)
    levels = weight_cell_levels(q_w, precision)
    scale = precision.full_scale(q_w.shape[0]) if full_scale is None else full_scale
    read = read_tile(planes, plane_weights, levels, precision, scale)
    return read.values - precision.weight_offset * q_x.sum(axis=1, keepdims=True)
