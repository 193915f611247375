"""Text output: names are never cut, and counts take the right singular or plural."""

from __future__ import annotations

import json

import pytest

from enasa_compiler._text import column_width, plural
from enasa_compiler.cli import main
from enasa_compiler.plan import Plan
from enasa_compiler.simulate.cost import cost_report, format_cost_report
from enasa_compiler.simulate.execute import format_execution

# Longer than the 13 characters the subnet column used to keep, and equal up to there,
# as the four g1_resnetlike subnets were.
LONG_NAMES = ["g1_resnetlike_alpha", "g1_resnetlike_beta", "g1_resnetlike_gamma_wide",
              "g1_resnetlike_delta"]


@pytest.fixture(scope="module")
def long_named_plan(group4_result, tmp_path_factory):
    """The four-subnet group's plan with subnet names sharing a 13-character prefix."""
    data = group4_result.plan.to_dict()
    for subnet, name in zip(data["subnets"], LONG_NAMES, strict=True):
        subnet["name"] = name
    path = tmp_path_factory.mktemp("long_names") / "plan.json"
    path.write_text(json.dumps(data))
    return path


def _rows_starting_with_a_name(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("g1_resnetlike")]


def test_plural_takes_the_singular_for_exactly_one():
    assert plural(1, "subnet") == "1 subnet"
    assert plural(0, "subnet") == "0 subnets"
    assert plural(2, "violation") == "2 violations"
    assert plural(1, "weight matrix", "weight matrices") == "1 weight matrix"
    assert plural(3, "weight matrix", "weight matrices") == "3 weight matrices"


def test_column_width_fits_the_longest_entry_and_keeps_the_minimum():
    assert column_width(["subnet", "a"], 14) == 14
    assert column_width(["subnet", "x" * 20], 14) == 21


def test_cost_report_shows_every_long_subnet_name_whole(long_named_plan):
    text = format_cost_report(cost_report(Plan.load(long_named_plan)))
    rows = _rows_starting_with_a_name(text)
    assert len(rows) == len(LONG_NAMES)
    for row, name in zip(rows, LONG_NAMES, strict=True):
        assert row.split()[0] == name
    # The numbers still line up: every row is as long as the header.
    header = next(line for line in text.splitlines() if line.startswith("subnet"))
    assert {len(row) for row in rows} == {len(header)}


def test_simulate_breakdown_shows_every_subnet_name_and_operator_id_whole(
        long_named_plan, capsys):
    assert main(["simulate", str(long_named_plan), "--breakdown"]) == 0
    text = capsys.readouterr().out
    assert [row.split()[0] for row in _rows_starting_with_a_name(text)] == LONG_NAMES
    ids = [op.id for op in Plan.load(long_named_plan).operators]
    assert max(map(len, ids)) > 27  # longer than the operator column used to keep
    firsts = {line.split()[0] for line in text.splitlines() if line.strip()}
    assert set(ids) <= firsts


def test_execution_table_shows_long_subnet_names_whole():
    report = {"images": 1, "mode": "ideal", "max_abs_error": 0.0,
              "subnets": [{"name": name, "ideal_max_abs_error": 1e-6} for name in LONG_NAMES]}
    text = format_execution(report)
    assert "executed 1 image through" in text
    assert [row.split()[0] for row in _rows_starting_with_a_name(text)] == LONG_NAMES


def _tampered(plan_path, tmp_path, fields):
    data = json.loads(plan_path.read_text())
    for field in fields:
        data["totals"][field] += 1  # each wrong total is one violation
    out = tmp_path / "tampered.json"
    out.write_text(json.dumps(data))
    return out


def test_simulate_of_a_plan_with_one_violation_says_1_violation(long_named_plan, tmp_path,
                                                                capsys):
    assert main(["simulate", str(_tampered(long_named_plan, tmp_path, ["macs"]))]) == 1
    err = capsys.readouterr().err
    assert "(1 violation; first:" in err and "1 violations" not in err


def test_simulate_of_a_plan_with_two_violations_says_2_violations(long_named_plan, tmp_path,
                                                                  capsys):
    bad = _tampered(long_named_plan, tmp_path, ["macs", "cell_writes"])
    assert main(["simulate", str(bad)]) == 1
    assert "(2 violations; first:" in capsys.readouterr().err
