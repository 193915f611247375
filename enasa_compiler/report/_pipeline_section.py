"""The report page's section on the pipelined run of many images (plan format 3).

The figures come from ``cost_report(plan)["pipeline"]`` (``enasa simulate --json``'s
``pipeline``), never recomputed here; the charts
(:mod:`enasa_compiler.report._pipeline_svg`) draw the plan's periodic schedule. A plan
without one (``pipeline`` null) gets the section's heading and a sentence saying
why, so a reader looking for it learns it is missing on purpose.
"""

from __future__ import annotations

import html
import logging
from typing import Any

from enasa_compiler.plan import Plan
from enasa_compiler.report._charts import Style
from enasa_compiler.report._pipeline_rows import pipeline_rows
from enasa_compiler.report._pipeline_svg import (
    IMAGE_COLORS,
    MAX_IMAGES_DRAWN,
    MAX_PERIOD_BARS,
    fill_drain_svg,
    period_svg,
)
from enasa_compiler.report._sections import percent

logger = logging.getLogger(__name__)

__all__ = ["MAX_SEGMENTS_DRAWN", "PIPELINE_TITLE", "pipeline_section"]

PIPELINE_TITLE = "Pipelined schedule"
MAX_SEGMENTS_DRAWN = 3
"""A segmented run draws the charts of its first few segments only."""
_DASH = "\u2013"


def _us(ns: float) -> str:
    return f"{ns / 1e3:,.3f} \u00b5s"


def _ms(ns: float) -> str:
    return f"{ns / 1e6:,.3f} ms"


def _uj(pj: float) -> str:
    return f"{pj / 1e6:,.3f} \u00b5J"


