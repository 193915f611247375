"""``enasa report``: the self-contained HTML page, the PNG charts and their refusals.

The page's numbers must be ``enasa simulate --json``'s (read back from the page and
compared), its Gantt chart must carry one titled bar per compute event, and, where
Chromium is installed, a real browser must render it with those bars in its DOM.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from enasa_compiler.report._gantt_rows import MAX_GANTT_ROWS, gantt_rows
from enasa_compiler.report._gantt_svg import _CHAR_PX, _fit_label, subnet_tag, to_ranges
from enasa_compiler.report._pipeline_rows import pipeline_rows
from enasa_compiler.report._pipeline_svg import MAX_IMAGES_DRAWN, images_to_draw, period_svg
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
PIPELINE_ROW = re.compile(r'<tr data-pipeline="([a-z_]+)"><td class=l>[^<]*</td>'
                          r"<td class=v>([^<]*)</td><td class=b>([^<]*)</td>")
SLOT_BAR = re.compile(r'<g class="slot" data-op="([^"]*)" data-subnets="[^"]*"[^>]*>'
                      r"<title>([^<]*)</title>")
# The pipeline table's units, and their factor to the plan's (ns, pJ, fractions).
PIPELINE_UNITS = {"\u00b5s": 1e3, "ms": 1e6, "\u00b5J": 1e6, "%": 1e-2, "": 1.0}


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
    # The charts, plus the pipelined schedule's period and fill-and-drain charts.
    assert text.count("<svg") == len(CHART_NAMES) + 2


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
    used = plan.totals.crossbars_used
    default = gantt_rows(plan)
    assert len(default.crossbar_row) == used
    assert (default.level == "crossbar") == (used <= MAX_GANTT_ROWS)
    rows = gantt_rows(plan, max_rows=used)
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


def _pipeline_section(text: str) -> str:
    start = text.index('<section id="pipeline">')
    return text[start:text.index("</section>", start)]


def _shown(value: str) -> float:
    """A figure as the pipeline table shows it, in the plan's units."""
    match = re.fullmatch(r"([\d,.]+)\s*(\S*)", value.strip())
    assert match is not None, value
    number, unit = match.groups()
    return float(number.replace(",", "")) * PIPELINE_UNITS[unit]


def test_pipeline_section_shows_simulate_pipeline_figures(rendered, plan, capsys):
    pipeline = _simulate_json(rendered["plan"], capsys)["pipeline"]
    t, b = pipeline["totals"], pipeline["bounds"]
    section = _pipeline_section(_page(rendered))
    rows = {key: (value, best) for key, value, best in PIPELINE_ROW.findall(section)}
    assert set(rows) >= {"images", "ii_ns", "ii_lower_bound_ns", "ii_binding", "latency_ns",
                         "makespan_ns", "energy_pj", "allocated_utilization",
                         "utilization"}
    assert rows["images"][0] == f"{plan.pipeline.images:,}" == f"{t['images']:,}"
    # Times in µs with three decimals are exact to the nanosecond.
    for key in ("ii_ns", "latency_ns"):
        assert _shown(rows[key][0]) == pytest.approx(t[key], abs=0.5), key
    assert _shown(rows["ii_lower_bound_ns"][0]) == pytest.approx(b["ii_lower_bound_ns"],
                                                                 abs=0.5)
    assert _shown(rows["ii_ns"][1]) == pytest.approx(b["best_ii_ns"], abs=0.5)
    assert html.unescape(rows["ii_binding"][0]) == b["ii_binding"]
    assert _shown(rows["makespan_ns"][0]) == pytest.approx(t["makespan_ns"], abs=500)
    assert _shown(rows["energy_pj"][0]) == pytest.approx(t["energy_pj"], abs=500)
    assert _shown(rows["total_energy_pj"][0]) == pytest.approx(t["total_energy_pj"], abs=500)
    # Percentages are shown with one decimal: half a unit of it is 5e-4.
    for key in ("allocated_utilization", "utilization"):
        assert _shown(rows[key][0]) == pytest.approx(t[key], abs=5.01e-4), key
    assert _shown(rows["allocated_utilization"][1]) == pytest.approx(
        b["best_allocated_utilization"], abs=5.01e-4)
    assert pipeline["totals"]["ii_ns"] == plan.pipeline.totals.ii_ns
    assert f"gap {b['gap']:.1%}" in section or f"gap {b['gap'] * 100:.3g}%" in section


