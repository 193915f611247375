"""Every component of a target with how many of it sit in a PE, a tile and the chip.

Area and static power are per-instance figures times counts; this module does the
counting once, so :mod:`~enasa_compiler.targets.area` and
:mod:`~enasa_compiler.targets.power` sum the same inventory. Counts follow the
hierarchy: ``crossbar``-level parts (the array, its ADCs, DACs, sample-and-holds)
repeat per crossbar, ``pe``-level parts per PE, ``tile``-level parts per tile, a
router per ``tiles_per_router`` tiles; digital units are spread evenly over the tiles
and the off-chip links belong to the chip alone.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from enasa_compiler.targets.target import Target

logger = logging.getLogger(__name__)

__all__ = ["Component", "Level", "inventory"]


class Level(enum.StrEnum):
    """Where a component repeats."""

    CROSSBAR = "crossbar"
    PE = "pe"
    TILE = "tile"
    ROUTER = "router"
    SPREAD = "spread"  # a chip-wide pool shared out over the tiles (digital units)
    CHIP = "chip"


@dataclass(frozen=True)
class Component:
    """One kind of part: how many per unit of its level, and one instance's figures.

    Attributes:
        key: the name reports use (matches the cost model's breakdown keys).
        level: the hierarchy level it repeats at.
        per_unit: instances per unit of that level (per crossbar, per PE, ...).
        leakage_mw: static power of one instance.
        area_mm2: area of one instance.

    """

    key: str
    level: Level
    per_unit: float
    leakage_mw: float
    area_mm2: float

    def on_chip(self, target: Target) -> float:
        """Instances on the whole chip."""
        units = {
            Level.CROSSBAR: target.chip.crossbars, Level.PE: target.pes,
            Level.TILE: target.tiles, Level.ROUTER: target.routers,
            Level.SPREAD: 1, Level.CHIP: 1,
        }[self.level]
        return units * self.per_unit

    def in_pe(self, target: Target) -> float:
        """Instances in one full PE."""
        if self.level is Level.CROSSBAR:
            return target.pe.crossbars_per_pe * self.per_unit
        return self.per_unit if self.level is Level.PE else 0.0

    def in_tile(self, target: Target) -> float:
        """Instances in (or shared out to) one full tile."""
        if self.level in (Level.CROSSBAR, Level.PE):
            return target.tile.pes_per_tile * self.in_pe(target)
        if self.level is Level.TILE:
            return self.per_unit
        if self.level is Level.ROUTER:
            return self.per_unit / target.tile.router.tiles_per_router
        if self.level is Level.SPREAD:
            return self.per_unit / target.tiles
        return 0.0


def inventory(target: Target) -> tuple[Component, ...]:
    """Every component of the target, keyed as the cost model's breakdown."""
    xbar, pe, tile, chip = target.crossbar, target.pe, target.tile, target.chip
    return (
        Component("cells", Level.CROSSBAR, 1, xbar.leakage_mw, xbar.area_mm2),
        Component("dac", Level.CROSSBAR, xbar.rows, pe.dac.leakage_mw, pe.dac.area_mm2),
        Component("sample_hold", Level.CROSSBAR, xbar.cols, pe.sample_hold.leakage_mw,
                  pe.sample_hold.area_mm2),
        Component("adc", Level.CROSSBAR, target.adcs_per_crossbar, pe.adc.leakage_mw,
                  pe.adc.area_mm2),
        Component("shift_add", Level.PE, pe.shift_add.units, pe.shift_add.leakage_mw,
                  pe.shift_add.area_mm2),
        Component("input_register", Level.PE, 1, pe.input_register.leakage_mw,
                  pe.input_register.area_mm2),
        Component("output_register", Level.PE, 1, pe.output_register.leakage_mw,
                  pe.output_register.area_mm2),
        Component("buffer", Level.TILE, 1, tile.buffer.leakage_mw, tile.buffer.area_mm2),
        Component("tile_output_register", Level.TILE, 1, tile.output_register.leakage_mw,
                  tile.output_register.area_mm2),
        Component("bus", Level.TILE, 1, tile.bus.leakage_mw, tile.bus.area_mm2),
        Component("router", Level.ROUTER, 1, tile.router.leakage_mw, tile.router.area_mm2),
        Component("digital", Level.SPREAD, chip.digital_units, chip.digital_unit.leakage_mw,
                  chip.digital_unit.area_mm2),
        Component("io", Level.CHIP, chip.io.links, chip.io.leakage_mw, chip.io.area_mm2),
    )
