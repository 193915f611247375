"""A self-contained HTML report of a plan, for people to read before trusting it.

``enasa simulate`` prints the numbers; this page shows the same numbers (read from
the same :func:`~enasa_compiler.simulate.cost.cost_report` dict, which the page also embeds
as JSON, so the two cannot disagree) and what a table cannot show at a glance:
energy and latency by component, the chip's area and power, a Gantt chart of every
used crossbar (grouped by tile and PE) and digital unit over time with hover text on
every bar and a per-subnet filter, the crossbars' utilization over time, per-subnet
costs, a per-operator (per-layer) table and the deduplication summary. A plan with a
pipelined schedule of many images (plan format 3) also gets one steady-state period
and the pipeline's fill and drain drawn, with its II, bound and utilisation
(:mod:`enasa_compiler.report._pipeline_section`).

The page has no external resource (no CSS, script, font or image fetched from
anywhere): the Gantt chart is hand-written SVG (:mod:`enasa_compiler.report._gantt_svg`),
the other charts inline SVG made by matplotlib, styles and the filter script are
inline, so the file can be mailed, archived with the plan or opened offline. Equal
plans give byte-identical pages (fixed SVG id salt, no dates), so reports can be
diffed.
"""

from __future__ import annotations

import contextlib
import html
import io
import logging
import re
from pathlib import Path
from typing import Any

import matplotlib as mpl
from matplotlib.figure import Figure

from enasa_compiler import __version__
from enasa_compiler.atomic import json_text, write_atomic
from enasa_compiler.plan import Plan
from enasa_compiler.report._charts import (
    Style,
    build_styles,
    gantt_figure,
    subnets_figure,
    utilization_figure,
)
from enasa_compiler.report._gantt_rows import GanttRows, gantt_note, gantt_rows
from enasa_compiler.report._gantt_svg import GANTT_TITLE, gantt_legend_html, gantt_svg
from enasa_compiler.report._pipeline_section import pipeline_section
from enasa_compiler.report._sections import (
    card,
    costs_section,
    operators_section,
    percent,
    ratio,
    short,
    si,
    table,
    uj,
)
from enasa_compiler.simulate.cost import cost_report

logger = logging.getLogger(__name__)

__all__ = [
    "CHART_NAMES",
    "format_makespan",
    "render_charts_png",
    "render_report",
    "render_report_and_charts",
    "write_charts_png",
]

CHART_NAMES = ("gantt", "utilization", "subnets")
"""The charts, in page order; ``--png`` writes ``<name>.png`` for each."""
_CHART_TITLES = (GANTT_TITLE, "Utilization over time", "Per-subnet costs")
_PNG_DPI = 110
_SVG_ID = re.compile(r'\bid="([^"]+)"')
_SVG_REF = re.compile(r'(href="#|url\(#)([^")]+)')

