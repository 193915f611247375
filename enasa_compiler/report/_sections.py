"""The report page's cost sections: energy and latency by component, the chip, per operator.

Every number here is read from the dict :func:`enasa_compiler.simulate.cost.cost_report`
returns (the one ``enasa simulate --json`` prints), never recomputed from the plan,
so the page and the command cannot disagree. The only arithmetic is summing rows
of that dict into the groups ``simulate`` itself names (``shares``) and the
per-operator latency split into totals, which are labelled as sums.

Also here: the small HTML helpers (tables, cards, number formats) the page shares.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from enasa_compiler.plan import Plan
from enasa_compiler.report._gantt_rows import GanttRows
from enasa_compiler.report._gantt_svg import subnet_tag, to_ranges
from enasa_compiler.simulate.breakdown import COMPONENT_GROUPS, GROUP_LABELS

logger = logging.getLogger(__name__)

__all__ = [
    "card",
    "costs_section",
    "operators_section",
    "percent",
    "ratio",
    "short",
    "si",
    "table",
    "uj",
]

# One colour per component group, in the shares bar and its legend.
_GROUP_COLORS = {
    "array": "#1f77b4", "adc_dac_sample_hold": "#ff7f0e", "accumulation": "#2ca02c",
    "buffer": "#9467bd", "interconnect": "#8c564b", "digital": "#e377c2",
    "write": "#7f7f7f", "leakage": "#bcbd22",
}
_OTHER_COLOR = "#17becf"
# Per-operator energy columns: the groups an operator has (writes and leakage are not
# split by component per operator; leakage has its own column).
_OPERATOR_GROUPS = ("array", "adc_dac_sample_hold", "accumulation", "buffer",
                    "interconnect", "digital")


# ---- numbers ------------------------------------------------------------------------
def uj(energy_pj: float) -> str:
    """Format picojoules as microjoules with three decimals."""
    return f"{energy_pj / 1e6:,.3f}"


def short(value: float) -> str:
    """Format a headline number: four significant digits, no exponent notation."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def si(count: float) -> str:
    """Format a count with a k/M/G suffix and three significant digits."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(count) >= scale:
            return f"{count / scale:.3g}{suffix}"
    return f"{count:g}"


def percent(value: float) -> str:
    """Format a fraction as a percentage; small ones keep three significant digits."""
    # Plans often run their chip at well under 1 %: keep three significant digits.
    return f"{value:.1%}" if value >= 0.01 else f"{value * 100:.3g}%"


def ratio(before: float, after: float) -> str:
    """``before / after`` as a factor, or a dash when ``after`` is 0."""
    return f"{before / after:.2f}\u00d7" if after else "\u2013"


def _group_label(group: str) -> str:
    return GROUP_LABELS.get(group, group)


# ---- HTML ---------------------------------------------------------------------------
def table(header: Sequence[str], rows: Iterable[Sequence[str]], left: int = 1,
          row_attrs: Iterable[str] | None = None) -> str:
    """Build an HTML table; the first ``left`` columns are text, the others numbers.

    ``row_attrs`` gives each body row's attributes (e.g. ``data-subnets="0 1"``).
    """
    def cells(tag: str, values: Sequence[str]) -> str:
        return "".join(f'<{tag}{" class=l" if i < left else ""}>{v}</{tag}>'
                       for i, v in enumerate(values))

    attrs = iter(row_attrs) if row_attrs is not None else None
    body = "".join(f"<tr{(' ' + next(attrs)) if attrs else ''}>{cells('td', row)}</tr>"
                   for row in rows)
    return f"<table><thead><tr>{cells('th', header)}</tr></thead><tbody>{body}</tbody></table>"


def card(key: str, value: str, sub: str = "", total: str | None = None) -> str:
    """Build a headline figure; ``total`` names the ``cost_report`` totals key shown."""
    extra = f'<div class="s">{sub}</div>' if sub else ""
    data = f' data-total="{total}"' if total else ""
    return (f'<div class="card"{data}><div class="k">{key}</div><div class="v">{value}</div>'
            f"{extra}</div>")


def _stack(parts: Sequence[tuple[str, float, str]]) -> str:
    """Draw a 100 % bar of ``(label, share, colour)`` parts, with its legend."""
    bar = "".join(f'<span style="width:{share * 100:.3f}%;background:{color}" '
                  f'title="{html.escape(label)} {percent(share)}"></span>'
                  for label, share, color in parts if share > 0)
    legend = "".join(f'<span class="key"><span class="swatch" style="background:{color}">'
                     f"</span>{html.escape(label)} {percent(share)}</span>"
                     for label, share, color in parts if share > 0)
    return f'<div class="stack">{bar}</div><div class="keys">{legend}</div>'


# ---- energy and latency by component -----------------------------------------------
def costs_section(report: dict[str, Any]) -> str:
    """Energy by component beside latency by component and the chip's area and power.

    Energy components carry ``simulate --breakdown``'s names, grouped as its shares
    line; operator time is the per-operator latency split, summed.
    """
    components: dict[str, float] = report["components_pj"]
    total = sum(components.values())
    grouped = {key for keys in COMPONENT_GROUPS.values() for key in keys}
    groups = [(g, tuple(keys)) for g, keys in COMPONENT_GROUPS.items()]
    others = tuple(sorted(k for k in components if k not in grouped))
    if others:
        groups.append(("other", others))
    rows, attrs = [], []
    parts = []
    for group, keys in groups:
        group_pj = sum(components.get(k, 0.0) for k in keys)
        share = report["shares"].get(group, group_pj / total if total else 0.0)
        parts.append((_group_label(group), share, _GROUP_COLORS.get(group, _OTHER_COLOR)))
        if group_pj <= 0:
            continue
        swatch = (f'<span class="swatch" style="background:'
                  f'{_GROUP_COLORS.get(group, _OTHER_COLOR)}"></span>')
        rows.append([f"{swatch}<b>{html.escape(_group_label(group))}</b>",
                     f"<b>{uj(group_pj)}</b>", f"<b>{percent(share)}</b>"])
        attrs.append('class="group"')
        named = [k for k in keys if components.get(k, 0.0) > 0]
        if named == [group]:  # digital, leakage: the group is its only component
            continue
        for key in sorted(named, key=lambda k: (-components[k], k)):
            rows.append([f'<span class="sub">{html.escape(key)}</span>', uj(components[key]),
                         percent(components[key] / total if total else 0.0)])
            attrs.append("")
    t = report["totals"]
    rows.append(["<b>total</b> (dynamic + leakage)", f"<b>{uj(t['total_energy_pj'])}</b>",
                 "100%"])
    attrs.append('class="group" data-total="total_energy_pj"')
    energy = table(["component", "energy (\u00b5J)", "share"], rows, row_attrs=attrs)
    return ('<section class="grid2"><div><h2>Energy by component</h2>'
            f"{_stack(parts)}{energy}<p class=note>Components as <code>enasa simulate "
            "--breakdown</code> names them, grouped as its shares line (NeuroSim's "
            "grouping); leakage is the chip's static power over the makespan.</p></div>"
            f"<div><h2>Latency by component</h2>{_latency_table(report)}"
            f"{_chip(report)}</div></section>")


def _latency_table(report: dict[str, Any]) -> str:
    rows = report.get("operators", [])
    mvm = [r for r in rows if r["kind"] == "mvm"]
    read_ns = sum(r["read_ns"] for r in mvm)
    sensing_ns = sum(r["sensing_ns"] for r in mvm)
    digital_ns = sum(r["latency_ns"] for r in rows if r["kind"] != "mvm")
    total_ns = read_ns + sensing_ns + digital_ns
    parts = [("crossbar read pulses", read_ns, _GROUP_COLORS["array"]),
             ("ADC sensing beyond the pulse", sensing_ns,
              _GROUP_COLORS["adc_dac_sample_hold"]),
             ("digital units", digital_ns, _GROUP_COLORS["digital"])]
    body = [[html.escape(label), f"{ns / 1e3:,.2f}",
             percent(ns / total_ns if total_ns else 0.0)] for label, ns, _ in parts]
    body.append(["<b>operator time (sum)</b>", f"<b>{total_ns / 1e3:,.2f}</b>", "100%"])
    t = report["totals"]
    stack = _stack([(label, ns / total_ns if total_ns else 0.0, color)
                    for label, ns, color in parts])
    latency = table(["latency component", "time (\u00b5s)", "share"], body)
    return (f"{stack}{latency}"
            "<p class=note>Each operator's latency split as <code>simulate --breakdown"
            "</code> gives it (read, sense), summed over operators, each counted once "
            "however many crossbars it uses. Operators overlap, so the sum is not the "
            f"makespan ({t['makespan_ns'] / 1e3:,.2f} \u00b5s). Programming is apart: "
            f'<span data-total="write_time_ns">{t["write_time_ns"] / 1e3:,.2f} \u00b5s'
            "</span> of wall-clock time with at least one crossbar being written, "
            f'<span data-total="write_crossbar_ns">{t["write_crossbar_ns"] / 1e3:,.2f} '
            "\u00b5s</span> of crossbar time.</p>")


# ---- chip ---------------------------------------------------------------------------
def _chip(report: dict[str, Any]) -> str:
    """Chip hierarchy, area breakdown, peak power and efficiency; the plan's own TOPS."""
    chip = report["chip"]
    t = report["totals"]
    area = chip["area_mm2"]
    cards = "".join([
        card("chip area", f"{area:,.3f} mm\u00b2",
             f"tile {chip['tile_area_mm2']:.4f} \u00b7 PE {chip['pe_area_mm2']:.5f} mm\u00b2"),
        card("peak power", f"{short(chip['peak_power_w'])} W",
             f"tile {chip['tile_power_mw']:,.2f} mW \u00b7 PE {chip['pe_power_mw']:,.3f} mW"),
        card("static power", f"{short(chip['static_power_mw'])} mW", "leakage of the chip"),
        card("peak", f"{short(chip['peak_tops'])} TOPS",
             f"{chip['tops_per_w']:.3f} TOPS/W \u00b7 {chip['tops_per_mm2']:.3f} "
             "TOPS/mm\u00b2"),
        card("this plan", f"{short(t['effective_tops'])} TOPS",
             f"{t['effective_tops_per_w']:.4f} TOPS/W with leakage", total="effective_tops"),
    ])
    parts = sorted(chip["area_breakdown_mm2"].items(), key=lambda kv: (-kv[1], kv[0]))
    rows = [[html.escape(k), f"{v:,.4f}", percent(v / area if area else 0.0)]
            for k, v in parts if v > 0]
    rows.append(["<b>chip</b>", f"<b>{area:,.4f}</b>", "100%"])
    area_table = table(["component", "area (mm\u00b2)", "share"], rows)
    hierarchy = (f"{chip['tiles']:,} tiles \u00d7 {chip['pes_per_tile']} PEs \u00d7 "
                 f"{chip['crossbars_per_pe']} crossbars = {chip['crossbars']:,} crossbars "
                 f"({chip['pes']:,} PEs)")
    return (f"<h2>Chip: {html.escape(str(chip['name']))}, area and power</h2>"
            f"<p class=facts>{hierarchy}</p><div class=cards>{cards}</div>{area_table}")


