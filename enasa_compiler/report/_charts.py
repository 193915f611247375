"""The charts of the plan report, built as matplotlib figures.

A plan is read by people before it is trusted: the Gantt chart shows where each
crossbar spends its time (and what the scheduler left idle), the utilization curve
shows how much of the allocated chip works at each moment, and the per-subnet bars
show what each member of the group costs. This module only builds the figures;
:mod:`enasa_compiler.report.html` turns them into SVG (page) or PNG (``--png``).

Figures are made with :class:`matplotlib.figure.Figure` directly, never through
pyplot, so no GUI backend is touched and the caller's global backend stays as it is.
Bars are batched into one :class:`~matplotlib.collections.PolyCollection` per colour:
a 16-subnet plan has ~13,000 (crossbar, operator) pairs, and one artist each would
make rendering slow and the SVG huge.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, PercentFormatter

from enasa_compiler.plan import Plan, PlanOperator
from enasa_compiler.report._gantt_rows import (
    GanttRows,
    gantt_rows,
    tile_boundaries,
    time_origin_ns,
)

logger = logging.getLogger(__name__)

__all__ = [
    "PROGRAM_KEY",
    "Style",
    "build_styles",
    "gantt_figure",
    "op_style_key",
    "subnets_figure",
    "utilization_figure",
]

PROGRAM_KEY = "program"
FIGURE_WIDTH_IN = 13.0
_ROW_HEIGHT_IN = 0.032
_UNIT_ROW_HEIGHT_IN = 0.13
_UTILIZATION_BINS = 400
_Y_TICKS = 14
_LEGEND_LABEL_CHARS = 26
# Darkest shades of matplotlib's sequential maps: far from the mid-tone subnet hues.
_SHARED_COLORS = ("#111111", "#3f007d", "#7f2704", "#00441b", "#08306b", "#67000d",
                  "#4d004b", "#3d3d00")
_PROGRAM_FACE = "#dcdcdc"
_PROGRAM_EDGE = "#8c8c8c"
_COMPUTE_COLOR = "#1f77b4"
_RowIntervals = dict[str, dict[int, list[tuple[int, int]]]]
"""Style key -> row -> ``(start_ns, end_ns)`` intervals."""
_ZOOM_FACTOR = 4.0
_TILE_RULE = "#9aa3ad"  # the rule between two chip tiles' rows


@dataclass(frozen=True)
class Style:
    """How one category of interval is drawn, and its legend label."""

    label: str
    color: str
    hatch: str | None = None
    edge: str | None = None
    hatch_color: str | None = None


# ---- colours ------------------------------------------------------------------------
def _subnet_colors(count: int) -> list[str]:
    """Distinct hues for ``count`` subnets, never grey (grey means programming)."""
    if count <= 9:
        tab10 = colormaps["tab10"].colors  # type: ignore[attr-defined]
        return [_hex(c) for i, c in enumerate(tab10) if i != 7][:count]
    if count <= 18:
        tab20 = colormaps["tab20"].colors  # type: ignore[attr-defined]
        # Saturated halves first, so small groups get the most distinct hues.
        order = [i for i in range(0, 20, 2) if i != 14] + [i for i in range(1, 20, 2)
                                                          if i != 15]
        return [_hex(tab20[i]) for i in order][:count]
    turbo = colormaps["turbo"]
    return [_hex(turbo(0.05 + 0.9 * i / (count - 1))) for i in range(count)]


def _hex(rgb: Sequence[float]) -> str:
    return "#" + "".join(f"{round(255 * c):02x}" for c in rgb[:3])


def op_style_key(op: PlanOperator) -> str:
    """Return an operator's style key: its subnet's, or that of its sharing degree."""
    if len(op.subnets) == 1:
        return f"s{op.subnets[0]}"
    return f"k{len(op.subnets)}"


def build_styles(plan: Plan) -> dict[str, Style]:
    """Styles for every subnet, every sharing degree present, and programming.

    Ordered as the legend lists them: subnets, shared operators by decreasing degree,
    then programming.
    """
    styles: dict[str, Style] = {}
    colors = _subnet_colors(len(plan.subnets))
    for info, color in zip(sorted(plan.subnets, key=lambda s: s.index), colors, strict=True):
        name = info.name if len(info.name) <= _LEGEND_LABEL_CHARS else (
            info.name[:_LEGEND_LABEL_CHARS - 1] + "\u2026")
        styles[f"s{info.index}"] = Style(label=name, color=color)
    degrees = sorted({len(op.subnets) for op in plan.operators if len(op.subnets) > 1},
                     reverse=True)
    for i, degree in enumerate(degrees):
        styles[f"k{degree}"] = Style(label=f"shared by {degree} subnets",
                                     color=_SHARED_COLORS[i % len(_SHARED_COLORS)],
                                     hatch="///", hatch_color="#ffffff")
    styles[PROGRAM_KEY] = Style(label="programming (write)", color=_PROGRAM_FACE,
                                hatch="////", edge=_PROGRAM_EDGE, hatch_color=_PROGRAM_EDGE)
    return styles


# ---- Gantt --------------------------------------------------------------------------
def merge_intervals(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Union of half-open intervals, so a band draws one bar where its crossbars overlap."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _gantt_intervals(plan: Plan, rows: GanttRows) -> tuple[_RowIntervals, _RowIntervals]:
    """Intervals per style key per row: (crossbar rows, digital unit rows)."""
    ops = {op.id: op for op in plan.operators}
    crossbar: _RowIntervals = defaultdict(lambda: defaultdict(list))
    digital: _RowIntervals = defaultdict(lambda: defaultdict(list))
    unit_row = {unit: i for i, unit in enumerate(rows.units)}
    for prog in plan.program:
        crossbar[PROGRAM_KEY][rows.crossbar_row[prog.crossbar]].append(
            (prog.start_ns, prog.end_ns))
    for event in plan.compute:
        op = ops.get(event.op)
        if op is None:  # only an unvalidated plan gets here; draw what can be drawn
            logger.warning("compute event of unknown operator %r not drawn", event.op)
            continue
        key = op_style_key(op)
        if event.unit is not None:
            digital[key][unit_row[event.unit]].append((event.start_ns, event.end_ns))
        for row in {rows.crossbar_row[p.crossbar] for p in event.placements}:
            crossbar[key][row].append((event.start_ns, event.end_ns))
    return crossbar, digital


def _bars(
    ax: Axes, by_row: dict[int, list[tuple[int, int]]], style: Style, origin_ns: int,
    *, compute: bool,
) -> int:
    """Draw one style's intervals as a single collection; returns the bar count."""
    boxes = [(start, end, row)
             for row, spans in by_row.items() for start, end in merge_intervals(spans)]
    if not boxes:
        return 0
    data = np.asarray(boxes, dtype=float)
    x0 = (data[:, 0] - origin_ns) / 1e3
    x1 = (data[:, 1] - origin_ns) / 1e3
    y0 = data[:, 2] - 0.42
    y1 = data[:, 2] + 0.42
    verts = np.stack([np.column_stack(p) for p in ((x0, y0), (x0, y1), (x1, y1), (x1, y0))],
                     axis=1)
    # An edge in the face colour keeps a 2 ns operator visible on a 100 us axis.
    collection = PolyCollection(
        list(verts), facecolors=style.color, edgecolors=style.edge or style.color,
        linewidths=0.6 if compute else 0.3, hatch=style.hatch, zorder=3 if compute else 2,
    )
    if style.hatch_color is not None:
        collection.set_hatchcolor(style.hatch_color)
        collection.set_hatch_linewidth(0.5)
    ax.add_collection(collection)
    return len(boxes)


