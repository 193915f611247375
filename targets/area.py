"""Silicon area of a target: per component, per PE, per tile and for the chip.

Each component's area is one instance's ``area_mm2`` times how many the hierarchy
holds (:mod:`~enasa_compiler.targets.inventory`). A tile's area includes its share of
a router shared by several tiles and of the chip's digital units; the chip adds its
off-chip links.
"""

from __future__ import annotations

import logging

from enasa_compiler.targets.inventory import inventory
from enasa_compiler.targets.target import Target

logger = logging.getLogger(__name__)

__all__ = ["area_breakdown_mm2", "chip_area_mm2", "pe_area_mm2", "tile_area_mm2"]


def area_breakdown_mm2(target: Target) -> dict[str, float]:
    """Chip area per component (all instances on the chip)."""
    return {c.key: c.on_chip(target) * c.area_mm2 for c in inventory(target)}


def pe_area_mm2(target: Target) -> float:
    """Area of one full PE: its crossbars with their periphery, shift-add, registers."""
    return sum(c.in_pe(target) * c.area_mm2 for c in inventory(target))


def tile_area_mm2(target: Target) -> float:
    """Area of one full tile: its PEs, buffer, bus, its shares of router and digital units."""
    return sum(c.in_tile(target) * c.area_mm2 for c in inventory(target))


def chip_area_mm2(target: Target) -> float:
    """Area of the chip: every component at its count, off-chip links included."""
    return sum(area_breakdown_mm2(target).values())