# ---- per operator -------------------------------------------------------------------
def operators_section(plan: Plan, report: dict[str, Any], rows: GanttRows) -> str:
    """One row per operator (per layer, as NeuroSim lists them), in schedule order."""
    placed: dict[str, list[int]] = {}
    units: dict[str, int] = {}
    for event in plan.compute:
        placed[event.op] = [p.crossbar for p in event.placements]
        if event.unit is not None:
            units[event.op] = event.unit
    origin_ns = min([e.start_ns for e in plan.compute] + [e.start_ns for e in plan.program],
                    default=0)
    group_size = len(plan.subnets)
    ordered = sorted(report["operators"],
                     key=lambda r: (r["start_ns"] is None, r["start_ns"] or 0, r["id"]))
    body, attrs = [], []
    for r in ordered:
        crossbars = placed.get(r["id"], [])
        if crossbars:
            where = (f"xb {to_ranges(crossbars)}" if len(crossbars) <= 4
                     else f"tile {to_ranges(rows.tile_of(x) for x in crossbars)}")
        else:
            where = f"DU {units[r['id']]}" if r["id"] in units else "\u2013"
        c = r["components_pj"]
        groups = [sum(c.get(k, 0.0) for k in COMPONENT_GROUPS[g]) for g in _OPERATOR_GROUPS]
        start = ("\u2013" if r["start_ns"] is None
                 else f"{(r['start_ns'] - origin_ns) / 1e3:,.3f}")
        body.append([
            f'<span title="{html.escape(r["id"])}">{html.escape(r["id"])}</span>',
            subnet_tag(r["subnets"], group_size), html.escape(r["op_type"]),
            html.escape(where),
            str(r["crossbars"]) if crossbars else "\u2013",
            str(len({rows.pe_of(x) for x in crossbars})) if crossbars else "\u2013",
            str(len({rows.tile_of(x) for x in crossbars})) if crossbars else "\u2013",
            str(r["copies"]), start, f"{r['latency_ns']:,}",
            f"{r['read_ns']:,.0f}", f"{r['sensing_ns']:,.0f}", f"{r['energy_pj'] / 1e3:,.3f}",
            *(f"{pj / 1e3:,.3f}" if pj else "0" for pj in groups),
            f"{r['leakage_pj'] / 1e3:,.3f}",
        ])
        attrs.append(f'data-subnets="{" ".join(map(str, r["subnets"]))}"')
    header = ["operator", "subnets", "type", "placed on", "crossbars", "PEs", "tiles",
              "copies", "start (\u00b5s)", "latency (ns)", "read (ns)", "sense (ns)",
              "dynamic (nJ)",
              *(f"{html.escape(_group_label(g))} (nJ)" for g in _OPERATOR_GROUPS),
              "leakage (nJ)"]
    return ("<section><h2>Per operator (per layer)</h2><p class=note>Every operator of "
            "the deduplicated group in schedule order, as <code>enasa simulate --breakdown"
            "</code> lists them: where it runs (crossbars, the PEs and chip tiles they sit "
            "in, or a digital unit), its latency split, its dynamic energy by component "
            "group and the leakage of the hardware it holds while it runs. The subnet "
            "checkboxes above the Gantt chart also filter this table.</p>"
            f'<div class="scroll">{table(header, body, left=4, row_attrs=attrs)}</div>'
            "</section>")