_CSS = """
body{margin:0;background:#f6f7f9;color:#1d232b;
 font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif}
main{max-width:1280px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px}
h3{font-size:15px;margin:18px 0 6px}
.facts{color:#4b5563;margin:0 0 16px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:10px}
.card{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:10px 12px}
.card .k{font-size:12px;color:#5b6573;text-transform:uppercase;letter-spacing:.03em}
.card .v{font-size:20px;font-weight:600;font-variant-numeric:tabular-nums;
 white-space:nowrap}
.card .s{font-size:12px;color:#5b6573}
figure{margin:0;background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:8px}
figure svg{display:block;width:100%;height:auto}
figure.gantt-box{max-height:85vh;overflow:auto}
figcaption,.note{color:#4b5563;font-size:13px;margin:6px 4px 0}
table{border-collapse:collapse;background:#fff;margin-top:10px;font-size:13px}
th,td{padding:4px 10px;border-bottom:1px solid #e5e7eb;text-align:right;
 font-variant-numeric:tabular-nums;white-space:nowrap}
th{background:#eef1f4;font-weight:600}
td.l,th.l{text-align:left}tr:nth-child(even) td{background:#fafbfc}
td.wrap{white-space:normal;color:#4b5563}
tr.group td{background:#f3f5f8;border-top:1px solid #d5dae0}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px;
 vertical-align:-1px}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:0 32px;
 align-items:start}
.grid2 table{width:100%}.grid2 .cards{grid-template-columns:repeat(auto-fill,
 minmax(170px,1fr))}
.stack{display:flex;height:18px;border-radius:4px;overflow:hidden;background:#e5e7eb;
 margin:6px 0}
.stack span{display:block;height:100%}
.keys{font-size:12px;color:#4b5563}.keys .key,.legend .key{margin-right:12px;
 white-space:nowrap;display:inline-block}
.legend{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:6px 10px;
 margin-bottom:8px;font-size:13px;line-height:1.9}
.legend label{margin-right:12px;white-space:nowrap;display:inline-block;cursor:pointer}
.legend input{vertical-align:-2px;margin:0 4px 0 0}
.legend .lt{color:#5b6573;margin-right:8px}
.legend button{font:inherit;font-size:12px;margin-right:6px;padding:0 8px}
.scroll{max-height:640px;overflow:auto;border:1px solid #dde1e6;margin-top:10px}
.scroll table{margin-top:0;font-size:12px}.scroll th{position:sticky;top:0;z-index:2}
.scroll td,.scroll th{padding:3px 7px}
.scroll td:first-child,.scroll th:first-child{position:sticky;left:0;z-index:1;
 background:#fff;box-shadow:inset -1px 0 #dde1e6}.scroll th:first-child{z-index:3;
 background:#eef1f4}
.sub{padding-left:20px}
svg.gantt text{pointer-events:none}svg.gantt .dim{opacity:.1}tr.dim{display:none}
code{font-size:12px}
footer{margin-top:36px;color:#6b7280;font-size:12px}
"""
# The subnet filter: a checked subnet's operators stay bright; an operator (bar,
# label, table row) that serves no checked subnet is dimmed or hidden. Programming
# bars carry the subnets of the operators that read the tile. A link ending
# ``#subnets=0,3`` opens the page with only those subnets checked.
_FILTER_JS = """
(function(){
var boxes=[].slice.call(document.querySelectorAll('#subnet-filter input[data-subnet]'));
var marked=[].slice.call(document.querySelectorAll('[data-subnets]'));
function apply(){
 var on={};boxes.forEach(function(b){if(b.checked){on[b.dataset.subnet]=1;}});
 marked.forEach(function(el){
  var hit=el.dataset.subnets.split(' ').some(function(s){return on[s]===1;});
  el.classList.toggle('dim',!hit);
 });
}
boxes.forEach(function(b){b.addEventListener('change',apply);});
[].forEach.call(document.querySelectorAll('#subnet-filter button[data-all]'),function(b){
 b.addEventListener('click',function(){
  boxes.forEach(function(x){x.checked=b.dataset.all==='1';});apply();});
});
var wanted=/subnets=([0-9,]+)/.exec(location.hash);
if(wanted){
 var keep=wanted[1].split(',');
 boxes.forEach(function(b){b.checked=keep.indexOf(b.dataset.subnet)>=0;});apply();
}
})();
"""


# ---- numbers ------------------------------------------------------------------------
def format_makespan(makespan_ns: int) -> str:
    """Format a makespan as the page shows it, e.g. ``136.60 µs``."""
    return f"{makespan_ns / 1e3:,.2f} \u00b5s"


# ---- charts -------------------------------------------------------------------------
def _style() -> contextlib.AbstractContextManager[None]:
    # Fixed SVG id salt and glyphs drawn as paths: deterministic SVG that needs no font.
    return mpl.rc_context({
        "svg.hashsalt": "enasa-report", "svg.fonttype": "path", "font.size": 10,
        "axes.titlesize": 10, "axes.spines.top": False, "axes.spines.right": False,
    })


