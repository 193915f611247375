"""Whether a weight matrix's tiles cover it exactly once, in O(n log n).

The usual tiling is a grid, recognised in O(n); any other is swept row by row with
the column spans of the tiles covering the current row kept sorted, so a tile is
compared with its neighbours only, never with every other tile.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterator

from enasa_compiler.ir import Tile, WeightMatrix

logger = logging.getLogger(__name__)

__all__ = ["is_exact_grid", "overlapping_pairs", "tile_in_weight"]


def tile_in_weight(tile: Tile, weight: WeightMatrix) -> bool:
    """Tell whether a tile is non-empty and inside its weight."""
    return (0 <= tile.row_start < tile.row_stop <= weight.rows
            and 0 <= tile.col_start < tile.col_stop <= weight.cols)


def overlapping_pairs(tiles: list[Tile]) -> Iterator[tuple[Tile, Tile]]:
    """Yield overlapping pairs of tiles by a sweep over rows, in O(n log n).

    Column spans of the tiles that cover the current row are kept sorted; a tile is
    compared with its neighbours there only. An overlapping tile is reported with one
    tile it overlaps and left out of the sweep, so the spans kept stay disjoint.
    """
    edges = sorted([(t.row_stop, 0, i) for i, t in enumerate(tiles)]
                   + [(t.row_start, 1, i) for i, t in enumerate(tiles)])
    active: list[tuple[int, int, int]] = []  # (col_start, col_stop, tile index)
    kept: set[int] = set()
    for _, opens, i in edges:  # at one row, tiles ending there leave before others open
        tile = tiles[i]
        span = (tile.col_start, tile.col_stop, i)
        if not opens:
            if i in kept:
                kept.discard(i)
                del active[bisect.bisect_left(active, span)]
            continue
        at = bisect.bisect_left(active, span)
        neighbours = [active[j] for j in (at - 1, at) if 0 <= j < len(active)]
        other = next((n for n in neighbours if n[0] < tile.col_stop
                      and tile.col_start < n[1]), None)
        if other is not None:
            yield tiles[other[2]], tile
            continue
        active.insert(at, span)
        kept.add(i)


def is_exact_grid(tiles: list[Tile], weight: WeightMatrix) -> bool:
    """Tell, in O(n), whether the tiles are a grid covering the weight exactly once.

    The row spans must partition ``[0, rows)``, the column spans ``[0, cols)``, and
    every (row span, column span) pair be one tile: then nothing overlaps or is left.
    """
    row_spans = sorted({(t.row_start, t.row_stop) for t in tiles})
    col_spans = sorted({(t.col_start, t.col_stop) for t in tiles})
    cells = {(t.row_start, t.row_stop, t.col_start, t.col_stop) for t in tiles}

    def partitions(spans: list[tuple[int, int]], size: int) -> bool:
        return bool(spans) and spans[0][0] == 0 and spans[-1][1] == size and all(
            a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))

    return (len(cells) == len(tiles) == len(row_spans) * len(col_spans)
            and partitions(row_spans, weight.rows) and partitions(col_spans, weight.cols))
