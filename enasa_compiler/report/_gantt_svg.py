"""The report page's Gantt chart as hand-written SVG: one element per event, with hover text.

The PNG chart (``--png``, :func:`enasa_compiler.report._charts.gantt_figure`) batches bars
into one matplotlib collection per colour, which is fast but leaves nothing to point
at. Here each compute event is an SVG group whose ``<title>`` is the browser's hover
tooltip (operator, subnets, start and end, crossbars with their PE and tile, energy)
and whose ``data-subnets`` attribute the page's subnet filter reads; each programming
event is a rect with its own title. A bar gets a visible label (operator, subnets)
only where the text fits inside it and clears the row's previous label, so plans
with thousands of bars stay legible. Crossbar rows are grouped by chip tile (shaded
bands, tile labels, rules) and PE (thin rules, PE labels).

The SVG is deterministic (fixed pattern ids prefixed ``gantt-``, coordinates printed
with fixed decimals) so equal plans still give byte-identical pages.
"""

from __future__ import annotations

import html
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from enasa_compiler.plan import ComputeEvent, Plan, PlanOperator
from enasa_compiler.report._charts import PROGRAM_KEY, Style, op_style_key
from enasa_compiler.report._gantt_rows import GanttRows, tile_boundaries, time_origin_ns

logger = logging.getLogger(__name__)

__all__ = ["GANTT_TITLE", "gantt_legend_html", "gantt_svg", "subnet_tag", "to_ranges"]

GANTT_TITLE = "Crossbar Gantt chart"
_WIDTH = 1200.0
_ROW = 11.0
_FONT = 8.0
_CHAR_PX = 0.55 * _FONT  # a generous average glyph width: labels must not overflow
_TOP = 26.0
_BOTTOM = 34.0
_RIGHT = 10.0
_UNITS_GAP = 20.0
_COLUMN = {"tile": 56.0, "PE": 44.0, "crossbar": 44.0}
_MIN_BAR_PX = 0.8
_BAR_GAP_PX = 0.7
_LABEL_PAD = 2.0
_MIN_LABEL_CHARS = 4
_X_TICKS = 10
_BAND_FILL = "#f1f3f6"
_PE_RULE = "#dfe3e8"
_TILE_RULE = "#9aa3ad"
_GRID = "#e4e7eb"
_AXIS_TEXT = "#4b5563"


@dataclass(frozen=True)
class _Frame:
    """Where things go: the plot's left edge, its width, the time scale and row tops."""

    left: float
    plot_width: float
    px_per_ns: float
    origin_ns: int
    units_top: float
    height: float

    def x(self, time_ns: int) -> float:
        return self.left + (time_ns - self.origin_ns) * self.px_per_ns


# ---- small text helpers -----------------------------------------------------------
def to_ranges(values: Iterable[int]) -> str:
    """Compact a set of integers, e.g. ``{1, 2, 3, 7}`` -> ``1-3, 7`` (with an en dash)."""
    ordered = sorted(set(values))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}\u2013{ordered[j]}")
        i = j + 1
    return ", ".join(parts)


def subnet_tag(subnets: Sequence[int], group_size: int) -> str:
    """Short name of the subnets an operator serves: ``s2``, ``s0-3``, ``s1,4`` or ``all``."""
    if group_size > 1 and len(set(subnets)) == group_size:
        return "all"
    return "s" + to_ranges(subnets).replace(", ", ",")


def _duration(ns: int) -> str:
    return f"{ns:,} ns" if ns < 1000 else f"{ns / 1e3:,.3f} \u00b5s"


