"""The validator on large plans: sweeps instead of pairs, capped reports, a fast schema gate.

``bench/validate_scaling.py`` times 100,000 tiles; these tests check the behaviours
that make that possible, on plans small enough for the test suite.
"""

from __future__ import annotations

import copy
import importlib
import json
from typing import Any

import pytest

from enasa_compiler.ir import Tile, WeightMatrix
from enasa_compiler.plan.schema import check_schema
from enasa_compiler.validation._checks import _coverage
from enasa_compiler.validation._fast_schema import conforms
from enasa_compiler.validation.validator import (
    DOUBLE_BOOKED,
    MAX_PER_KIND,
    NOT_PROGRAMMED,
    validate,
)


@pytest.fixture(scope="module")
def scaling(pytestconfig) -> Any:
    import sys

    bench = str(pytestconfig.rootpath / "bench")
    sys.path.insert(0, bench)
    try:
        return importlib.import_module("validate_scaling")
    finally:
        sys.path.remove(bench)


def test_a_synthetic_plan_is_valid(scaling):
    plan = scaling.synthetic_plan(400, 4)
    assert len(plan.tiles()) == 400
    assert validate(plan) == []


def test_overlapping_writes_are_swept_and_capped(scaling):
    plan = scaling.synthetic_plan(600, 4, overlapping=True)
    every = validate(plan, max_per_kind=None)
    booked = [v for v in every if v.kind == DOUBLE_BOOKED]
    # one per write that starts while another runs, not one per pair (599 * 600 / 2)
    assert len(booked) == 599
    capped = validate(plan)
    shown = [v for v in capped if v.kind == DOUBLE_BOOKED]
    assert len(shown) == MAX_PER_KIND + 1
    assert shown[-1].message == f"... and {599 - MAX_PER_KIND:,} more double-booked violations"
    assert shown[:-1] == booked[:MAX_PER_KIND]
    assert any(v.kind == NOT_PROGRAMMED and v.message.startswith("... and ") for v in capped)


def _weight(tiles: list[tuple[int, int, int, int]]) -> WeightMatrix:
    return WeightMatrix("w", "0" * 64, 8, 8, 1, tuple(
        Tile(f"t{i}", r0, r1, c0, c1, r1 - r0, c1 - c0)
        for i, (r0, r1, c0, c1) in enumerate(tiles)))


@pytest.mark.parametrize(("tiles", "expected"), [
    ([(0, 8, 0, 4), (0, 8, 4, 8)], []),  # a grid
    ([(0, 4, 0, 8), (4, 8, 0, 3), (4, 8, 3, 8)], []),  # not a grid, still exact
    ([(0, 4, 0, 8), (4, 8, 0, 5), (4, 8, 3, 8)], ["overlap"]),
    ([(0, 4, 0, 8), (3, 8, 0, 8)], ["overlap"]),
    ([(0, 4, 0, 8), (4, 8, 0, 5)], ["gap"]),
    ([(0, 8, 0, 8), (0, 8, 0, 8)], ["overlap"]),  # one tile twice
], ids=["grid", "not-a-grid", "overlap-in-a-row", "overlap-across-rows", "gap", "twice"])
def test_coverage_is_exact_without_pairwise_scans(tiles, expected):
    found = [v.message for v in _coverage(_weight(tiles))]
    assert len(found) == len(expected)
    for message, word in zip(found, expected, strict=True):
        assert word in message


def _mutations(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Documents around the schema's edges, valid and not."""
    edits = [
        lambda d: d.update(batch="one"),
        lambda d: d.update(batch=True),
        lambda d: d.update(batch=2.0),  # an integral float: jsonschema says integer
        lambda d: d.update(batch=0),
        lambda d: d.update(version=2),
        lambda d: d.update(pipeline=None),
        lambda d: d["pipeline"].update(segments=[]),
        lambda d: d["pipeline"].update(images=2_000_000_000),
        lambda d: d["pipeline"]["bounds"].update(gap=1.5),
        lambda d: d["pipeline"]["segments"][0]["slots"][0].update(units=[-1]),
        lambda d: d["pipeline"]["segments"][0].update(ii_ns=0),
        lambda d: d.update(mode="eager"),
        lambda d: d.update(extra=1),
        lambda d: d.pop("totals"),
        lambda d: d["operators"][0].update(kind="analog"),
        lambda d: d["operators"][0].update(latency_ns=-1),
        lambda d: d["operators"][0].pop("copies"),
        lambda d: d["weights"][0]["tiles"][0].update(phys_rows=1.5),
        lambda d: d["weights"][0]["tiles"][0].update(surprise="x"),
        lambda d: d["schedule"]["compute"][0].update(unit=None),
        lambda d: d["schedule"]["compute"][0].update(unit="0"),
        lambda d: d["subnets"][0].update(arch=None),
        lambda d: d["subnets"][0].update(arch=[1, "2"]),
        lambda d: d["schedule"]["program"][0].update(energy_pj=float("inf")),
    ]
    documents = []
    for edit in edits:
        changed = copy.deepcopy(data)
        edit(changed)
        documents.append(changed)
    return documents


def test_the_fast_schema_gate_agrees_with_jsonschema(compiled_plan_path):
    data = json.loads(compiled_plan_path.read_text())
    assert conforms(data) and check_schema(data) == []
    for document in _mutations(data):
        assert conforms(document) == (check_schema(document) == []), document
    assert not conforms([]) and not conforms(None)
