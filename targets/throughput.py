"""Peak throughput and efficiency of a target: TOPS, TOPS/W, TOPS/mm^2.

Peak throughput counts 2 operations (multiply and add) per weight-activation product
at the target's precisions, every crossbar full and reading back to back::

    ops per crossbar MVM = 2 * rows * weights_per_crossbar_row
    MVM time (ns)        = input_cycles * read_cycle_ns(all weight columns in use)
    peak TOPS            = crossbars * ops per MVM / MVM time / 1e3

with ``weights_per_crossbar_row = cols // columns_per_weight`` (ISAAC: 128 / 8 = 16
16-bit weights over 2-bit cells), ``input_cycles = ceil(a_bits / dac_bits)`` (16) and
the read cycle from :func:`~enasa_compiler.targets.cost.read_cycle_ns` (100 ns). For
ISAAC: 16128 * 4096 / 1600 ns = 41.3 TOPS.
"""

from __future__ import annotations

import logging

from enasa_compiler.targets.area import chip_area_mm2
from enasa_compiler.targets.cost import read_cycle_ns
from enasa_compiler.targets.power import chip_power_w
from enasa_compiler.targets.target import Target

logger = logging.getLogger(__name__)

__all__ = ["crossbar_mvm_ns", "ops_per_crossbar_mvm", "peak_tops", "tops_per_mm2",
           "tops_per_w"]

_OPS_PER_MAC = 2
_GOPS_PER_TOPS = 1e3


def ops_per_crossbar_mvm(target: Target) -> int:
    """Operations one full crossbar performs on one input vector (2 per MAC)."""
    return _OPS_PER_MAC * target.crossbar.rows * target.weights_per_crossbar_row


def crossbar_mvm_ns(target: Target) -> float:
    """Time one full crossbar takes for one input vector (all its bit-serial reads)."""
    used_cols = target.weights_per_crossbar_row * target.columns_per_weight
    return target.input_cycles * read_cycle_ns(used_cols, target)


def peak_tops(target: Target) -> float:
    """Tera-operations per second with every crossbar busy (ops per ns are GOPS)."""
    gops = target.chip.crossbars * ops_per_crossbar_mvm(target) / crossbar_mvm_ns(target)
    return gops / _GOPS_PER_TOPS


def tops_per_w(target: Target) -> float:
    """Peak throughput over peak power."""
    return peak_tops(target) / chip_power_w(target)


def tops_per_mm2(target: Target) -> float:
    """Peak throughput over chip area."""
    return peak_tops(target) / chip_area_mm2(target)
