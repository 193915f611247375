"""Tiling: every weight element lands in exactly one crossbar cell group."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enasa_compiler.errors import InputError
from enasa_compiler.passes.lower import tile_matrix


def _coverage(tiles, rows, cols):
    hits = np.zeros((rows, cols), dtype=np.int64)
    for t in tiles:
        hits[t.row_start:t.row_stop, t.col_start:t.col_stop] += 1
    return hits


@pytest.mark.parametrize(
    ("rows", "cols", "columns_per_weight", "expected_crossbars"),
    [
        # conv3x3 16->64 (SPOS layer 0 pw excluded): rows 16*3*3=144, 64 cols x 4 slices
        # = 256 physical cols: ceil(144/128) * ceil(256/128) = 2 * 2
        (144, 64, 4, 4),
        # 1x1 conv 640->1024, 8-bit weights on 2-bit cells (4 slices) x differential 2:
        # ceil(640/128) * ceil(1024*8/128) = 5 * 64
        (640, 1024, 8, 320),
        # Linear 1024->1000, offset scheme: ceil(1024/128) * ceil(4000/128) = 8 * 32
        (1024, 1000, 4, 256),
        # a matrix smaller than one crossbar
        (27, 16, 4, 1),
    ],
)
def test_crossbar_count_matches_neurosim_formula(rows, cols, columns_per_weight,
                                                 expected_crossbars):
    tiles = tile_matrix("w", rows, cols, 128, 128, columns_per_weight)
    assert len(tiles) == expected_crossbars
    assert len(tiles) == math.ceil(rows / 128) * math.ceil(cols * columns_per_weight / 128)


def test_slices_of_a_column_never_split_across_crossbars():
    # 5 columns per weight: 128 // 5 = 25 logical columns per crossbar, 3 cells unused
    tiles = tile_matrix("w", 100, 60, 128, 128, 5)
    assert [t.col_stop - t.col_start for t in tiles] == [25, 25, 10]
    assert all(t.phys_cols == (t.col_stop - t.col_start) * 5 for t in tiles)


def test_weight_wider_than_a_crossbar_is_refused():
    with pytest.raises(InputError, match="columns"):
        tile_matrix("w", 8, 8, 16, 4, 8)


@settings(max_examples=200, deadline=None)
@given(rows=st.integers(1, 700), cols=st.integers(1, 300),
       crossbar_rows=st.sampled_from([16, 64, 128, 256]),
       crossbar_cols=st.sampled_from([32, 128, 256]),
       columns_per_weight=st.integers(1, 16))
def test_tiles_cover_every_weight_exactly_once(rows, cols, crossbar_rows, crossbar_cols,
                                               columns_per_weight):
    if columns_per_weight > crossbar_cols:
        return
    tiles = tile_matrix("w", rows, cols, crossbar_rows, crossbar_cols, columns_per_weight)
    assert (_coverage(tiles, rows, cols) == 1).all()
    for t in tiles:
        assert 0 < t.phys_rows <= crossbar_rows
        assert 0 < t.phys_cols <= crossbar_cols
    assert len({t.id for t in tiles}) == len(tiles)
