"""``enasa report``: the self-contained HTML page, the PNG charts and their refusals.

The page's numbers must be ``enasa simulate --json``'s (read back from the page and
compared), its Gantt chart must carry one titled bar per compute event, and, where
Chromium is installed, a real browser must render it with those bars in its DOM.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from enasa_compiler.cli import main
from enasa_compiler.cli import main as enasa_main
from enasa_compiler.cli.report import add_report_parser, run_report
from enasa_compiler.errors import InputError
from enasa_compiler.plan import Plan
from enasa_compiler.report._charts import _binned_mean
from enasa_compiler.report._gantt_rows import gantt_rows
from enasa_compiler.report._gantt_svg import _CHAR_PX, _fit_label, subnet_tag, to_ranges
from enasa_compiler.report.html import CHART_NAMES, format_makespan, render_report
from enasa_compiler.simulate.breakdown import COMPONENT_GROUPS
from enasa_compiler.simulate.cost import cost_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHROMIUM = Path("/usr/bin/chromium")
# A resource the browser would fetch: src/href/url() pointing at a URL or a
# protocol-relative one. xmlns="http://..." (SVG namespaces) is no fetch.
EXTERNAL = re.compile(r"""(?:\b(?:src|href)\s*=\s*["']?\s*|url\(\s*["']?)(?:https?:)?//""",
                      re.IGNORECASE)
COST_JSON = re.compile(r'<script type="application/json" id="cost-report">(.*?)</script>',
                       re.DOTALL)
OP_BAR = re.compile(r'<g class="op" data-op="([^"]*)" data-subnets="([^"]*)"[^>]*>'
                    r"<title>([^<]*)</title>")
CARD = re.compile(r'<div class="card" data-total="([a-z_]+)"><div class="k">[^<]*</div>'
                  r'<div class="v">([^<]*)</div>')
# Units the page shows totals in, and their factor to cost_report's units.
UNITS = {"\u00b5s": 1e3, "\u00b5J": 1e6, "%": 1e-2, "TOPS": 1.0, "": 1.0}


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


def _page(rendered) -> str:
    return rendered["page"].read_text(encoding="utf-8")


def test_page_is_one_self_contained_html_document(rendered):
    text = _page(rendered)
    assert text.startswith("<!DOCTYPE html>")
    assert text.count("<html") == 1 and text.rstrip().endswith("</html>")
    assert not EXTERNAL.search(text), EXTERNAL.search(text)
    assert "<link" not in text and "@import" not in text
    # Two inline scripts (the cost data, the subnet filter), neither loading anything.
    scripts = re.findall(r"<script\b([^>]*)>", text)
    assert len(scripts) == 2 and not any("src" in attrs for attrs in scripts)
    assert "fetch(" not in text and "XMLHttpRequest" not in text
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


def test_page_does_not_depend_on_the_png_option(rendered):
    plan = Plan.from_dict(json.loads(rendered["plan"].read_text()))
    assert render_report(plan) == _page(rendered)  # rendered with --png


def test_invalid_plan_exits_1_and_writes_nothing(rendered, tmp_path, capsys):
    data = json.loads(rendered["plan"].read_text())
    event = data["schedule"]["compute"][0]
    event["end_ns"] = event["start_ns"] - 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    page, charts = tmp_path / "report.html", tmp_path / "charts"
    assert main(["report", str(bad), "-o", str(page), "--png", str(charts)]) == 1
    assert not page.exists() and not charts.exists()
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "not a valid plan" in error
    assert main(["report", str(bad), "-o", str(page), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["kind"] == "check-failed"


def test_non_json_plan_is_input_error(tmp_path):
    bad = tmp_path / "plan.json"
    bad.write_text("this is not JSON {")
    with pytest.raises(InputError, match="not valid JSON"):
        _report(bad, "-o", tmp_path / "report.html")
    assert not (tmp_path / "report.html").exists()


def _simulate_json(plan_file: Path, capsys) -> dict:
    capsys.readouterr()
    assert enasa_main(["simulate", str(plan_file), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _embedded_report(text: str) -> dict:
    blocks = COST_JSON.findall(text)
    assert len(blocks) == 1
    return json.loads(blocks[0])


def test_page_totals_are_simulate_json_totals(rendered, capsys):
    text = _page(rendered)
    embedded = _embedded_report(text)
    simulated = _simulate_json(rendered["plan"], capsys)
    assert embedded == simulated  # every number, not only the totals
    plan = Plan.from_dict(json.loads(rendered["plan"].read_text()))
    assert embedded["totals"] == cost_report(plan)["totals"]
    for key in ("energy_pj", "leakage_energy_pj", "total_energy_pj", "write_energy_pj",
                "write_time_ns", "makespan_ns", "utilization", "effective_tops_per_w"):
        assert key in embedded["totals"], key


def test_headline_cards_show_simulate_totals(rendered, capsys):
    text = _page(rendered)
    totals = _simulate_json(rendered["plan"], capsys)["totals"]
    cards = dict(CARD.findall(text))
    assert {"makespan_ns", "energy_pj", "leakage_energy_pj", "total_energy_pj",
            "write_energy_pj", "write_time_ns", "utilization"} <= set(cards)
    for key, shown in cards.items():
        number, unit = re.fullmatch(r"([\d,.]+)\s*(\S*)", shown.strip()).groups()
        value = float(number.replace(",", "")) * UNITS[unit]
        # Cards keep three or four significant digits (makespans: 10 ns).
        assert value == pytest.approx(totals[key], rel=5e-3, abs=10), (key, shown)
    # The leakage the issue found missing: total = dynamic + leakage, all on the page.
    assert totals["total_energy_pj"] == pytest.approx(
        totals["energy_pj"] + totals["leakage_energy_pj"])


def test_component_area_and_per_operator_tables(rendered, plan):
    text = _page(rendered)
    report = _embedded_report(text)
    for name, pj in report["components_pj"].items():
        if pj > 0:
            assert f">{name}<" in text, name
    for name, mm2 in report["chip"]["area_breakdown_mm2"].items():
        if mm2 > 0:
            assert f"<td class=l>{name}</td><td>{mm2:,.4f}</td>" in text, name
    assert f"{report['chip']['peak_tops']:.4g} TOPS" in text
    section = text[text.index("<h2>Per operator (per layer)</h2>"):]
    section = section[:section.index("</section>")]
    assert section.count("<tr data-subnets=") == len(plan.operators)
    for group in ("array", "ADC+DAC+S&amp;H", "leakage"):
        assert group in section
    assert set(COMPONENT_GROUPS) >= {"array", "leakage", "write"}


def test_gantt_has_one_titled_bar_per_compute_event(rendered, plan):
    text = _page(rendered)
    bars = OP_BAR.findall(text)
    assert len(bars) == len(plan.compute)
    ops = {op.id: op for op in plan.operators}
    for op_id, subnets, title in bars:
        op = ops[html.unescape(op_id)]
        assert subnets == " ".join(map(str, op.subnets))
        lines = html.unescape(title).split("\n")
        assert lines[0] == op.id and "subnet" in lines[1] and "\u00b5s" in lines[2]
        assert lines[3].startswith(("crossbar", "digital unit"))
    assert text.count('<rect class="wr"') == len(plan.program)
    assert "first_conv.0/Conv" in text  # a label that fits its (long) bar


def test_gantt_labels_never_overlap_in_a_row(rendered):
    labels = re.findall(r'<text x="([\d.]+)" y="([\d.]+)" fill="#[0-9a-f]{6}" '
                        r'data-subnets="[^"]*">([^<]*)</text>', _page(rendered))
    assert labels
    by_row: dict[str, list[tuple[float, str]]] = {}
    for x, y, label in labels:
        by_row.setdefault(y, []).append((float(x), html.unescape(label)))
    for row in by_row.values():
        row.sort()
        for (x, label), (next_x, _) in zip(row, row[1:], strict=False):
            assert next_x >= x + len(label) * _CHAR_PX


def test_subnet_filter_has_one_checkbox_per_subnet(rendered, plan):
    text = _page(rendered)
    boxes = re.findall(r'<input type="checkbox" data-subnet="(\d+)" checked>', text)
    assert sorted(map(int, boxes)) == sorted(s.index for s in plan.subnets)


def test_labels_fit_their_bars():
    op_id = "s0//features.0.3/branch_main/branch_main.12/Conv"
    assert _fit_label(op_id, "all", 500) == "branch_main.12/Conv all"
    assert _fit_label(op_id, "all", 90) == "branch_main.12 all"
    trimmed = _fit_label(op_id, "s0\u20133", 50)
    assert trimmed is not None and trimmed.startswith("\u2026")
    assert trimmed.endswith(" s0\u20133")
    assert _fit_label(op_id, "all", 12) is None
    for width in range(1, 300, 7):
        label = _fit_label(op_id, "s1,4", width)
        assert label is None or len(label) * _CHAR_PX <= width


def test_ranges_and_subnet_tags():
    assert to_ranges([7, 1, 2, 3, 3]) == "1\u20133, 7"
    assert to_ranges([]) == ""
    assert subnet_tag([2], 4) == "s2"
    assert subnet_tag([0, 1, 2, 3], 4) == "all"
    assert subnet_tag([1, 4], 4) == "s1,4"


def test_gantt_rows_follow_the_chip_hierarchy(plan):
    rows = gantt_rows(plan)
    used = len(rows.crossbar_row)
    assert used == plan.totals.crossbars_used
    assert rows.level == "crossbar" and rows.crossbar_rows == used  # one row each
    per_pe = plan.target["pe"]["crossbars_per_pe"]
    per_tile = per_pe * plan.target["tile"]["pes_per_tile"]
    assert (rows.crossbars_per_pe, rows.crossbars_per_tile) == (per_pe, per_tile)
    for max_rows, level in ((used // per_pe + 1, "PE"), (used // per_tile + 1, "tile")):
        grouped = gantt_rows(plan, max_rows=max_rows)
        assert grouped.level == level and grouped.crossbar_rows <= max_rows
        size = per_pe if level == "PE" else per_tile
        for xb, row in grouped.crossbar_row.items():  # a row is one PE (tile), whole
            first, last = grouped.row_first[row], grouped.row_last[row]
            assert xb // size == first // size == last // size
    banded = gantt_rows(plan, max_rows=3)
    assert banded.level == "tile" and banded.per_row > 1 and banded.crossbar_rows <= 3
    assert sorted(set(banded.crossbar_row.values())) == list(range(banded.crossbar_rows))


def test_binned_utilization_keeps_busy_crossbar_time(plan):
    edges = np.linspace(0, plan.totals.makespan_ns, 97)
    busy = _binned_mean(((e.start_ns, e.end_ns, len({p.crossbar for p in e.placements}))
                         for e in plan.compute if e.placements), edges)
    assert float(np.sum(busy * np.diff(edges))) == pytest.approx(plan.totals.busy_crossbar_ns)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install "
                    "chromium) to render the page headless")
@pytest.mark.slow
def test_page_renders_in_headless_chromium(rendered, plan, tmp_path):
    from PIL import Image

    flags = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    url = rendered["page"].resolve().as_uri()
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1400,3000", url],
                   check=True, capture_output=True, timeout=120)
    assert shot.read_bytes().startswith(PNG_SIGNATURE)
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (3000, 1400)
    # A blank or error page has a handful of colours; the charts have hundreds.
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200

    def dom(address: str) -> str:
        return subprocess.run([*flags, "--dump-dom", address], check=True,
                              capture_output=True, text=True, timeout=120).stdout

    page = dom(url)
    assert "<svg" in page and "Crossbar schedule" in page
    # The browser parsed one titled bar per compute event, labels included.
    bars = OP_BAR.findall(page)
    assert len(bars) == len(plan.compute)
    assert any(html.unescape(title).startswith(plan.compute[0].op) for _, _, title in bars)
    assert "first_conv.0/Conv" in page and 'class="op dim"' not in page
    # The filter script runs: a link to one subnet dims the operators not serving it.
    only = dom(f"{url}#subnets=1")
    dimmed = re.findall(r'<g class="op dim" data-op="[^"]*" data-subnets="([^"]*)"', only)
    assert dimmed and all("1" not in subnets.split() for subnets in dimmed)
    serves = {op.id: op.subnets for op in plan.operators}
    assert len(dimmed) == sum(1 for e in plan.compute if 1 not in serves[e.op])