def test_pipeline_period_chart_draws_every_slot_once(rendered, plan):
    section = _pipeline_section(_page(rendered))
    assert section.count('<svg class="gantt pipeline-period"') == 1
    schedule = plan.pipeline.schedule
    bars = SLOT_BAR.findall(section)
    assert sorted(html.unescape(op) for op, _ in bars) == sorted(s.op for s in schedule.slots)
    for _, title in bars:
        assert "stage " in title and "phase " in title
    # Each row's busy share of the period; the binding crossbar's row is the busiest.
    rows = pipeline_rows(schedule.slots)
    shares = [int(x) for x in
              re.findall(r'<text x="[\d.]+" y="[\d.]+">(\d+)%</text>', section)]
    assert len(shares) == rows.count
    bound, ii = plan.pipeline.bounds["ii_lower_bound_ns"], schedule.ii_ns
    binding = plan.pipeline.bounds["ii_binding"]
    if binding.startswith("crossbar "):
        crossbar = int(binding.split()[1])
        row = next(r for r, slot in ((rows.slot_rows[s.op][0], s) for s in schedule.slots)
                   if any(p.crossbar == crossbar for p in slot.placements))
        assert shares[row] >= round(100 * bound / ii) - 1
    assert max(shares) <= 100


def test_pipeline_fill_and_drain_shows_a_steady_period(rendered, plan):
    section = _pipeline_section(_page(rendered))
    schedule = plan.pipeline.schedule
    drawn, depth = images_to_draw(schedule, plan.pipeline.images)
    assert depth == -(-schedule.latency_ns() // schedule.ii_ns)
    assert drawn == min(plan.pipeline.images, max(depth, 4), MAX_IMAGES_DRAWN)
    uses = re.findall(r'<use href="#pipe0-image0" x="([\d.]+)"', section)
    assert len(uses) == drawn
    steps = np.diff([float(x) for x in uses])
    assert np.allclose(steps, steps[0], atol=0.02)  # one II apart
    assert section.count('id="pipe0-image0"') == 1  # image 0 drawn once
    assert ("first in steady state" in section) == (drawn >= depth)
    assert f"Images 0\u2013{drawn - 1} of {plan.pipeline.images:,}" in section


def test_pipeline_charts_stay_bounded(plan):
    from enasa_compiler.report._charts import build_styles

    schedule = plan.pipeline.schedule
    banded = pipeline_rows(schedule.slots, max_rows=7)
    assert banded.crossbar_rows <= 7 and banded.per_row > 1
    assert set(banded.slot_rows) == {s.op for s in schedule.slots}
    assert all(0 <= r < banded.count for rows in banded.slot_rows.values() for r in rows)
    chart = period_svg(plan, schedule, banded, build_styles(plan), max_bars=40)
    assert chart.slots_drawn == 40 < chart.slots_total == len(schedule.slots)
    assert len(SLOT_BAR.findall(chart.svg)) == 40
    longest = sorted((s.duration_ns for s in schedule.slots), reverse=True)
    assert chart.shortest_drawn_ns == longest[39]


def test_pipeline_section_size_is_bounded(rendered, plan):
    section = _pipeline_section(_page(rendered))
    # ~480 operators: one titled bar each, image 0 once and one <use> per image.
    assert len(section.encode()) < 600 * len(plan.operators) + 50_000


def test_segmented_run_of_a_dynamic_plan_is_shown(group4_files):
    from enasa_compiler.pipeline import compile_detailed

    plan = compile_detailed(group4_files, "neurosim-22nm", mode="dynamic").plan
    assert plan.mode == "dynamic" and plan.pipeline is not None
    text = render_report(plan)
    section = _pipeline_section(text)
    assert f"micro-batches of {plan.pipeline.micro_batch:,}" in section
    rows = dict((key, value) for key, value, _ in PIPELINE_ROW.findall(section))
    report = cost_report(plan)["pipeline"]
    assert _shown(rows["ii_ns"]) == pytest.approx(report["totals"]["ii_ns"], abs=0.5)
    shown_segments = min(len(plan.pipeline.segments), 3)
    assert section.count('<svg class="gantt pipeline-period"') == shown_segments
    assert text.count("<svg") == len(CHART_NAMES) + 2 * shown_segments


def test_plan_without_pipeline_says_why(plan):
    text = render_report(dataclasses.replace(plan, pipeline=None))
    section = _pipeline_section(text)
    assert "has no pipelined schedule" in section and "null" in section
    assert "<svg" not in section and "data-pipeline" not in section
    assert text.count("<svg") == len(CHART_NAMES)
    assert _embedded_report(text)["pipeline"] is None


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
