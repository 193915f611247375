"""The report page's charts of a pipelined run: one steady-state period, and fill and drain.

A pipelined plan (plan format 3's ``pipeline``) repeats one image's flow every
initiation interval II, so two pictures tell it all:

* the *period* chart: one II in steady state, each slot drawn once at its phase
  ``(offset - first start) mod II`` (wrapping round the period's end), coloured by
  subnet like the main Gantt chart. A row that is busy for the whole period is the
  resource that sets II;
* the *fill and drain* chart: images ``0 .. K-1`` on a time axis, each in its own
  colour, with the II boundaries (image ``k`` enters at the ``k``-th) marked. ``K``
  is the pipeline's depth (images in flight at once) when that is small enough, so
  the chart shows the fill, one full period in steady state (shaded) and the drain.

Rows are resource groups, not operators
(:mod:`enasa_compiler.report._pipeline_rows`), so plans of thousands of operators stay
readable.

The size is bounded whatever the plan: the period chart draws at most
:data:`MAX_PERIOD_BARS` slots (the longest; the page says how many it left out); the
fill and drain chart draws image 0's bars once, merged per row, in ``<defs>`` and
repeats them for each image with ``<use>``, so it costs one element per image, not
one per (image, slot).
"""

from __future__ import annotations

import html
import logging
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from enasa_compiler.ir import PeriodicSchedule
from enasa_compiler.plan import Plan
from enasa_compiler.report._charts import Style, merge_intervals, op_style_key
from enasa_compiler.report._gantt_svg import (
    _duration,
    _fill,
    _fit_label,
    _Labels,
    _nice_step,
    _patterns,
    _served,
    _text_color,
    subnet_tag,
    to_ranges,
)
from enasa_compiler.report._pipeline_rows import PipelineRows

logger = logging.getLogger(__name__)

__all__ = [
    "IMAGE_COLORS",
    "MAX_IMAGES_DRAWN",
    "MAX_PERIOD_BARS",
    "FillDrain",
    "PeriodChart",
    "fill_drain_svg",
    "images_to_draw",
    "period_svg",
]

MAX_PERIOD_BARS = 1500
"""The period chart draws at most this many slots (the longest)."""
MAX_IMAGES_DRAWN = 48
"""The fill and drain chart draws at most this many images."""
_MIN_IMAGES_DRAWN = 4
# matplotlib's tab10 without its grey (grey means programming on the main chart).
IMAGE_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                "#e377c2", "#bcbd22", "#17becf")
_WIDTH = 1200.0
_ROW = 11.0  # as the main Gantt chart, whose label placer this chart reuses
_FONT = 8.0
_TOP = 30.0
_BOTTOM = 34.0
_LEFT = 84.0
_RIGHT = 44.0
_UNITS_GAP = 16.0
_MIN_BAR_PX = 0.8
_MIN_TICK_GAP_PX = 22.0
_GRID = "#e4e7eb"
_PERIOD_RULE = "#6b7280"
_STEADY_FILL = "#fff4c2"
_AXIS_TEXT = "#4b5563"
_BAND_FILL = "#f1f3f6"


# ---- shared geometry ---------------------------------------------------------------
def _row_top(rows: PipelineRows, row: int) -> float:
    gap = _UNITS_GAP if row >= rows.crossbar_rows and rows.crossbar_rows else 0.0
    return _TOP + row * _ROW + gap


def _height(rows: PipelineRows) -> float:
    gap = _UNITS_GAP if rows.crossbar_rows and rows.count > rows.crossbar_rows else 0.0
    return _TOP + rows.count * _ROW + gap + _BOTTOM