def _legend_handle(style: Style) -> Patch:
    patch = Patch(facecolor=style.color, edgecolor=style.edge or style.color,
                  hatch=style.hatch, label=style.label, linewidth=0.6)
    if style.hatch_color is not None:
        patch.set_hatchcolor(style.hatch_color)
    return patch


def _row_ticks(rows: GanttRows) -> tuple[list[int], list[str]]:
    """Ticks at the rows that start a tile (when rows are finer than tiles), else spread."""
    count = rows.crossbar_rows
    if rows.level == "tile":
        step = max(1, math.ceil(count / _Y_TICKS))
        positions = list(range(0, count, step))
        return positions, [rows.row_label(r) for r in positions]
    starts = [0, *tile_boundaries(rows)] if count else []
    step = max(1, math.ceil(len(starts) / _Y_TICKS))
    positions = starts[::step]
    return positions, [f"tile {rows.tile_of(rows.row_first[r])} \u00b7 {rows.row_label(r)}"
                       for r in positions]


def gantt_figure(
    plan: Plan, styles: dict[str, Style], rows: GanttRows | None = None
) -> Figure:
    """Crossbar Gantt chart: one row per crossbar (or PE, or tile), digital units below."""
    rows = rows or gantt_rows(plan)
    origin_ns = time_origin_ns(plan)
    crossbar, digital = _gantt_intervals(plan, rows)
    unit_count = len(rows.units)
    unit_row_in = min(_UNIT_ROW_HEIGHT_IN, 2.5 / unit_count) if unit_count else 0.0
    crossbar_in = max(2.5, rows.crossbar_rows * _ROW_HEIGHT_IN)
    unit_in = max(0.45, unit_count * unit_row_in) if unit_count else 0.0
    fig = Figure(figsize=(FIGURE_WIDTH_IN, 1.3 + crossbar_in + unit_in), layout="constrained")
    if unit_count:
        ax, ax_units = fig.subplots(2, 1, sharex=True, height_ratios=[crossbar_in, unit_in])
    else:
        ax, ax_units = fig.subplots(1, 1), None
    drawn = 0
    for key, style in styles.items():
        drawn += _bars(ax, crossbar.get(key, {}), style, origin_ns, compute=key != PROGRAM_KEY)
        if ax_units is not None:
            drawn += _bars(ax_units, digital.get(key, {}), style, origin_ns, compute=True)
    end_us = max(plan.totals.makespan_ns / 1e3, 1e-3)
    ax.set_xlim(0, end_us)
    ax.set_ylim(rows.crossbar_rows - 0.5, -0.5)
    positions, labels = _row_ticks(rows)
    ax.set_yticks(positions, labels, fontsize=7)
    for row in tile_boundaries(rows):
        ax.axhline(row - 0.5, color=_TILE_RULE, linewidth=0.4, zorder=1)
    ax.set_ylabel(rows.level if rows.per_row == 1 else f"{rows.per_row} tiles per row")
    ax.grid(axis="x", color="#e6e6e6", linewidth=0.6, zorder=0)
    ax.set_title(f"Crossbar schedule: {len(rows.crossbar_row)} crossbars"
                 + (f", {unit_count} digital units" if unit_count else ""), loc="left")
    bottom = ax
    if ax_units is not None:
        ax_units.set_ylim(unit_count - 0.5, -0.5)
        step = max(1, math.ceil(unit_count / 12))
        ax_units.set_yticks(list(range(0, unit_count, step)),
                            [f"DU {rows.units[i]}" for i in range(0, unit_count, step)],
                            fontsize=7)
        ax_units.set_ylabel("digital\nunit", fontsize=8)
        ax_units.grid(axis="x", color="#e6e6e6", linewidth=0.6, zorder=0)
        bottom = ax_units
    else:
        ax.tick_params(labelbottom=True)
    bottom.set_xlabel("time (\u00b5s)")
    handles = [_legend_handle(s) for k, s in styles.items()
               if k == PROGRAM_KEY or crossbar.get(k) or digital.get(k)]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False,
               ncols=1 if len(handles) <= 28 else 2, title="operator serves",
               title_fontsize=8, alignment="left")
    logger.debug("gantt: %d bars on %d rows", drawn, rows.crossbar_rows + unit_count)
    return fig