def _text_color(fill: str) -> str:
    """Black or white, whichever reads better on a ``#rrggbb`` fill."""
    r, g, b = (int(fill[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return "#111111" if 0.299 * r + 0.587 * g + 0.114 * b > 0.55 else "#ffffff"


def _fit_label(op_id: str, tag: str, width_px: float) -> str | None:
    """Choose the most telling label that fits a bar of this width, or None.

    Operator ids end ``.../<module>/<node type>`` (``branch_main.2/Conv``); the module
    tells operators apart, the node type is the first thing to drop, then the
    module's head.
    """
    room = int((width_px - 2 * _LABEL_PAD) / _CHAR_PX)
    parts = [p for p in op_id.split("/") if p] or [op_id]
    module = parts[-2] if len(parts) > 1 else parts[-1]
    candidates = [f"{module}/{parts[-1]} {tag}", f"{module} {tag}"] if len(parts) > 1 else [
        f"{module} {tag}"]
    for text in candidates:
        if len(text) <= room:
            return text
    keep = room - len(tag) - 2  # the ellipsis and the space
    if keep >= _MIN_LABEL_CHARS:
        return f"\u2026{module[-keep:]} {tag}"
    return None


def _nice_step(span: float) -> float:
    raw = span / _X_TICKS
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1.0, 2.0, 5.0, 10.0) if raw <= m * magnitude)


# ---- pieces of the SVG -------------------------------------------------------------
def _patterns(styles: dict[str, Style], prefix: str = "gantt") -> str:
    """Hatch patterns for the hatched styles (shared operators, programming).

    ``prefix`` starts their ids, so each chart on the page can have its own.
    """
    out = []
    for key, style in styles.items():
        if style.hatch is None:
            continue
        line = style.hatch_color or "#ffffff"
        # Faint on the dark shared colours, so a label on top stays readable.
        opacity = "0.35" if key != PROGRAM_KEY else "1"
        out.append(
            f'<pattern id="{prefix}-hatch-{key}" width="5" height="5" '
            'patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
            f'<rect width="5" height="5" fill="{style.color}"/>'
            f'<line x1="0" y1="0" x2="0" y2="5" stroke="{line}" stroke-width="1.3" '
            f'stroke-opacity="{opacity}"/></pattern>')
    return f"<defs>{''.join(out)}</defs>"


def _fill(key: str, style: Style, prefix: str = "gantt") -> str:
    return f"url(#{prefix}-hatch-{key})" if style.hatch is not None else style.color


def _row_axis(rows: GanttRows, frame: _Frame) -> str:
    """Tile bands, PE and tile rules, and the row labels in one to three columns."""
    out = []
    right = frame.left + frame.plot_width
    count = rows.crossbar_rows
    tiles: list[tuple[int, int, int]] = []  # (tile, first row, last row)
    pes: list[tuple[int, int, int]] = []
    for row in range(count):
        tile, pe = rows.tile_of(rows.row_first[row]), rows.pe_of(rows.row_first[row])
        if tiles and tiles[-1][0] == tile:
            tiles[-1] = (tile, tiles[-1][1], row)
        else:
            tiles.append((tile, row, row))
        if pes and pes[-1][0] == pe:
            pes[-1] = (pe, pes[-1][1], row)
        else:
            pes.append((pe, row, row))
    grouped = rows.level != "tile"
    if grouped:
        for i, (_, first, last) in enumerate(tiles):
            if i % 2 == 0:
                out.append(f'<rect x="0" y="{_TOP + first * _ROW:.1f}" width="{right:.1f}" '
                           f'height="{(last - first + 1) * _ROW:.1f}" fill="{_BAND_FILL}"/>')
    if rows.level == "crossbar":
        for _, first, _ in pes[1:]:
            y = _TOP + first * _ROW
            out.append(f'<line x1="{_COLUMN["tile"]:.1f}" y1="{y:.1f}" x2="{right:.1f}" '
                       f'y2="{y:.1f}" stroke="{_PE_RULE}" stroke-width="0.6"/>')
    if grouped:
        for row in tile_boundaries(rows):
            y = _TOP + row * _ROW
            out.append(f'<line x1="0" y1="{y:.1f}" x2="{right:.1f}" y2="{y:.1f}" '
                       f'stroke="{_TILE_RULE}" stroke-width="0.8"/>')
    text = []
    if grouped:
        for tile, first, last in tiles:
            y = _TOP + (first + last + 1) / 2 * _ROW + _FONT * 0.35
            text.append(f'<text x="4" y="{y:.1f}" font-weight="600">tile {tile}</text>')
    if rows.level == "crossbar":
        x = _COLUMN["tile"] + _COLUMN["PE"] - 6
        for pe, first, last in pes:
            y = _TOP + (first + last + 1) / 2 * _ROW + _FONT * 0.35
            text.append(f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="end">PE {pe}</text>')
    for row in range(count):
        y = _TOP + (row + 0.5) * _ROW + _FONT * 0.35
        label = html.escape(rows.row_label(row))
        text.append(f'<text x="{frame.left - 4:.1f}" y="{y:.1f}" '
                    f'text-anchor="end">{label}</text>')
    for i, unit in enumerate(rows.units):
        y = frame.units_top + (i + 0.5) * _ROW + _FONT * 0.35
        text.append(f'<text x="{frame.left - 4:.1f}" y="{y:.1f}" '
                    f'text-anchor="end">DU {unit}</text>')
    if rows.units:
        text.append(f'<text x="4" y="{frame.units_top - 6:.1f}" font-weight="600">'
                    "digital units</text>")
    return (f'<g class="rows">{"".join(out)}</g><g class="axis" font-size="{_FONT:g}" '
            f'fill="{_AXIS_TEXT}">{"".join(text)}</g>')


def _time_axis(frame: _Frame, span_ns: int) -> str:
    """Vertical grid lines with tick labels at the top and the bottom, in µs."""
    span_us = span_ns / 1e3
    step = _nice_step(span_us)
    decimals = max(0, -math.floor(math.log10(step)))
    out = []
    bottom = frame.height - _BOTTOM
    ticks = int(span_us / step + 1e-9)
    for i in range(ticks + 1):
        t_us = i * step
        x = frame.left + t_us * 1e3 * frame.px_per_ns
        label = f"{t_us:,.{decimals}f}"
        top = label + (" \u00b5s" if i == 0 else "")  # the chart is tall: unit on top too
        anchor = "start" if i == 0 else "middle"
        out.append(f'<line x1="{x:.1f}" y1="{_TOP:.1f}" x2="{x:.1f}" y2="{bottom:.1f}" '
                   f'stroke="{_GRID}" stroke-width="0.6"/>'
                   f'<text x="{x:.1f}" y="{_TOP - 6:.1f}" text-anchor="{anchor}">{top}</text>'
                   f'<text x="{x:.1f}" y="{bottom + 12:.1f}" '
                   f'text-anchor="middle">{label}</text>')
    out.append(f'<text x="{frame.left + frame.plot_width / 2:.1f}" y="{bottom + 27:.1f}" '
               'text-anchor="middle" font-size="10">time (\u00b5s)</text>')
    return f'<g class="time" font-size="{_FONT:g}" fill="{_AXIS_TEXT}">{"".join(out)}</g>'


def _runs(rows: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive rows as ``(first, last)`` runs: one rect per run, not per crossbar."""
    runs: list[tuple[int, int]] = []
    for row in sorted(set(rows)):
        if runs and row == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], row)
        else:
            runs.append((row, row))
    return runs


def _event_title(
    plan: Plan, op: PlanOperator, event: ComputeEvent, rows: GanttRows, origin_ns: int,
    op_row: dict[str, Any] | None,
) -> str:
    start, end = event.start_ns - origin_ns, event.end_ns - origin_ns
    lines = [op.id, f"{op.op_type} ({op.kind.value}) \u00b7 {_served(plan, op.subnets)}",
             f"{start / 1e3:,.3f}\u2013{end / 1e3:,.3f} \u00b5s "
             f"({_duration(event.end_ns - event.start_ns)})"]
    if event.placements:
        crossbars = [p.crossbar for p in event.placements]
        lines.append(f"crossbar{'s' if len(crossbars) > 1 else ''} {to_ranges(crossbars)}"
                     f" \u00b7 PE {to_ranges(rows.pe_of(x) for x in crossbars)}"
                     f" \u00b7 tile {to_ranges(rows.tile_of(x) for x in crossbars)}")
    elif event.unit is not None:
        lines.append(f"digital unit {event.unit}")
    if op_row is not None:
        lines.append(f"energy {op_row['energy_pj'] / 1e3:,.3f} nJ dynamic + "
                     f"{op_row['leakage_pj'] / 1e3:,.3f} nJ leakage")
    return "\n".join(lines)


def _served(plan: Plan, subnets: Sequence[int]) -> str:
    """Name the subnets an operator serves: by name when few, else as index ranges."""
    if len(subnets) == 1:
        names = {s.index: s.name for s in plan.subnets}
        return f"subnet {subnets[0]} ({names.get(subnets[0], '?')})"
    return f"shared by {len(subnets)} subnets: {to_ranges(subnets)}"


def _tile_subnets(plan: Plan) -> dict[str, tuple[int, ...]]:
    """Weight tile id -> the subnets served by the operators that read it."""
    by_weight: dict[str, set[int]] = defaultdict(set)
    for op in plan.operators:
        for weight in op.weights:
            by_weight[weight].update(op.subnets)
    return {t.id: tuple(sorted(by_weight.get(w.id, ()))) for w in plan.weights
            for t in w.tiles}


class _Labels:
    """Places bar labels row by row, never over the row's previous label."""

    def __init__(self) -> None:
        self.reach: dict[float, float] = {}
        self.out: list[str] = []

    def place(self, x: float, y_top: float, text: str | None, color: str,
              subnets: str) -> None:
        if text is None or x < self.reach.get(y_top, -math.inf):
            return
        self.reach[y_top] = x + _LABEL_PAD + len(text) * _CHAR_PX + _LABEL_PAD
        baseline = y_top + _ROW / 2 + _FONT * 0.35
        self.out.append(f'<text x="{x + _LABEL_PAD:.1f}" y="{baseline:.1f}" fill="{color}" '
                        f'data-subnets="{subnets}">{html.escape(text)}</text>')


# ---- the chart ---------------------------------------------------------------------
def gantt_svg(
    plan: Plan, rows: GanttRows, styles: dict[str, Style],
    op_rows: dict[str, dict[str, Any]] | None = None,
) -> str:
    """Draw the plan's schedule as an inline ``<svg>`` element.

    Args:
        plan: a validated plan.
        rows: the row of each crossbar and digital unit
            (:func:`~enasa_compiler.report._gantt_rows.gantt_rows`).
        styles: colours by style key (:func:`build_styles`).
        op_rows: ``cost_report(plan, breakdown=True)["operators"]`` by id, for the
            energies in the hover text (left out when None).

    Returns:
        The ``<svg>`` element: one ``<g class="op">`` per compute event and one
        ``<rect class="wr">`` per programming event, each with a ``<title>``.

    """
    op_rows = op_rows or {}
    origin_ns = time_origin_ns(plan)
    span_ns = max(plan.totals.makespan_ns, 1)
    columns = {"crossbar": ("tile", "PE", "crossbar"), "PE": ("tile", "PE"),
               "tile": ("tile",)}[rows.level]
    left = sum(_COLUMN[c] for c in columns) + (40.0 if rows.per_row > 1 else 0.0)
    plot_width = _WIDTH - left - _RIGHT
    crossbar_height = rows.crossbar_rows * _ROW
    units_top = _TOP + crossbar_height + (_UNITS_GAP if rows.units else 0.0)
    height = units_top + len(rows.units) * _ROW + _BOTTOM
    frame = _Frame(left=left, plot_width=plot_width, px_per_ns=plot_width / span_ns,
                   origin_ns=origin_ns, units_top=units_top, height=height)
    group_size = len(plan.subnets)
    ops = {op.id: op for op in plan.operators}
    tile_subnets = _tile_subnets(plan)
    labels = _Labels()
    bars: list[str] = []
    program = styles[PROGRAM_KEY]
    for prog in sorted(plan.program, key=lambda e: (e.start_ns, e.crossbar)):
        x0, x1 = frame.x(prog.start_ns), frame.x(prog.end_ns)
        row = rows.crossbar_row[prog.crossbar]
        served = tile_subnets.get(prog.tile, ())
        title = (f"write tile {prog.tile} into crossbar {prog.crossbar} (PE "
                 f"{rows.pe_of(prog.crossbar)}, tile {rows.tile_of(prog.crossbar)})\n"
                 f"{(prog.start_ns - origin_ns) / 1e3:,.3f}\u2013"
                 f"{(prog.end_ns - origin_ns) / 1e3:,.3f} \u00b5s \u00b7 "
                 f"{prog.energy_pj / 1e3:,.3f} nJ \u00b7 for subnets {to_ranges(served)}")
        bars.append(f'<rect class="wr" data-subnets="{" ".join(map(str, served))}" '
                    f'x="{x0:.1f}" y="{_TOP + row * _ROW + 1:.1f}" '
                    f'width="{max(x1 - x0, _MIN_BAR_PX):.1f}" height="{_ROW - 2:.1f}" '
                    f'fill="{_fill(PROGRAM_KEY, program)}" stroke="{program.edge}" '
                    f'stroke-width="0.3"><title>{html.escape(title)}</title></rect>')
    unit_row = {unit: i for i, unit in enumerate(rows.units)}
    drawn = 0
    for event in sorted(plan.compute, key=lambda e: (e.start_ns, e.op)):
        op = ops.get(event.op)
        if op is None:  # only an unvalidated plan gets here; draw what can be drawn
            logger.warning("compute event of unknown operator %r not drawn", event.op)
            continue
        key = op_style_key(op)
        style = styles[key]
        x0, x1 = frame.x(event.start_ns), frame.x(event.end_ns)
        width = max(x1 - x0, _MIN_BAR_PX)
        spans: list[tuple[float, float]] = []  # (top, height) of each rect
        if event.unit is not None:
            spans.append((units_top + unit_row[event.unit] * _ROW, _ROW))
        for first, last in _runs(rows.crossbar_row[p.crossbar] for p in event.placements):
            spans.append((_TOP + first * _ROW, (last - first + 1) * _ROW))
        subnets = " ".join(map(str, op.subnets))
        title = _event_title(plan, op, event, rows, origin_ns, op_rows.get(op.id))
        # A sliver of gap at the end tells back-to-back bars of one colour apart.
        drawn_width = width - _BAR_GAP_PX if width > 4 * _BAR_GAP_PX else width
        rects = "".join(f'<rect x="{x0:.1f}" y="{top + 1:.1f}" width="{drawn_width:.1f}" '
                        f'height="{tall - 2:.1f}"/>' for top, tall in spans)
        bars.append(f'<g class="op" data-op="{html.escape(op.id)}" data-subnets="{subnets}" '
                    f'fill="{_fill(key, style)}"><title>{html.escape(title)}</title>'
                    f"{rects}</g>")
        drawn += 1
        text = _fit_label(op.id, subnet_tag(op.subnets, group_size), width)
        color = _text_color(style.color)
        for top, _ in spans:
            labels.place(x0, top, text, color, subnets)
    logger.debug("gantt svg: %d compute events, %d writes, %d labels", drawn,
                 len(plan.program), len(labels.out))
    what = (f"{len(rows.crossbar_row)} crossbars in {rows.crossbar_rows} rows"
            + (f", {len(rows.units)} digital units" if rows.units else ""))
    return (f'<svg class="gantt" xmlns="http://www.w3.org/2000/svg" '
            f'viewBox="0 0 {_WIDTH:g} {height:.1f}" role="img" '
            f'aria-label="{GANTT_TITLE}: {what}" font-family="system-ui, sans-serif">'
            f"<title>{GANTT_TITLE}: {what}</title>{_patterns(styles)}"
            f"{_row_axis(rows, frame)}{_time_axis(frame, span_ns)}"
            f'<g class="bars">{"".join(bars)}</g>'
            f'<g class="labels" font-size="{_FONT:g}">{"".join(labels.out)}</g></svg>')


def gantt_legend_html(plan: Plan, styles: dict[str, Style]) -> str:
    """Build the chart's legend, whose subnet entries are the filter's checkboxes.

    Unchecking a subnet dims the bars (and hides the per-operator rows) of operators
    that serve none of the checked subnets; the page's script does it, and without
    scripts the legend is still a legend.
    """
    names = {s.index: s.name for s in plan.subnets}
    boxes = []
    for key, style in styles.items():
        if not key.startswith("s"):
            continue
        index = int(key[1:])
        boxes.append(f'<label title="{html.escape(names.get(index, ""))}"><input '
                     f'type="checkbox" data-subnet="{index}" checked>'
                     f'<span class="swatch" style="background:{style.color}"></span>'
                     f"{html.escape(style.label)}</label>")
    keys = []
    for key, style in styles.items():
        if key.startswith("s"):
            continue
        line = style.hatch_color or "#ffffff"
        keys.append(f'<span class="key"><span class="swatch" style="background:'
                    f"repeating-linear-gradient(45deg,{style.color} 0 3px,{line} 3px 4px)"
                    f'"></span>{html.escape(style.label)}</span>')
    return ('<div class="legend" id="subnet-filter"><span class="lt">subnets shown:</span>'
            f'{"".join(boxes)}<button type="button" data-all="1">all</button>'
            f'<button type="button" data-all="0">none</button>'
            f'<span class="lt">also:</span>{"".join(keys)}</div>')
