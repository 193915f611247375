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
from enasa_compiler.ir import CrossbarContents, CrossbarProgram, Tile, TileKey, WeightMatrix
from enasa_compiler.targets.target import Target

logger = logging.getLogger(__name__)

__all__ = ["TileKey", "initial_state", "tile_key"]


def tile_key(matrix: WeightMatrix, tile: Tile) -> TileKey:
    """Identify a tile by what its cells hold, whatever plan or program it came from."""
    return (matrix.sha256, matrix.columns_per_weight, tile.row_start, tile.row_stop,
            tile.col_start, tile.col_stop, tile.phys_rows, tile.phys_cols)


def initial_state(
    contents: CrossbarContents, program: CrossbarProgram, target: Target
) -> dict[int, str]:
    """Map crossbars whose ``contents`` equal tiles of ``program`` to those tiles.

    Each tile is used in place at most once (a copy elsewhere would be written anyway),
    and only crossbars the target has count.

    Raises:
        InputError: the contents were written for another target.

    """
    if contents.target_sha256 != target.sha256:
        raise InputError(
            f"the initial-state plan was made for target '{contents.target_name}' "
            f"({contents.target_sha256[:12]}), not '{target.name}' ({target.sha256[:12]})")
    wanted: dict[TileKey, str] = {}
    for matrix in program.weight_matrices():
        for tile in matrix.tiles:
            wanted.setdefault(tile_key(matrix, tile), tile.id)
    initial: dict[int, str] = {}
    placed: set[str] = set()
    for crossbar, key in sorted(contents.tiles.items()):
        tile_id = wanted.get(key)
        if tile_id is not None and tile_id not in placed and crossbar < target.chip.crossbars:
            initial[crossbar] = tile_id
            placed.add(tile_id)
    logger.info("online mapping: %d of %d tiles already in place", len(initial), len(wanted))
    return initial
