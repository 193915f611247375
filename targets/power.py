"""Peak and static power of a target, summed from its components.

*Peak* power is what the chip draws when every crossbar reads back to back, each
running a full-size operator of its own (all rows and all weight columns in use, one
input vector after another), and every digital unit runs at its full rate. The
dynamic part is the cost model's energy of one such operator
(:func:`~enasa_compiler.targets.cost.mvm_energy`) divided by its duration, so the
power sums and the per-operator energies can never disagree. *Static* power is each
component's ``leakage_mw`` times its count (:mod:`~enasa_compiler.targets.inventory`);
the report charges it over a plan's makespan.

ISAAC's published figures (IMA 24 mW, tile 330 mW, chip 65.8 W) are peak power in
this sense; ``tests/test_calibration.py`` checks the ``isaac-32nm`` preset against them.
"""

from __future__ import annotations

import logging

from enasa_compiler.ir import MvmOp, Tile, WeightMatrix
from enasa_compiler.targets.cost import mvm_energy
from enasa_compiler.targets.inventory import Level, inventory
from enasa_compiler.targets.target import Target

logger = logging.getLogger(__name__)

__all__ = [
    "PE_KEYS",
    "chip_power_w",
    "crossbar_peak_power_mw",
    "digital_peak_power_mw",
    "full_crossbar_op",
    "pe_power_mw",
    "peak_power_breakdown_mw",
    "static_power_breakdown_mw",
    "static_power_mw",
    "static_power_per_crossbar_mw",
    "tile_power_mw",
]

# Energy a crossbar's own PE spends (the rest of a read's energy is tile-level traffic).
PE_KEYS = ("cells", "dac", "sample_hold", "adc", "shift_add", "input_register",
           "output_register")
_ZERO_SHA256 = "0" * 64


def full_crossbar_op(target: Target) -> MvmOp:
    """One vector through one completely filled crossbar: the unit of peak work."""
    rows, cols = target.crossbar.rows, target.weights_per_crossbar_row
    tile = Tile("peak.t0", 0, rows, 0, cols, rows, cols * target.columns_per_weight)
    matrix = WeightMatrix("peak", _ZERO_SHA256, rows, cols, target.columns_per_weight,
                          (tile,))
    return MvmOp("peak", "MatMul", (0,), ("x",), ("y",), (matrix,), vectors_per_image=1,
                 macs=rows * cols)


def crossbar_peak_power_mw(target: Target) -> dict[str, float]:
    """Dynamic power per component of one crossbar reading back to back (pJ/ns = mW)."""
    priced = mvm_energy(full_crossbar_op(target), target)
    return {key: pj / priced.latency_ns for key, pj in priced.breakdown_pj.items()}


def digital_peak_power_mw(target: Target) -> float:
    """Dynamic power of all digital units at ``digital_ops_per_cycle`` every cycle."""
    chip = target.chip
    ops_per_ns = chip.digital_units * chip.digital_ops_per_cycle * target.clock_ghz
    return ops_per_ns * chip.digital_unit.pj_per_op


def static_power_breakdown_mw(target: Target) -> dict[str, float]:
    """Leakage of the whole chip per component."""
    return {c.key: c.on_chip(target) * c.leakage_mw for c in inventory(target)}


def static_power_mw(target: Target) -> float:
    """Leakage of the whole chip: what it burns per nanosecond whether busy or idle."""
    return sum(static_power_breakdown_mw(target).values())


def static_power_per_crossbar_mw(target: Target) -> float:
    """Leakage that comes with holding one crossbar: its own, its PE's and its tile's share.

    What an operator on ``n`` crossbars is charged while it runs; digital units and
    off-chip links are not included.
    """
    held = (Level.CROSSBAR, Level.PE, Level.TILE, Level.ROUTER)
    total = sum(c.on_chip(target) * c.leakage_mw for c in inventory(target)
                if c.level in held)
    return total / target.chip.crossbars


def peak_power_breakdown_mw(target: Target) -> dict[str, float]:
    """Chip peak power per component: every crossbar's dynamic share plus leakage."""
    per_crossbar = crossbar_peak_power_mw(target)
    total = {key: mw * target.chip.crossbars for key, mw in per_crossbar.items()}
    total["digital"] = total.get("digital", 0.0) + digital_peak_power_mw(target)
    for key, mw in static_power_breakdown_mw(target).items():
        total[key] = total.get(key, 0.0) + mw
    return total


def pe_power_mw(target: Target) -> float:
    """Peak power of one full PE: its crossbars' reads, periphery and registers."""
    per_crossbar = crossbar_peak_power_mw(target)
    dynamic = target.pe.crossbars_per_pe * sum(per_crossbar[k] for k in PE_KEYS)
    static = sum(c.in_pe(target) * c.leakage_mw for c in inventory(target))
    return dynamic + static


def tile_power_mw(target: Target) -> float:
    """Peak power of one full tile.

    Its PEs, its buffer, bus and router traffic, and its shares of router leakage and
    of the digital units.
    """
    per_crossbar = crossbar_peak_power_mw(target)
    dynamic = target.crossbars_per_tile * sum(per_crossbar.values())
    digital = digital_peak_power_mw(target) / target.tiles
    static = sum(c.in_tile(target) * c.leakage_mw for c in inventory(target))
    return dynamic + digital + static


def chip_power_w(target: Target) -> float:
    """Peak power of the chip in watts, off-chip links included."""
    return sum(peak_power_breakdown_mw(target).values()) / 1e3
