"""``enasa report``: the self-contained HTML page, the PNG charts and their refusals."""

from __future__ import annotations

import argparse
import html
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from enasa_compiler._charts import _binned_mean, gantt_rows
from enasa_compiler.cli_report import add_report_parser, run_report
from enasa_compiler.errors import InputError
from enasa_compiler.plan import Plan
from enasa_compiler.report_html import CHART_NAMES, format_makespan, render_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHROMIUM = Path("/usr/bin/chromium")
# A resource the browser would fetch: src/href/url() pointing at a URL or a
# protocol-relative one. xmlns="http://..." (SVG namespaces) is no fetch.
EXTERNAL = re.compile(r"""(?:\b(?:src|href)\s*=\s*["']?\s*|url\(\s*["']?)(?:https?:)?//""",
                      re.IGNORECASE)


def _parser() -> argparse.ArgumentParser:
    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true")
        parser.add_argument("-q", "--quiet", action="store_true")

    parser = argparse.ArgumentParser(prog="enasa")
    add_report_parser(parser.add_subparsers(dest="command", required=True), common)
    return parser


def _report(*argv: str | Path) -> int:
    return run_report(_parser().parse_args(["report", *map(str, argv)]))


@pytest.fixture(scope="module")
def plan(group4_result) -> Plan:
    return group4_result.plan


@pytest.fixture(scope="module")
def rendered(plan, tmp_path_factory) -> dict[str, Path]:
    """The group's plan saved, then reported with --png through the command."""
    folder = tmp_path_factory.mktemp("report")
    plan_file = plan.save(folder / "plan.json")
    page, charts = folder / "report.html", folder / "charts"
    assert _report(plan_file, "-o", page, "--png", charts, "-q") == 0
    return {"plan": plan_file, "page": page, "charts": charts}


def test_page_is_one_self_contained_html_document(rendered):
    text = rendered["page"].read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert text.count("<html") == 1 and text.rstrip().endswith("</html>")
    assert not EXTERNAL.search(text), EXTERNAL.search(text)
    assert "<script" not in text and "<link" not in text and "@import" not in text
    assert text.count("<svg") == len(CHART_NAMES)


def test_page_shows_subnets_makespan_and_dedup(rendered, plan):
    text = rendered["page"].read_text(encoding="utf-8")
    for info in plan.subnets:
        assert html.escape(info.name) in text
    assert format_makespan(plan.totals.makespan_ns) in text
    for key in ("nodes_before", "nodes_after", "macs_before", "macs_after"):
        assert f"{plan.dedup[key]:,}" in text, key
    assert f"{plan.totals.crossbars_used:,}" in text
    assert f"{plan.totals.cell_writes:,}" in text


def test_svg_ids_are_unique_across_charts(rendered):
    text = rendered["page"].read_text(encoding="utf-8")
    ids = re.findall(r'\bid="([^"]+)"', text)
    assert ids and len(ids) == len(set(ids))
    for ref in re.findall(r'(?:href="#|url\(#)([^")]+)', text):
        assert ref in ids, ref


def test_png_charts_are_written(rendered):
    files = sorted(rendered["charts"].iterdir())
    assert [f.name for f in files] == sorted(f"{name}.png" for name in CHART_NAMES)
    for file in files:
        assert file.read_bytes().startswith(PNG_SIGNATURE)
        assert file.stat().st_size > 10_000


def test_render_is_deterministic(plan):
    assert render_report(plan) == render_report(plan)


def test_invalid_plan_exits_1_and_writes_nothing(rendered, tmp_path, capsys):
    data = json.loads(rendered["plan"].read_text())
    event = data["schedule"]["compute"][0]
    event["end_ns"] = event["start_ns"] - 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    page, charts = tmp_path / "report.html", tmp_path / "charts"
    assert _report(bad, "-o", page, "--png", charts) == 1
    assert not page.exists() and not charts.exists()
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "not a valid plan" in error


def test_non_json_plan_is_input_error(tmp_path):
    bad = tmp_path / "plan.json"
    bad.write_text("this is not JSON {")
    with pytest.raises(InputError, match="not valid JSON"):
        _report(bad, "-o", tmp_path / "report.html")
    assert not (tmp_path / "report.html").exists()


def test_many_crossbars_are_drawn_in_bands(plan):
    rows = gantt_rows(plan, max_rows=50)
    used = len(rows.crossbar_row)
    assert used == plan.totals.crossbars_used
    assert rows.band_size == -(-used // 50) and rows.crossbar_rows <= 50
    assert sorted(set(rows.crossbar_row.values())) == list(range(rows.crossbar_rows))
    assert gantt_rows(plan).band_size == 1  # 214 crossbars fit one row each


def test_binned_utilization_keeps_busy_crossbar_time(plan):
    edges = np.linspace(0, plan.totals.makespan_ns, 97)
    busy = _binned_mean(((e.start_ns, e.end_ns, len({p.crossbar for p in e.placements}))
                         for e in plan.compute if e.placements), edges)
    assert float(np.sum(busy * np.diff(edges))) == pytest.approx(plan.totals.busy_crossbar_ns)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install "
                    "chromium) to render the page headless")
def test_page_renders_in_headless_chromium(rendered, tmp_path):
    from PIL import Image

    flags = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    url = rendered["page"].resolve().as_uri()
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1400,2000", url],
                   check=True, capture_output=True, timeout=120)
    assert shot.read_bytes().startswith(PNG_SIGNATURE)
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (2000, 1400)
    # A blank or error page has a handful of colours; the charts have hundreds.
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200
    dom = subprocess.run([*flags, "--dump-dom", url], check=True, capture_output=True,
                         text=True, timeout=120).stdout
    assert "<svg" in dom and "Crossbar schedule" in dom
