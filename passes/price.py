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

from enasa_compiler.ir import CostTable, CrossbarProgram, EventCost
from enasa_compiler.targets.cost import operator_cost, program_cost
from enasa_compiler.targets.target import Target

logger = logging.getLogger(__name__)

__all__ = ["price"]


def price(program: CrossbarProgram, target: Target) -> CostTable:
    """Price every operator of ``program`` over its batch and every tile's write.

    Tiles of one shape cost the same to write, so each shape is priced once.
    """
    operators = {op.id: operator_cost(op, target, program.batch) for op in program.ops}
    by_shape: dict[tuple[int, int], EventCost] = {}
    writes = {}
    for matrix in program.weight_matrices():
        for tile in matrix.tiles:
            shape = (tile.phys_rows, tile.phys_cols)
            cost = by_shape.get(shape)
            if cost is None:
                cost = by_shape[shape] = program_cost(tile, target)
            writes[tile.id] = cost
    return CostTable(batch=program.batch, operators=operators, writes=writes)