def _figures(plan: Plan, pipeline: dict[str, Any], resident: bool) -> str:
    """Tabulate this plan's figures beside the best any duplication reaches."""
    t, b = pipeline["totals"], pipeline["bounds"]
    chip = plan.target["chip"]["crossbars"]
    depth = -(-t["latency_ns"] // max(t["ii_ns"], 1))
    dynamic = t["energy_pj"]
    offchip = (f", off-chip {_uj(t['offchip_energy_pj'])}"
               if t.get("offchip_energy_pj") else "")
    rows: list[tuple[str, str, str, str, str]] = [
        ("images", "images", f"{t['images']:,}", _DASH,
         f"per subnet: all {len(plan.subnets)} subnets see every image"),
        ("ii_ns", "initiation interval (II)", _us(t["ii_ns"]), _us(b["best_ii_ns"]),
         f"one image enters every II: {t.get('steady_images_per_s', 0.0):,.0f} "
         "subnet-images/s in steady state; best: the lowest bound any whole-copy "
         "duplication and lane choice reaches on this chip"),
        ("ii_lower_bound_ns", "II lower bound", _us(b["ii_lower_bound_ns"]), _DASH,
         f"gap {percent(b['gap'])}: (II \u2212 bound) / II, for this plan's copies and "
         "lanes"),
        ("ii_binding", "binding resource", html.escape(str(b["ii_binding"])), _DASH,
         "what sets the bound: the busiest crossbar, the digital units or the longest "
         "operator"),
        ("latency_ns", "one-image latency", _us(t["latency_ns"]), _DASH,
         f"fill: {depth} period{'s' if depth > 1 else ''}, so up to {depth} images are in "
         "flight at once" if resident else
         "one image's pass through every segment, writes included"),
        ("makespan_ns", f"makespan for {t['images']:,} images", _ms(t["makespan_ns"]), _DASH,
         f"writing tiles {_us(t['write_ns'])} + compute {_ms(t['compute_ns'])}"),
        ("energy_pj", "dynamic energy", _uj(dynamic), _DASH,
         f"compute {_uj(t['compute_energy_pj'])}, writes {_uj(t['write_energy_pj'])}"
         f"{offchip}"),
        ("total_energy_pj", "energy with leakage",
         _uj(t.get("total_energy_pj", dynamic)), _DASH,
         f"leakage {_uj(t.get('leakage_energy_pj', 0.0))} over the makespan"),
        ("allocated_utilization", "steady-state utilisation (allocated)",
         percent(t["allocated_utilization"]), percent(b["best_allocated_utilization"]),
         f"busy crossbar-time per image over {t['crossbars_used']:,} crossbars used \u00d7 "
         "II; best: an upper bound for any duplication fitting the chip at this II"),
        ("utilization", "steady-state utilisation (chip)", percent(t["utilization"]), _DASH,
         f"over the chip's {chip:,} crossbars \u00d7 II"),
        ("busy_crossbar_ns_per_image", "busy crossbar-time per image",
         _us(t["busy_crossbar_ns_per_image"]), _DASH,
         "each MVM slot's duration \u00d7 its crossbars"),
    ]
    if "unpacked_crossbars" in b:
        rows.append(("crossbars_used", "crossbars (tiles packed)", f"{t['crossbars_used']:,}",
                     f"{b.get('packed_crossbars_lower_bound', 0):,}",
                     f"{b['unpacked_crossbars']:,} before packing; best: no packing of "
                     "these tiles uses fewer (full-size tiles, then busy time over II and "
                     "cells over a crossbar's)"))
    body = "".join(f'<tr data-pipeline="{key}"><td class=l>{label}</td><td class=v>{value}'
                   f'</td><td class=b>{best}</td><td class="l wrap">{note}</td></tr>'
                   for key, label, value, best, note in rows)
    return ('<table class="pipeline-figures"><thead><tr><th class=l>figure</th>'
            "<th>this plan</th><th>best reachable</th><th class=l>note</th></tr></thead>"
            f"<tbody>{body}</tbody></table>")


def _image_key(drawn: int) -> str:
    colors = "".join(f'<span class="key"><span class="swatch" style="background:{c}">'
                     f"</span>image {i}</span>"
                     for i, c in enumerate(IMAGE_COLORS[:min(drawn, len(IMAGE_COLORS))]))
    cycle = (f" (colours repeat every {len(IMAGE_COLORS)} images)"
             if drawn > len(IMAGE_COLORS) else "")
    return f'<div class="keys">{colors}{cycle}</div>'


def _segment_charts(plan: Plan, styles: dict[str, Style], index: int,
                    budget: int) -> str:
    assert plan.pipeline is not None
    pipeline = plan.pipeline
    segment = pipeline.segments[index]
    schedule = segment.schedule
    rows = pipeline_rows(schedule.slots)
    prefix = f"pipe{index}"
    period = period_svg(plan, schedule, rows, styles, prefix=prefix, max_bars=budget)
    images = pipeline.micro_batch if len(pipeline.segments) > 1 else pipeline.images
    fill = fill_drain_svg(schedule, images, rows, prefix=prefix, max_bars=budget)
    left_out = period.slots_total - period.slots_drawn
    cap = (f" The chart draws the {period.slots_drawn:,} longest of {period.slots_total:,} "
           f"slots (at most {budget:,}); the {left_out:,} left out last under "
           f"{_us(period.shortest_drawn_ns)} each." if left_out else "")
    rows_note = (f"One row per group of crossbars that slots share ({rows.groups:,} groups)"
                 if rows.per_row == 1 else
                 f"{rows.groups:,} groups of crossbars that slots share, {rows.per_row} "
                 f"consecutive groups per row")
    rows_note += (", then one row per digital unit used; a row is busy while any of its "
                  "crossbars or units is.")
    steady = ("The shaded period is the first in steady state: every operator works, each "
              "on its own image, exactly as in the period chart." if fill.steady_start_ns
              is not None else
              f"The pipeline holds {fill.depth} images at once; only the first "
              f"{fill.images_drawn} are drawn (at most {MAX_IMAGES_DRAWN}), so the chart "
              "shows the fill, not the steady state."
              if fill.images_drawn < fill.depth else "")
    prefetched = sum(w.prefetch for w in segment.writes)
    heading = (f"<h3>Segment {index} ({len(schedule.slots):,} operators, "
               f"{len(segment.writes) - prefetched:,} writes first"
               + (f", {prefetched:,} prefetched while the previous segment runs"
                  if prefetched else "") + ")</h3>"
               if len(pipeline.segments) > 1 else "")
    return (f"{heading}<h3>One period in steady state</h3>"
            f'<figure class="gantt-box">{period.svg}<figcaption>Every operator once, at its '
            "phase within the initiation interval (a slot running past the period's end "
            "continues at its start), coloured by subnet as the crossbar schedule above; "
            "hover a bar for its operator, phase, stage and resources. The right column is "
            "each row's busy share of the period: a row at 100% is the resource that sets "
            f"II. {rows_note}{cap}</figcaption></figure>"
            f"<h3>Fill and drain</h3>{_image_key(fill.images_drawn)}"
            f'<figure class="gantt-box">{fill.svg}<figcaption>Images 0\u2013'
            f"{fill.images_drawn - 1} of {images:,}, one colour each, entering one II apart "
            f"(dashed lines); a one-image flow spans {fill.depth} period"
            f"{'s' if fill.depth > 1 else ''}. {steady} Image 0's flow is drawn once "
            f"({fill.bars:,} bars, merged per row) and repeated for each image.</figcaption>"
            "</figure>")


def _overlap_note(seg: dict[str, Any] | None) -> str:
    """Say what the writes cost in time: exposed, and hidden behind compute."""
    if not seg or not seg["prefetched_per_pass"]:
        return ""
    return (f" {seg['prefetched_per_pass']:,} of the {seg['writes_per_pass']:,} writes of "
            "a pass are prefetched into crossbars the previous segment leaves alone, while "
            f"it computes: the writes take {_us(seg['write_exposed_ns'])} of the run's "
            f"time and {_us(seg['write_hidden_ns'])} more hide behind compute.")


def pipeline_section(plan: Plan, report: dict[str, Any], styles: dict[str, Style]) -> str:
    """Show the pipelined run's figures and charts, or say why the plan has none."""
    summary = report.get("pipeline")
    if plan.pipeline is None or summary is None:
        return (f'<section id="pipeline"><h2>{PIPELINE_TITLE}</h2><p class=note>This plan '
                "has no pipelined schedule (its <code>pipeline</code> is null): it was "
                "assembled from one batch schedule only, without the periodic schedule of "
                "many images that <code>enasa compile</code> adds, so there is no II, fill "
                "or steady state to show. Its images run layer by layer in the batch "
                "schedule above.</p></section>")
    pipeline = plan.pipeline
    segments = len(pipeline.segments)
    drawn = min(segments, MAX_SEGMENTS_DRAWN)
    budget = max(1, MAX_PERIOD_BARS // drawn)
    charts = "".join(_segment_charts(plan, styles, i, budget) for i in range(drawn))
    if segments > drawn:
        charts += (f"<p class=note>The run has {segments} segments; the charts show the "
                   f"first {drawn}.</p>")
    resident = segments == 1 and not pipeline.segments[0].writes
    how = (f"{pipeline.images:,} images run through one resident pipeline: every operator "
           "takes a new image every initiation interval, on the crossbars programmed once "
           "before image 0 (<code>pipeline.start_ns</code> = "
           f"{_us(pipeline.start_ns)})." if resident else
           f"{pipeline.images:,} images run in micro-batches of {pipeline.micro_batch:,}: "
           f"each micro-batch passes through the {segments} segment"
           f"{'s' if segments > 1 else ''} in order, each first writing its tiles into the "
           "crossbars, then pipelining the micro-batch with its own II (writes are not "
           "drawn; II below is the time per image over a whole cycle)."
           + _overlap_note(summary.get("segmented")))
    return (f'<section id="pipeline"><h2>{PIPELINE_TITLE}</h2><p class=note>{how} The '
            "figures are <code>enasa simulate --json</code>'s <code>pipeline</code>.</p>"
            f"{_figures(plan, summary, resident)}{charts}</section>")