def _svg(figure: Figure, prefix: str, title: str) -> str:
    """Render a figure as an inline ``<svg>`` whose ids cannot clash with another's."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    text = _SVG_ID.sub(lambda m: f'id="{prefix}-{m.group(1)}"', text)
    text = _SVG_REF.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", text)
    # Scale with the page; the viewBox keeps the aspect ratio.
    head_end = text.index(">")
    head = re.sub(r'\s(width|height)="[^"]*"', "", text[:head_end])
    return (f'{head} role="img" aria-label="{html.escape(title)}">'
            f"<title>{html.escape(title)}</title>{text[head_end + 1:]}")


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_PNG_DPI, metadata={"Software": None},
                   facecolor="white")
    return buffer.getvalue()


def render_charts_png(plan: Plan, folder: str | Path) -> list[Path]:
    """Write the charts alone as ``gantt.png``, ``utilization.png`` and ``subnets.png``.

    Every file is written atomically; the folder is created when missing.

    Returns:
        The paths written, in :data:`CHART_NAMES` order.

    Raises:
        InputError: the folder cannot be created or written.

    """
    return write_charts_png(render_report_and_charts(plan, html_page=False)[1], folder)


def write_charts_png(images: dict[str, bytes], folder: str | Path) -> list[Path]:
    """Write PNG images made by :func:`render_report_and_charts` as ``<name>.png``."""
    return [write_atomic(Path(folder) / f"{name}.png", images[name]) for name in CHART_NAMES
            if name in images]


# ---- HTML ---------------------------------------------------------------------------
def _header(plan: Plan, report: dict[str, Any]) -> str:
    """Title, facts and the headline cards, every number from ``report["totals"]``."""
    t = report["totals"]
    dedup = report["dedup"]
    esc = html.escape
    chip = report["chip"]["crossbars"]
    facts = (f"target <b>{esc(str(report['target']))}</b> \u00b7 <b>{esc(report['mode'])}</b>"
             f" mapping \u00b7 solver <b>{esc(report['solver'])}</b> \u00b7 batch "
             f"<b>{report['batch']}</b> \u00b7 group of <b>{len(plan.subnets)}</b> subnets "
             f"\u00b7 <b>{len(plan.operators):,}</b> operators ({report['mvm_operators']:,} on"
             " crossbars)")
    bounds = report["bounds"]
    bound = bounds.get("lower_bound_ns")
    quality = (f" \u00b7 lower bound {format_makespan(bound)} (gap "
               f"{bounds.get('gap', 0.0):.2%})" if bound is not None else "")
    mj = 1e6  # pJ per µJ
    cards = [
        card("makespan", format_makespan(t["makespan_ns"]),
             f"{t['images_per_s']:,.0f} subnet-images/s{quality}", total="makespan_ns"),
        card("total energy", f"{short(t['total_energy_pj'] / mj)} \u00b5J",
             f"dynamic {short(t['energy_pj'] / mj)} + leakage "
             f"{short(t['leakage_energy_pj'] / mj)}", total="total_energy_pj"),
        card("dynamic energy", f"{short(t['energy_pj'] / mj)} \u00b5J",
             f"compute {short(t['compute_energy_pj'] / mj)} \u00b7 writes "
             f"{short(t['write_energy_pj'] / mj)}", total="energy_pj"),
        card("leakage", f"{short(t['leakage_energy_pj'] / mj)} \u00b5J",
             f"static {short(report['chip']['static_power_mw'])} mW over the makespan",
             total="leakage_energy_pj"),
        card("write energy", f"{short(t['write_energy_pj'] / mj)} \u00b5J",
             f"{percent(t['write_share'])} of the total \u00b7 {t['cell_writes']:,} cell "
             f"writes in {t['program_events']:,} events", total="write_energy_pj"),
        card("write time", format_makespan(t["write_time_ns"]),
             f"wall clock with a crossbar being written \u00b7 "
             f"{format_makespan(t['write_crossbar_ns'])} crossbar time",
             total="write_time_ns"),
        card("crossbars used", f"{t['crossbars_used']:,}", f"of {chip:,} on the chip",
             total="crossbars_used"),
        card("utilization", percent(t["utilization"]),
             f"allocated {percent(t['allocated_utilization'])} \u00b7 spatial "
             f"{percent(t['spatial_utilization'])}", total="utilization"),
        card("energy per image", f"{short(t['total_energy_per_image_pj'] / mj)} \u00b5J",
             f"with leakage \u00b7 dynamic {short(t['energy_per_image_pj'] / mj)}",
             total="total_energy_per_image_pj"),
        card("effective TOPS/W", f"{short(t['effective_tops_per_w'])}",
             f"{short(t['effective_tops'])} TOPS, leakage included",
             total="effective_tops_per_w"),
    ]
    if "nodes_before" in dedup and "nodes_after" in dedup:
        macs = (f" \u00b7 MACs {si(dedup['macs_before'])} \u2192 {si(dedup['macs_after'])}"
                if "macs_before" in dedup and "macs_after" in dedup else "")
        cards.append(card(
            "dedup operators", f"{dedup['nodes_before']:,} \u2192 {dedup['nodes_after']:,}",
            f"{ratio(dedup['nodes_before'], dedup['nodes_after'])} fewer{macs}"))
    title = f"Plan report: {len(plan.subnets)} subnets on {esc(str(report['target']))}"
    return (f"<header><h1>{title}</h1><p class=facts>{facts}</p>"
            f'<div class="cards">{"".join(cards)}</div></header>')


def _subnet_table(report: dict[str, Any], colors: dict[int, str]) -> str:
    rows = []
    for s in report["subnets"]:
        swatch = f'<span class="swatch" style="background:{colors.get(s["index"], "#999")}">'
        rows.append([
            str(s["index"]), f"{swatch}</span>{html.escape(s['name'])}",
            f"{s['latency_ns'] / 1e3:,.2f}", uj(s["energy_pj"]),
            uj(s["attributed_energy_pj"]), f"{s['operators']:,}",
            f"{s['shared_operators']:,}", f"{s['macs']:,}", percent(s["utilization"]),
            percent(s["spatial_utilization"]),
        ])
    return table(["#", "subnet", "latency (\u00b5s)", "energy (\u00b5J)",
                  "attributed energy (\u00b5J)", "operators", "shared operators", "MACs",
                  "utilization", "spatial"], rows, left=2)


def _dedup_tables(report: dict[str, Any]) -> str:
    dedup = report["dedup"]
    rows = []
    done = set()
    for stem, label in (("nodes", "operators (graph nodes)"), ("macs", "MACs")):
        before, after = dedup.get(f"{stem}_before"), dedup.get(f"{stem}_after")
        if before is None or after is None:
            continue
        removed = dedup.get(f"{stem}_removed", before - after)
        share = percent(removed / before) if before else "\u2013"
        rows.append([label, f"{before:,}", f"{after:,}", f"{removed:,}", share,
                     ratio(before, after)])
        done |= {f"{stem}_before", f"{stem}_after", f"{stem}_removed"}
    parts = [table(["", "before", "after", "removed", "removed share", "ratio"], rows)
             if rows else "<p class=note>The plan records no deduplication.</p>"]
    others = sorted(k for k in dedup if k not in done)
    if others:
        parts.append(table(["statistic", "count"],
                           ([html.escape(k), f"{dedup[k]:,}"] for k in others)))
    kinds = report["by_kind"]
    parts.append(table(["operator kind", "operators", "energy (\u00b5J)"],
                       ([html.escape(k), f"{int(v['operators']):,}", uj(v["energy_pj"])]
                        for k, v in sorted(kinds.items()))))
    return "".join(parts)


def _report_json(report: dict[str, Any]) -> str:
    """``simulate --json``'s data, for scripts and tests to read back from the page.

    ``<`` is escaped so no subnet or operator name can close the script element.
    """
    simulate = {k: v for k, v in report.items() if k != "operators"}
    text = json_text(simulate, "the report's data", indent=1, sort_keys=True,
                     ensure_ascii=False)
    text = text.replace("<", "\\u003c")
    return f'<script type="application/json" id="cost-report">{text}</script>'


def render_report(plan: Plan) -> str:
    """Render the plan as one self-contained HTML page.

    Args:
        plan: a plan, which the caller should have validated (the page trusts its
            totals and references).

    Returns:
        The HTML document.

    """
    return render_report_and_charts(plan, png=False)[0]


def render_report_and_charts(
    plan: Plan, *, html_page: bool = True, png: bool = True
) -> tuple[str, dict[str, bytes]]:
    """Render the page and the PNG charts from one cost report (the slow parts).

    Args:
        plan: a validated plan.
        html_page: render the HTML page (else ``""`` is returned for it).
        png: render the charts as PNG (else the dict is empty).

    Returns:
        The HTML document and the PNG bytes by chart name (:data:`CHART_NAMES`).

    """
    # The page's per-operator table needs the breakdown; the PNG charts do not.
    report = cost_report(plan, breakdown=html_page)
    rows = gantt_rows(plan)
    styles = build_styles(plan)
    with _style():
        figures = {"utilization": utilization_figure(plan),
                   "subnets": subnets_figure(report, styles)}
        # SVG before PNG: drawing at the PNG's dpi moves clip boxes by a hair, which
        # would change the SVG's hashed ids and make the page depend on --png.
        svgs = ({name: _svg(figures[name], name, title)
                 for name, title in zip(CHART_NAMES, _CHART_TITLES, strict=True)
                 if name in figures} if html_page else {})
        images: dict[str, bytes] = {}
        if png:
            images["gantt"] = _png(gantt_figure(plan, styles, rows))
            images.update((name, _png(figure)) for name, figure in figures.items())
    if not html_page:
        return "", images
    op_rows = {r["id"]: r for r in report["operators"]}
    svgs["gantt"] = gantt_svg(plan, rows, styles, op_rows)
    return _page(plan, report, svgs, rows, styles), images


def _page(plan: Plan, report: dict[str, Any], svgs: dict[str, str], rows: GanttRows,
          styles: dict[str, Style]) -> str:
    colors = {int(k[1:]): s.color for k, s in styles.items() if k.startswith("s")}
    esc = html.escape
    title = f"enasa plan report \u2013 {len(plan.subnets)} subnets on {report['target']}"
    sections = [
        _header(plan, report),
        costs_section(report),
        "<section><h2>Crossbar schedule</h2>"
        f"{gantt_legend_html(plan, styles)}"
        f'<figure class="gantt-box">{svgs["gantt"]}</figure><p class=note>Each bar is an '
        "operator computing on crossbars (or a digital unit, bottom rows), coloured by the "
        "subnet it serves; operators that serve several subnets (compute-shared) are dark "
        "and hatched; grey hatched bars are weight tiles being written into crossbars. "
        "Hover a bar for its operator, subnets, times, crossbars and energy; labels show "
        f"where they fit. {esc(gantt_note(rows))} Very short events are drawn at least a "
        "hairline wide.</p></section>",
        "<section><h2>Utilization over time</h2>"
        f"<figure>{svgs['utilization']}<figcaption>Share of the "
        f"{report['totals']['crossbars_used']:,} crossbars the plan uses that are computing "
        "(blue) or being programmed (grey, stacked), averaged over each time bin. Chip-wide "
        f"utilization is {percent(report['totals']['utilization'])}.</figcaption></figure>"
        "</section>",
        pipeline_section(plan, report, styles),
        "<section><h2>Subnets</h2>"
        f"<figure>{svgs['subnets']}<figcaption>Latency: from the first event to the end of the"
        " subnet's last operator. Energy alone: all operators the subnet uses. Attributed: "
        "shared operators split evenly among their subnets and writes among all subnets "
        "(attributed energies add up to the plan's dynamic energy).</figcaption></figure>"
        f"{_subnet_table(report, colors)}</section>",
        operators_section(plan, report, rows),
        f"<section><h2>Deduplication</h2>{_dedup_tables(report)}</section>",
        f"<footer>enasa-compiler {esc(__version__)} \u00b7 plan format version "
        f"{plan.version} \u00b7 target sha256 {esc(plan.target_sha256[:16])}\u2026 \u00b7 "
        "the figures above are <code>enasa simulate --json</code>'s, embedded in this page "
        "as JSON (the script element <code>#cost-report</code>)</footer>",
    ]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{_CSS}</style></head>\n<body><main>"
            + "\n".join(sections) + f"</main>\n{_report_json(report)}\n"
            f"<script>{_FILTER_JS}</script></body></html>\n")
