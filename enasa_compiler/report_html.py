"""A self-contained HTML report of a plan, for people to read before trusting it.

``enasa simulate`` prints the numbers; this page adds what a table cannot show at a
glance: a Gantt chart of every used crossbar (and digital unit) over time, coloured
by the subnet each operator serves (compute-shared operators stand out), the
crossbars' utilization over time, per-subnet costs and the deduplication summary.

The page has no external resource (no CSS, script, font or image fetched from
anywhere): charts are inline SVG made by matplotlib, styles are inline, so the file
can be mailed, archived with the plan or opened offline. Equal plans give
byte-identical pages (fixed SVG id salt, no dates), so reports can be diffed.
"""

from __future__ import annotations

import contextlib
import html
import io
import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
from matplotlib.figure import Figure

from enasa_compiler import __version__
from enasa_compiler._charts import (
    build_styles,
    gantt_figure,
    gantt_note,
    gantt_rows,
    subnets_figure,
    utilization_figure,
)
from enasa_compiler.atomic import write_atomic
from enasa_compiler.plan import Plan
from enasa_compiler.report import cost_report

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
_CHART_TITLES = ("Crossbar Gantt chart", "Utilization over time", "Per-subnet costs")
_PNG_DPI = 110
_SVG_ID = re.compile(r'\bid="([^"]+)"')
_SVG_REF = re.compile(r'(href="#|url\(#)([^")]+)')

_CSS = """
body{margin:0;background:#f6f7f9;color:#1d232b;
 font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif}
main{max-width:1280px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px}
.facts{color:#4b5563;margin:0 0 16px}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{flex:1 1 auto;min-width:140px;background:#fff;border:1px solid #dde1e6;
 border-radius:6px;padding:10px 12px}
.card .k{font-size:12px;color:#5b6573;text-transform:uppercase;letter-spacing:.03em}
.card .v{font-size:20px;font-weight:600;font-variant-numeric:tabular-nums;
 white-space:nowrap}
.card .s{font-size:12px;color:#5b6573}
figure{margin:0;background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:8px}
figure svg{display:block;width:100%;height:auto}
figcaption,.note{color:#4b5563;font-size:13px;margin:6px 4px 0}
table{border-collapse:collapse;background:#fff;margin-top:10px;font-size:13px}
th,td{padding:4px 10px;border-bottom:1px solid #e5e7eb;text-align:right;
 font-variant-numeric:tabular-nums;white-space:nowrap}
th{background:#eef1f4;font-weight:600}
td.l,th.l{text-align:left}tr:nth-child(even) td{background:#fafbfc}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px;
 vertical-align:-1px}
footer{margin-top:36px;color:#6b7280;font-size:12px}
"""


# ---- numbers ------------------------------------------------------------------------
def format_makespan(makespan_ns: int) -> str:
    """Format a makespan as the page shows it, e.g. ``136.60 µs``."""
    return f"{makespan_ns / 1e3:,.2f} \u00b5s"


def _uj(energy_pj: float) -> str:
    return f"{energy_pj / 1e6:,.3f}"


