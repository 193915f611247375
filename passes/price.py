"""Pricing: one cost table per crossbar program, the only caller of the cost model.

After lowering (and again after weight duplication, which changes the program) the
compiler prices every operator over the batch and every tile's write once. Mapping
(OPS, CP-SAT), the makespan bounds, duplication, plan assembly, ``simulate`` and the
validator read the resulting :class:`~enasa_compiler.ir.CostTable`; none of them calls
the per-operator cost functions of :mod:`enasa_compiler.targets.cost`. A new target
component therefore changes one place, and a scheduler can be tested on a made-up
table.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from enasa_compiler.ir import CostTable, CrossbarProgram, EventCost, Op, Tile
from enasa_compiler.targets.cost import operator_cost, program_cost
from enasa_compiler.targets.target import Target

logger = logging.getLogger(__name__)

__all__ = ["price", "price_operators"]


def price(program: CrossbarProgram, target: Target) -> CostTable:
    """Price every operator of ``program`` over its batch and every tile's write."""
    tiles = (t for w in program.weight_matrices() for t in w.tiles)
    return price_operators(program.ops, tiles, target, program.batch)


def price_operators(
    ops: Iterable[Op], tiles: Iterable[Tile], target: Target, batch: int
) -> CostTable:
    """Price operators and tile writes that are not (or no longer) a whole program.

    ``simulate`` and the validator rebuild a plan's operators from its JSON and price
    them here, by the same rules as the compile did. Tiles of one shape cost the same
    to write, so each shape is priced once.
    """
    operators = {op.id: operator_cost(op, target, batch) for op in ops}
    by_shape: dict[tuple[int, int], EventCost] = {}
    writes = {}
    for tile in tiles:
        shape = (tile.phys_rows, tile.phys_cols)
        cost = by_shape.get(shape)
        if cost is None:
            cost = by_shape[shape] = program_cost(tile, target)
        writes[tile.id] = cost
    return CostTable(batch=batch, operators=operators, writes=writes)