# ---- utilization --------------------------------------------------------------------
def _binned_mean(
    intervals: Iterable[tuple[int, int, int]], edges_ns: np.ndarray
) -> np.ndarray:
    """Mean of a sum of weighted box functions over each bin, exactly.

    Each interval ``(start, end, weight)`` adds ``weight`` on ``[start, end)``; the
    running integral is piecewise linear between event times, so it is evaluated at
    the bin edges and differenced.
    """
    data = np.asarray(list(intervals), dtype=float).reshape(-1, 3)
    if not len(data):
        return np.zeros(len(edges_ns) - 1)
    times = np.concatenate([data[:, 0], data[:, 1]])
    steps = np.concatenate([data[:, 2], -data[:, 2]])
    order = np.argsort(times, kind="stable")
    times, steps = times[order], steps[order]
    level = np.cumsum(steps)
    integral = np.concatenate([[0.0], np.cumsum(level[:-1] * np.diff(times))])
    at = np.searchsorted(times, edges_ns, side="right") - 1
    inside = at >= 0
    cumulative = np.zeros(len(edges_ns))
    cumulative[inside] = (integral[at[inside]]
                          + level[at[inside]] * (edges_ns[inside] - times[at[inside]]))
    return np.diff(cumulative) / np.diff(edges_ns)


