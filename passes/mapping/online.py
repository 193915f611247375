"""Online mapping across groups: start a plan from the crossbars a previous plan left.

In a NAS loop groups arrive one after another, and the crossbars still hold the
weights the last group used. A tile of the new group whose weights (content hash and
unrolled layout) and block (rows, columns, bit layout) equal a tile left in some
crossbar is used where it is, not written again. Only tiles from a plan made for the
same target qualify, since crossbar geometry and precisions decide the cell contents.
"""

from __future__ import annotations

import logging

from enasa_compiler.errors import InputError
from enasa_compiler.ir import CrossbarProgram, Tile, WeightMatrix
from enasa_compiler.plan import Plan
from enasa_compiler.targets.target import Target

logger = logging.getLogger(__name__)

__all__ = ["TileKey", "final_contents", "initial_state_from_plan", "tile_key"]

TileKey = tuple[str, int, int, int, int, int, int, int]


def _key(sha256: str, columns_per_weight: int, tile: Tile) -> TileKey:
    return (sha256, columns_per_weight, tile.row_start, tile.row_stop, tile.col_start,
            tile.col_stop, tile.phys_rows, tile.phys_cols)


def tile_key(matrix: WeightMatrix, tile: Tile) -> TileKey:
    """Identify a tile by what its cells hold, whatever plan or program it came from."""
    return _key(matrix.sha256, matrix.columns_per_weight, tile)


def final_contents(plan: Plan) -> dict[int, TileKey]:
    """Return what each crossbar holds when ``plan`` ends: the last tile written there."""
    tiles = {t.id: (w, t) for w in plan.weights for t in w.tiles}
    last: dict[int, tuple[int, str]] = {p.crossbar: (-1, p.tile) for p in plan.initial}
    for write in plan.program:
        if write.crossbar not in last or write.end_ns >= last[write.crossbar][0]:
            last[write.crossbar] = (write.end_ns, write.tile)
    contents = {}
    for crossbar, (_, tile_id) in last.items():
        matrix, tile = tiles[tile_id]
        contents[crossbar] = _key(matrix.sha256, matrix.columns_per_weight, tile)
    return contents


def initial_state_from_plan(
    previous: Plan, program: CrossbarProgram, target: Target
) -> dict[int, str]:
    """Map crossbars left by ``previous`` to the tiles of ``program`` they already hold.

    Raises:
        InputError: the previous plan was made for another target.

    """
    if previous.target_sha256 != target.sha256:
        raise InputError(
            f"the initial-state plan was made for target '{previous.target.get('name')}' "
            f"({previous.target_sha256[:12]}), not '{target.name}' ({target.sha256[:12]})")
    wanted: dict[TileKey, str] = {}
    for matrix in program.weight_matrices():
        for tile in matrix.tiles:
            wanted.setdefault(_key(matrix.sha256, matrix.columns_per_weight, tile), tile.id)
    initial: dict[int, str] = {}
    placed: set[str] = set()
    for crossbar, key in sorted(final_contents(previous).items()):
        tile_id = wanted.get(key)
        if tile_id is not None and tile_id not in placed and crossbar < target.chip.crossbars:
            initial[crossbar] = tile_id
            placed.add(tile_id)
    logger.info("online mapping: %d of %d tiles already in place", len(initial), len(wanted))
    return initial