def _runs(values: Iterable[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for value in sorted(set(values)):
        if runs and value == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    return runs


def _row_axis(rows: PipelineRows, right: float) -> str:
    """Row bands, labels (with hover text) and the rule above the digital units."""
    out, text = [], []
    for row in range(rows.count):
        top = _row_top(rows, row)
        # Every row's band carries its hover text; odd rows' bands are invisible.
        fill = f'fill="{_BAND_FILL}"' if row % 2 == 0 else 'fill="#ffffff" fill-opacity="0"'
        out.append(f'<rect x="0" y="{top:.1f}" width="{right:.1f}" height="{_ROW:g}" '
                   f"{fill}><title>{html.escape(rows.details[row])}</title></rect>")
        text.append(f'<text x="{_LEFT - 4:.1f}" y="{top + _ROW / 2 + _FONT * 0.35:.1f}" '
                    f'text-anchor="end">{html.escape(rows.labels[row])}</text>')
    if rows.count > rows.crossbar_rows:
        top = _row_top(rows, rows.crossbar_rows)
        text.append(f'<text x="4" y="{top - 5:.1f}" font-weight="600">digital units</text>')
    return (f'<g class="rows">{"".join(out)}</g><g class="axis" font-size="{_FONT:g}" '
            f'fill="{_AXIS_TEXT}">{"".join(text)}</g>')


def _ticks(span_ns: int, px_per_ns: float, bottom: float) -> str:
    """Time labels in µs along the bottom edge (grid lines are the callers')."""
    span_us = max(span_ns, 1) / 1e3
    step = _nice_step(span_us)
    decimals = max(0, -math.floor(math.log10(step)))
    out = []
    for i in range(int(span_us / step + 1e-9) + 1):
        x = _LEFT + i * step * 1e3 * px_per_ns
        out.append(f'<line x1="{x:.1f}" y1="{bottom:.1f}" x2="{x:.1f}" y2="{bottom + 3:.1f}" '
                   f'stroke="{_AXIS_TEXT}" stroke-width="0.6"/><text x="{x:.1f}" '
                   f'y="{bottom + 13:.1f}" text-anchor="middle">{i * step:,.{decimals}f}'
                   "</text>")
    return "".join(out)


def _svg(kind: str, title: str, height: float, body: str) -> str:
    return (f'<svg class="gantt pipeline-{kind}" xmlns="http://www.w3.org/2000/svg" '
            f'viewBox="0 0 {_WIDTH:g} {height:.1f}" role="img" '
            f'aria-label="{html.escape(title)}" font-family="system-ui, sans-serif">'
            f"<title>{html.escape(title)}</title>{body}</svg>")


# ---- one period in steady state -----------------------------------------------------
@dataclass(frozen=True)
class PeriodChart:
    """The period chart and what it left out."""

    svg: str
    slots_drawn: int
    slots_total: int
    shortest_drawn_ns: int


def _pieces(phase: int, duration: int, ii: int) -> list[tuple[int, int]]:
    end = phase + min(duration, ii)
    return [(phase, end)] if end <= ii else [(phase, ii), (0, end - ii)]


def period_svg(plan: Plan, schedule: PeriodicSchedule, rows: PipelineRows,
               styles: dict[str, Style], *, prefix: str = "pipe",
               max_bars: int = MAX_PERIOD_BARS) -> PeriodChart:
    """Draw one II of the steady state: every slot at its phase, coloured by subnet.

    Args:
        plan: the plan (its operators give subnets and kinds).
        schedule: the periodic schedule drawn.
        rows: its rows (:func:`pipeline_rows`).
        styles: the page's colours (:func:`~enasa_compiler.report._charts.build_styles`).
        prefix: id prefix of the hatch patterns, unique on the page.
        max_bars: the most slots drawn; the longest are kept.

    """
    ii = max(schedule.ii_ns, 1)
    first = schedule.first_start_ns()
    right = _WIDTH - _RIGHT
    px_per_ns = (right - _LEFT) / ii
    height = _height(rows)
    bottom = height - _BOTTOM
    ops = {op.id: op for op in plan.operators}
    drawable = [s for s in schedule.slots if s.op in ops and rows.slot_rows.get(s.op)]
    kept = sorted(drawable, key=lambda s: (-s.duration_ns, s.op))[:max_bars]
    busy: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for slot in drawable:
        for row in rows.slot_rows[slot.op]:
            busy[row].extend(_pieces((slot.offset_ns - first) % ii, slot.duration_ns, ii))
    group_size = len(plan.subnets)
    bars, labels = [], _Labels()
    for slot in sorted(kept, key=lambda s: (s.offset_ns, s.op)):
        op = ops[slot.op]
        key = op_style_key(op)
        phase, stage = (slot.offset_ns - first) % ii, (slot.offset_ns - first) // ii
        where = (f"crossbars {to_ranges(p.crossbar for p in slot.placements)}"
                 if slot.placements else f"digital units {to_ranges(slot.units)}")
        title = "\n".join([
            op.id, f"{op.op_type} ({op.kind.value}) \u00b7 {_served(plan, op.subnets)}",
            f"phase {phase / 1e3:,.3f}\u2013{(phase + slot.duration_ns) / 1e3:,.3f} \u00b5s "
            f"of the {ii / 1e3:,.3f} \u00b5s period ({_duration(slot.duration_ns)})",
            f"stage {stage}: while image k enters, works on image k\u2212{stage}",
            where])
        rects = []
        label = None
        for start, end in _pieces(phase, slot.duration_ns, ii):
            x0, width = _LEFT + start * px_per_ns, max((end - start) * px_per_ns, _MIN_BAR_PX)
            for low, high in _runs(rows.slot_rows[slot.op]):
                top = _row_top(rows, low)
                rects.append(f'<rect x="{x0:.1f}" y="{top + 1:.1f}" width="{width:.1f}" '
                             f'height="{(high - low + 1) * _ROW - 2:.1f}"/>')
                if label is None:
                    label = (x0, top, _fit_label(op.id, subnet_tag(op.subnets, group_size),
                                                 width))
        subnets = " ".join(map(str, op.subnets))
        bars.append(f'<g class="slot" data-op="{html.escape(op.id)}" data-subnets="{subnets}"'
                    f' fill="{_fill(key, styles[key], prefix)}"><title>{html.escape(title)}'
                    f'</title>{"".join(rects)}</g>')
        if label is not None:
            labels.place(label[0], label[1], label[2], _text_color(styles[key].color),
                         subnets)
    shares = []
    for row in range(rows.count):
        share = sum(end - start for start, end in merge_intervals(busy[row])) / ii
        y = _row_top(rows, row) + _ROW / 2 + _FONT * 0.35
        shares.append(f'<text x="{right + 4:.1f}" y="{y:.1f}">{share:.0%}</text>')
    grid = "".join(f'<line x1="{x:.1f}" y1="{_TOP:.1f}" x2="{x:.1f}" y2="{bottom:.1f}" '
                   f'stroke="{_PERIOD_RULE}" stroke-width="1"/>' for x in (_LEFT, right))
    head = (f'<text x="{_LEFT:.1f}" y="{_TOP - 8:.1f}">image k enters</text>'
            f'<text x="{right:.1f}" y="{_TOP - 8:.1f}" text-anchor="end">image k+1 enters '
            f'(II = {ii / 1e3:,.3f} \u00b5s)</text><text x="{right + 4:.1f}" '
            f'y="{_TOP - 8:.1f}">busy</text>'
            f'<text x="{(_LEFT + right) / 2:.1f}" y="{bottom + 27:.1f}" text-anchor="middle" '
            'font-size="10">time within one period (\u00b5s)</text>')
    axis = (f'<g class="time" font-size="{_FONT:g}" fill="{_AXIS_TEXT}">'
            f"{_ticks(ii, px_per_ns, bottom)}{head}{''.join(shares)}</g>")
    what = (f"one {ii / 1e3:,.3f} \u00b5s period in steady state, {len(kept)} of "
            f"{len(drawable)} slots on {rows.count} rows")
    svg = _svg("period", f"Pipelined schedule: {what}", height,
               f"{_patterns(styles, prefix)}{_row_axis(rows, right)}{grid}{axis}"
               f'<g class="bars">{"".join(bars)}</g>'
               f'<g class="labels" font-size="{_FONT:g}">{"".join(labels.out)}</g>')
    return PeriodChart(svg=svg, slots_drawn=len(kept), slots_total=len(drawable),
                       shortest_drawn_ns=min((s.duration_ns for s in kept), default=0))


# ---- fill and drain ----------------------------------------------------------------
@dataclass(frozen=True)
class FillDrain:
    """The fill and drain chart and what it shows.

    Attributes:
        svg: the ``<svg>`` element.
        images_drawn: images ``0 .. images_drawn - 1`` are drawn.
        depth: images in flight at once in steady state (``ceil(latency / II)``).
        steady_start_ns: start of the shaded steady-state period, from image 0's entry,
            or None when the drawn images never fill the pipeline.
        bars: image 0's bars (merged per row), each repeated for every image.

    """

    svg: str
    images_drawn: int
    depth: int
    steady_start_ns: int | None
    bars: int


def images_to_draw(schedule: PeriodicSchedule, images: int) -> tuple[int, int]:
    """Return ``(images drawn, depth)``: the depth when it fits, at least a few images."""
    ii = max(schedule.ii_ns, 1)
    depth = max(1, math.ceil(schedule.latency_ns() / ii))
    return min(images, max(depth, _MIN_IMAGES_DRAWN), MAX_IMAGES_DRAWN), depth


def fill_drain_svg(schedule: PeriodicSchedule, images: int, rows: PipelineRows, *,
                   prefix: str = "pipe", max_bars: int = MAX_PERIOD_BARS) -> FillDrain:
    """Draw images ``0 .. K-1`` entering one II apart: the fill, steady state, drain.

    Args:
        schedule: the periodic schedule drawn.
        images: images the run has (the chart draws at most that many).
        rows: its rows (:func:`pipeline_rows`).
        prefix: id prefix of the image-0 template, unique on the page.
        max_bars: the most template bars (the longest kept).

    """
    ii = max(schedule.ii_ns, 1)
    first = schedule.first_start_ns()
    drawn, depth = images_to_draw(schedule, images)
    span = max(schedule.latency_ns() + (drawn - 1) * ii, 1)
    right = _WIDTH - _RIGHT
    px_per_ns = (right - _LEFT) / span
    height = _height(rows)
    bottom = height - _BOTTOM
    per_row: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for slot in schedule.slots:
        for row in rows.slot_rows.get(slot.op, ()):
            start = slot.offset_ns - first
            per_row[row].append((start, start + slot.duration_ns))
    pieces = [(row, start, end) for row, spans in per_row.items()
              for start, end in merge_intervals(spans)]
    pieces = sorted(sorted(pieces, key=lambda p: (p[1] - p[2], p))[:max_bars])
    template = "".join(
        f'<rect x="{_LEFT + start * px_per_ns:.2f}" y="{_row_top(rows, row) + 1:.1f}" '
        f'width="{max((end - start) * px_per_ns, _MIN_BAR_PX):.2f}" height="{_ROW - 2:g}"/>'
        for row, start, end in pieces)
    uses = []
    for image in range(drawn):
        enter = image * ii
        title = (f"image {image}: enters at {enter / 1e3:,.3f} \u00b5s, leaves at "
                 f"{(enter + schedule.latency_ns()) / 1e3:,.3f} \u00b5s")
        uses.append(f'<use href="#{prefix}-image0" x="{enter * px_per_ns:.2f}" '
                    f'fill="{IMAGE_COLORS[image % len(IMAGE_COLORS)]}">'
                    f"<title>{title}</title></use>")
    steady = (depth - 1) * ii if drawn >= depth else None
    marks = []
    if steady is not None:
        x0 = _LEFT + steady * px_per_ns
        marks.append(f'<rect x="{x0:.2f}" y="{_TOP:.1f}" width="{ii * px_per_ns:.2f}" '
                     f'height="{bottom - _TOP:.1f}" fill="{_STEADY_FILL}"><title>one period '
                     f"in steady state: every operator busy as in the period chart"
                     "</title></rect>")
    label_every = max(1, math.ceil(_MIN_TICK_GAP_PX / (ii * px_per_ns)))
    periods = int(span / ii)
    text = []
    for k in range(periods + 1):
        x = _LEFT + k * ii * px_per_ns
        marks.append(f'<line x1="{x:.2f}" y1="{_TOP - 4:.1f}" x2="{x:.2f}" y2="{bottom:.1f}" '
                     f'stroke="{_PERIOD_RULE if k < drawn else _GRID}" stroke-width="0.6" '
                     'stroke-dasharray="3 2"/>')
        if k < drawn and k % label_every == 0:
            text.append(f'<text x="{x:.2f}" y="{_TOP - 7:.1f}" text-anchor="middle">{k}'
                        "</text>")
    text.append(f'<text x="4" y="{_TOP - 7:.1f}">image enters:</text>'
                f'<text x="{(_LEFT + right) / 2:.1f}" y="{bottom + 27:.1f}" '
                'text-anchor="middle" font-size="10">time since image 0 enters (\u00b5s)'
                "</text>")
    axis = (f'<g class="time" font-size="{_FONT:g}" fill="{_AXIS_TEXT}">'
            f"{_ticks(span, px_per_ns, bottom)}{''.join(text)}</g>")
    what = (f"images 0\u2013{drawn - 1} entering every {ii / 1e3:,.3f} \u00b5s "
            f"(depth {depth}) on {rows.count} rows")
    svg = _svg("fill", f"Pipeline fill and drain: {what}", height,
               f'<defs><g id="{prefix}-image0">{template}</g></defs>'
               f"{_row_axis(rows, right)}<g class=\"marks\">{''.join(marks)}</g>{axis}"
               f'<g class="images">{"".join(uses)}</g>')
    return FillDrain(svg=svg, images_drawn=drawn, depth=depth, steady_start_ns=steady,
                     bars=len(pieces))