def utilization_figure(plan: Plan) -> Figure:
    """Fraction of the used crossbars computing and programming over time (stacked).

    When programming dwarfs computing (resident plans write every crossbar at the
    start), a second panel shows computing alone on its own scale, which would
    otherwise be a flat line at the bottom.
    """
    origin_ns = time_origin_ns(plan)
    used = max(1, plan.totals.crossbars_used)
    span_ns = max(plan.totals.makespan_ns, 1)
    bins = min(_UTILIZATION_BINS, span_ns)
    edges_ns = origin_ns + np.linspace(0.0, span_ns, bins + 1)
    computing = _binned_mean(
        ((e.start_ns, e.end_ns, len({p.crossbar for p in e.placements})) for e in plan.compute
         if e.placements), edges_ns) / used
    programming = _binned_mean(((e.start_ns, e.end_ns, 1) for e in plan.program),
                               edges_ns) / used
    edges_us = (edges_ns - origin_ns) / 1e3
    mean = plan.totals.allocated_utilization
    stacked_top = float(max((computing + programming).max(initial=0.0), mean))
    computing_top = float(max(computing.max(initial=0.0), mean))
    zoom = computing_top > 0 and stacked_top > _ZOOM_FACTOR * computing_top
    fig = Figure(figsize=(FIGURE_WIDTH_IN, 5.8 if zoom else 3.8), layout="constrained")
    axes = list(fig.subplots(2, 1, sharex=True)) if zoom else [fig.subplots()]
    ax = axes[0]
    ax.stairs(computing, edges_us, fill=True, color=_COMPUTE_COLOR, label="computing",
              zorder=3)
    ax.stairs(computing + programming, edges_us, baseline=computing, fill=True,
              color=_PROGRAM_FACE, hatch="////", edgecolor=_PROGRAM_EDGE, linewidth=0,
              label="programming (stacked)", zorder=3)
    ax.set_title(f"Crossbar utilization over time (mean over {span_ns / bins / 1e3:.3g} µs "
                 "bins)", loc="left")
    _utilization_axes(ax, stacked_top, mean, plan.totals.crossbars_used)
    if zoom:
        axes[1].stairs(computing, edges_us, fill=True, color=_COMPUTE_COLOR, zorder=3)
        axes[1].set_title("computing only (own scale)", loc="left", fontsize="medium")
        _utilization_axes(axes[1], computing_top, mean, plan.totals.crossbars_used,
                          legend=False)
    axes[-1].set_xlabel("time (µs)")
    axes[-1].set_xlim(0, span_ns / 1e3)
    fig.legend(loc="outside right upper", fontsize=8, frameon=False)
    return fig


def _utilization_axes(
    ax: Axes, top: float, mean: float, crossbars_used: int, *, legend: bool = True
) -> None:
    ax.axhline(mean, color="#d62728", linestyle="--", linewidth=1, zorder=4,
               label=f"mean computing ({_percent(mean)})" if legend else None)
    ax.set_ylim(0, min(1.0, top * 1.12) if top > 0 else 1.0)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=None))
    ax.set_ylabel(f"busy share of the\n{crossbars_used} used crossbars")
    ax.grid(color="#e6e6e6", linewidth=0.6, zorder=0)


def _percent(value: float) -> str:
    return f"{value:.1%}" if value >= 0.01 else f"{value * 100:.3g}%"


# ---- per-subnet bars ----------------------------------------------------------------
def subnets_figure(report: dict[str, Any], styles: dict[str, Style]) -> Figure:
    """Per-subnet latency, energy (alone and attributed), operators and MACs."""
    subnets = report["subnets"]
    names = [styles.get(f"s{s['index']}", Style(s["name"], "#1f77b4")).label
             for s in subnets]
    colors = [styles.get(f"s{s['index']}", Style("", "#1f77b4")).color for s in subnets]
    y = np.arange(len(subnets))
    fig = Figure(figsize=(FIGURE_WIDTH_IN, max(3.0, 1.4 + 0.3 * len(subnets))),
                 layout="constrained")
    latency_ax, energy_ax, ops_ax, macs_ax = fig.subplots(1, 4, sharey=True)
    latency_ax.barh(y, [s["latency_ns"] / 1e3 for s in subnets], color=colors)
    latency_ax.set_xlabel("latency (\u00b5s)")
    latency_ax.set_title("Latency", loc="left")
    height = 0.4
    energy_ax.barh(y - height / 2, [s["energy_pj"] / 1e6 for s in subnets], height,
                   color=colors)
    energy_ax.barh(y + height / 2, [s["attributed_energy_pj"] / 1e6 for s in subnets],
                   height, color=colors, alpha=0.45, hatch="///", edgecolor="#555555",
                   linewidth=0)
    energy_ax.set_xlabel("energy (\u00b5J)")
    energy_ax.set_title("Energy: alone, attributed (hatched)", loc="left")
    own = [s["operators"] - s["shared_operators"] for s in subnets]
    shared = [s["shared_operators"] for s in subnets]
    ops_ax.barh(y, own, color=colors)
    ops_ax.barh(y, shared, left=own, color="#111111", hatch="///", edgecolor="#ffffff",
                linewidth=0)
    ops_ax.set_xlabel("operators")
    ops_ax.set_title("Operators: own, shared (black)", loc="left")
    macs_ax.barh(y, [s["macs"] / 1e6 for s in subnets], color=colors)
    macs_ax.set_xlabel("MACs (millions)")
    macs_ax.set_title("MACs", loc="left")
    latency_ax.set_yticks(y, names, fontsize=8)
    latency_ax.set_ylim(len(subnets) - 0.5, -0.5)
    for ax in (latency_ax, energy_ax, ops_ax, macs_ax):
        ax.grid(axis="x", color="#e6e6e6", linewidth=0.6, zorder=0)
        ax.set_axisbelow(True)
        ax.xaxis.set_major_locator(MaxNLocator(5))
    fig.suptitle("Per-subnet costs", x=0.01, ha="left", fontsize="large")
    return fig