def _short(value: float) -> str:
    """Four significant digits, without exponent notation (a headline number)."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _si(count: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(count) >= scale:
            return f"{count / scale:.3g}{suffix}"
    return f"{count:g}"


def _percent(value: float) -> str:
    # Plans often run their chip at well under 1 %: keep three significant digits.
    return f"{value:.1%}" if value >= 0.01 else f"{value * 100:.3g}%"


def _ratio(before: float, after: float) -> str:
    return f"{before / after:.2f}\u00d7" if after else "\u2013"


# ---- charts -------------------------------------------------------------------------
def _style() -> contextlib.AbstractContextManager[None]:
    # Fixed SVG id salt and glyphs drawn as paths: deterministic SVG that needs no font.
    return mpl.rc_context({
        "svg.hashsalt": "enasa-report", "svg.fonttype": "path", "font.size": 10,
        "axes.titlesize": 10, "axes.spines.top": False, "axes.spines.right": False,
    })


def _figures(plan: Plan, report: dict[str, Any]) -> dict[str, Figure]:
    styles = build_styles(plan)
    return {
        "gantt": gantt_figure(plan, styles),
        "utilization": utilization_figure(plan),
        "subnets": subnets_figure(report, styles),
    }


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
def _table(header: Sequence[str], rows: Iterable[Sequence[str]], left: int = 1) -> str:
    """Build an HTML table; the first ``left`` columns are text, the others numbers."""
    def cells(tag: str, values: Sequence[str]) -> str:
        return "".join(f'<{tag}{" class=l" if i < left else ""}>{v}</{tag}>'
                       for i, v in enumerate(values))

    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f"<table><thead><tr>{cells('th', header)}</tr></thead><tbody>{body}</tbody></table>"


def _card(key: str, value: str, sub: str = "") -> str:
    extra = f'<div class="s">{sub}</div>' if sub else ""
    return (f'<div class="card"><div class="k">{key}</div><div class="v">{value}</div>'
            f"{extra}</div>")


def _header(plan: Plan, report: dict[str, Any]) -> str:
    t = plan.totals
    dedup = plan.dedup
    esc = html.escape
    chip = plan.target.get("chip", {}).get("crossbars")
    of_chip = f"of {chip:,} on the chip" if isinstance(chip, int) else ""
    facts = (f"target <b>{esc(str(report['target']))}</b> \u00b7 <b>{esc(plan.mode)}</b> "
             f"mapping \u00b7 solver <b>{esc(plan.solver)}</b> \u00b7 batch "
             f"<b>{plan.batch}</b> \u00b7 group of <b>{len(plan.subnets)}</b> subnets \u00b7 "
             f"<b>{len(plan.operators):,}</b> operators ({report['mvm_operators']:,} on "
             f"crossbars)")
    bound = plan.bounds.get("lower_bound_ns")
    quality = (f" \u00b7 lower bound {format_makespan(bound)} (gap "
               f"{plan.bounds.get('gap', 0.0):.2%})" if bound is not None else "")
    cards = [
        _card("makespan", format_makespan(t.makespan_ns),
              f"{report['totals']['images_per_s']:,.0f} subnet-images/s{quality}"),
        _card("energy", f"{_short(t.energy_pj / 1e6)} \u00b5J",
              f"compute {_short(t.compute_energy_pj / 1e6)} \u00b7 writes "
              f"{_short(t.write_energy_pj / 1e6)}"),
        _card("crossbars used", f"{t.crossbars_used:,}", of_chip),
        _card("utilization", _percent(t.utilization),
              f"allocated {_percent(t.allocated_utilization)} \u00b7 spatial "
              f"{_percent(t.spatial_utilization)}"),
        _card("cell writes", f"{t.cell_writes:,}", f"{t.program_events:,} programming events"),
    ]
    if "nodes_before" in dedup and "nodes_after" in dedup:
        macs = (f" \u00b7 MACs {_si(dedup['macs_before'])} \u2192 {_si(dedup['macs_after'])}"
                if "macs_before" in dedup and "macs_after" in dedup else "")
        cards.append(_card(
            "dedup operators", f"{dedup['nodes_before']:,} \u2192 {dedup['nodes_after']:,}",
            f"{_ratio(dedup['nodes_before'], dedup['nodes_after'])} fewer{macs}"))
    title = f"Plan report: {len(plan.subnets)} subnets on {esc(str(report['target']))}"
    return (f"<header><h1>{title}</h1><p class=facts>{facts}</p>"
            f'<div class="cards">{"".join(cards)}</div></header>')


def _subnet_table(report: dict[str, Any], colors: dict[int, str]) -> str:
    rows = []
    for s in report["subnets"]:
        swatch = f'<span class="swatch" style="background:{colors.get(s["index"], "#999")}">'
        rows.append([
            str(s["index"]), f"{swatch}</span>{html.escape(s['name'])}",
            f"{s['latency_ns'] / 1e3:,.2f}", _uj(s["energy_pj"]),
            _uj(s["attributed_energy_pj"]), f"{s['operators']:,}",
            f"{s['shared_operators']:,}", f"{s['macs']:,}",
        ])
    return _table(["#", "subnet", "latency (\u00b5s)", "energy (\u00b5J)",
                   "attributed energy (\u00b5J)", "operators", "shared operators", "MACs"],
                  rows, left=2)


def _dedup_tables(plan: Plan, report: dict[str, Any]) -> str:
    dedup = plan.dedup
    rows = []
    done = set()
    for stem, label in (("nodes", "operators (graph nodes)"), ("macs", "MACs")):
        before, after = dedup.get(f"{stem}_before"), dedup.get(f"{stem}_after")
        if before is None or after is None:
            continue
        removed = dedup.get(f"{stem}_removed", before - after)
        share = _percent(removed / before) if before else "\u2013"
        rows.append([label, f"{before:,}", f"{after:,}", f"{removed:,}", share,
                     _ratio(before, after)])
        done |= {f"{stem}_before", f"{stem}_after", f"{stem}_removed"}
    parts = [_table(["", "before", "after", "removed", "removed share", "ratio"], rows)
             if rows else "<p class=note>The plan records no deduplication.</p>"]
    others = sorted(k for k in dedup if k not in done)
    if others:
        parts.append(_table(["statistic", "count"],
                            ([html.escape(k), f"{dedup[k]:,}"] for k in others)))
    kinds = report["by_kind"]
    parts.append(_table(["operator kind", "operators", "energy (\u00b5J)"],
                        ([html.escape(k), f"{int(v['operators']):,}", _uj(v["energy_pj"])]
                         for k, v in sorted(kinds.items()))))
    return "".join(parts)


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
    """Render the page and the PNG charts from one set of figures (the slow part).

    Args:
        plan: a validated plan.
        html_page: render the HTML page (else ``""`` is returned for it).
        png: render the charts as PNG (else the dict is empty).

    Returns:
        The HTML document and the PNG bytes by chart name (:data:`CHART_NAMES`).

    """
    report = cost_report(plan)
    with _style():
        figures = _figures(plan, report)
        images = {name: _png(figures[name]) for name in CHART_NAMES} if png else {}
        if not html_page:
            return "", images
        svgs = {name: _svg(figures[name], name, title)
                for name, title in zip(CHART_NAMES, _CHART_TITLES, strict=True)}
    return _page(plan, report, svgs), images


def _page(plan: Plan, report: dict[str, Any], svgs: dict[str, str]) -> str:
    styles = build_styles(plan)
    colors = {int(k[1:]): s.color for k, s in styles.items() if k.startswith("s")}
    esc = html.escape
    title = f"enasa plan report \u2013 {len(plan.subnets)} subnets on {report['target']}"
    sections = [
        _header(plan, report),
        "<section><h2>Crossbar schedule</h2>"
        f"<figure>{svgs['gantt']}<figcaption>Each bar is an operator computing on a crossbar "
        "(or a digital unit, bottom rows), coloured by the subnet it serves; operators that "
        "serve several subnets (compute-shared) are dark and hatched; grey hatched bars are "
        f"tiles being written into crossbars. {esc(gantt_note(gantt_rows(plan)))} Very short"
        " events are drawn at least a hairline wide.</figcaption></figure></section>",
        "<section><h2>Utilization over time</h2>"
        f"<figure>{svgs['utilization']}<figcaption>Share of the "
        f"{plan.totals.crossbars_used:,} crossbars the plan uses that are computing (blue) or "
        "being programmed (grey, stacked), averaged over each time bin. Chip-wide "
        f"utilization is {_percent(plan.totals.utilization)}.</figcaption></figure></section>",
        "<section><h2>Subnets</h2>"
        f"<figure>{svgs['subnets']}<figcaption>Latency: from the first event to the end of the"
        " subnet's last operator. Energy alone: all operators the subnet uses. Attributed: "
        "shared operators split evenly among their subnets and writes among all subnets "
        "(attributed energies add up to the plan's total).</figcaption></figure>"
        f"{_subnet_table(report, colors)}</section>",
        f"<section><h2>Deduplication</h2>{_dedup_tables(plan, report)}</section>",
        f"<footer>enasa-compiler {esc(__version__)} \u00b7 plan format version "
        f"{plan.version} \u00b7 target sha256 {esc(plan.target_sha256[:16])}\u2026</footer>",
    ]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{_CSS}</style></head>\n<body><main>"
            + "\n".join(sections) + "</main></body></html>\n")
