"""Cost reports of a plan: per plan, per subnet, per operator kind and per component.

A subnet's *latency* is the span from the group's first event to the end of the
last operator serving it (what a user waiting for that subnet's answer sees). Its
*energy* is given two ways: the energy of every operator it uses (what it would
cost alone with this mapping) and the energy *attributed* to it, where a
compute-shared operator's energy is split evenly among its subnets and writes are
split evenly among all subnets; attributed energies add up to the plan's dynamic
total. Leakage (static power over the makespan) is reported apart from dynamic
energy, as NeuroSim does; :mod:`enasa_compiler.simulate.breakdown` adds the energy by
component, the per-operator table and the chip's area and peak figures.
"""

from __future__ import annotations

import logging
from typing import Any

from enasa_compiler._text import column_width, plural
from enasa_compiler.ir import OpKind
from enasa_compiler.plan import Plan
from enasa_compiler.plan.totals import pipeline_write_ns
from enasa_compiler.simulate import breakdown as rb
from enasa_compiler.targets import power
from enasa_compiler.targets.target import Target, target_from_dict

logger = logging.getLogger(__name__)

__all__ = ["check_plan_target", "cost_report", "format_cost_report"]

_OPS_PER_MAC = 2


def check_plan_target(plan: Plan, where: str = "plan") -> Target:
    """Parse a plan's embedded target.

    Raises:
        InputError: naming the offending field, as for a target file.

    """
    return target_from_dict(plan.target, origin=f"{where}: embedded target")


def _subnet_rows(plan: Plan, origin_ns: int, crossbar_cells: int) -> list[dict[str, Any]]:
    ends = {e.op: e.end_ns for e in plan.compute}
    busy = {e.op: (e.end_ns - e.start_ns) * len({p.crossbar for p in e.placements})
            for e in plan.compute}
    tiles = plan.tiles()
    tiles_of = {w.id: w.tiles for w in plan.weights}
    group_size = len(plan.subnets)
    write_share = plan.totals.write_energy_pj / group_size if group_size else 0.0
    chip = plan.target.get("chip", {}).get("crossbars", 0)
    rows = []
    for info in plan.subnets:
        used = [op for op in plan.operators if info.index in op.subnets]
        latency_ns = max((ends[op.id] for op in used if op.id in ends),
                         default=origin_ns) - origin_ns
        held = {t.id for op in used for w in op.weights for t in tiles_of.get(w, ())}
        rows.append({
            "index": info.index,
            "name": info.name,
            "operators": len(used),
            "shared_operators": sum(1 for op in used if len(op.subnets) > 1),
            "macs": sum(op.macs for op in used),
            "latency_ns": latency_ns,
            "energy_pj": sum(op.energy_pj for op in used),
            "attributed_energy_pj": write_share + sum(op.energy_pj / len(op.subnets)
                                                      for op in used),
            "utilization": (sum(busy.get(op.id, 0) for op in used) / (chip * latency_ns)
                            if chip and latency_ns else 0.0),
            "spatial_utilization": (sum(tiles[t].cells for t in held)
                                    / (len(held) * crossbar_cells) if held else 0.0),
        })
    return rows


def cost_report(plan: Plan, *, breakdown: bool = False) -> dict[str, Any]:
    """Summarise a plan's costs as JSON-ready data.

    Args:
        plan: a valid plan (its embedded target must parse).
        breakdown: add ``operators``, one row per operator (per layer).

    """
    target = check_plan_target(plan)
    starts = [e.start_ns for e in plan.compute] + [e.start_ns for e in plan.program]
    origin_ns = min(starts) if starts else 0
    group_size = len(plan.subnets)
    by_kind: dict[str, dict[str, float]] = {}
    for op in plan.operators:
        entry = by_kind.setdefault(op.kind.value, {"operators": 0, "energy_pj": 0.0})
        entry["operators"] += 1
        entry["energy_pj"] += op.energy_pj
    components = rb.component_energy(plan, target)
    leakage_pj = components["leakage"]
    images = plan.batch * group_size
    totals = dict(plan.totals.__dict__)
    makespan_s = plan.totals.makespan_ns * 1e-9
    total_pj = plan.totals.energy_pj + leakage_pj
    ops = _OPS_PER_MAC * plan.totals.macs * plan.batch
    totals.update(
        leakage_energy_pj=leakage_pj,
        total_energy_pj=total_pj,
        write_share=plan.totals.write_energy_pj / total_pj if total_pj else 0.0,
        images_per_s=images / makespan_s if makespan_s else 0.0,
        group_runs_per_s=1 / makespan_s if makespan_s else 0.0,
        energy_per_image_pj=plan.totals.energy_pj / images if images else 0.0,
        total_energy_per_image_pj=total_pj / images if images else 0.0,
        effective_tops=ops / plan.totals.makespan_ns / 1e3 if plan.totals.makespan_ns else 0.0,
        effective_tops_per_w=ops / total_pj if total_pj else 0.0,  # ops/pJ = TOPS/W
        **rb.write_times(plan),
    )
    report: dict[str, Any] = {
        "target": plan.target.get("name", "?"),
        "mode": plan.mode,
        "solver": plan.solver,
        "batch": plan.batch,
        "totals": totals,
        "dedup": dict(plan.dedup),
        "by_kind": by_kind,
        "mvm_operators": sum(1 for op in plan.operators if op.kind is OpKind.MVM),
        "duplicated_operators": sum(1 for op in plan.operators if op.copies > 1),
        "bounds": dict(plan.bounds),
        "subnets": _subnet_rows(plan, origin_ns, target.crossbar.cells),
        "components_pj": components,
        "shares": rb.shares(components),
        "chip": rb.chip_summary(target),
    }
    report["pipeline"] = _pipeline_report(plan, target)
    if breakdown:
        report["operators"] = rb.operator_rows(plan, target)
    return report


def _pipeline_report(plan: Plan, target: Target) -> dict[str, Any] | None:
    """Summarise the pipelined run of N images: II, bound, gap, makespan, energy, use."""
    if plan.pipeline is None:
        return None
    totals = dict(plan.pipeline.totals.__dict__)
    makespan_s = totals["makespan_ns"] * 1e-9
    leakage_pj = power.static_power_mw(target) * totals["makespan_ns"]  # mW x ns = pJ
    images = totals["images"] * len(plan.subnets)
    totals.update(
        leakage_energy_pj=leakage_pj,
        total_energy_pj=totals["energy_pj"] + leakage_pj,
        images_per_s=images / makespan_s if makespan_s else 0.0,
        steady_images_per_s=len(plan.subnets) / (totals["ii_ns"] * 1e-9),
        total_energy_per_image_pj=(totals["energy_pj"] + leakage_pj) / images,
        write_time_share=totals["write_ns"] / totals["makespan_ns"]
        if totals["makespan_ns"] else 0.0,
    )
    result: dict[str, Any] = {"totals": totals, "bounds": dict(plan.pipeline.bounds)}
    segments = plan.pipeline.segments
    if len(segments) > 1 or any(seg.writes for seg in segments):
        times = pipeline_write_ns(segments, plan.pipeline.images, plan.pipeline.micro_batch)
        result["segmented"] = {
            "segments": len(segments),
            "micro_batch": plan.pipeline.micro_batch,
            "writes_per_pass": sum(len(seg.writes) for seg in segments),
            "prefetched_per_pass": sum(w.prefetch for seg in segments for w in seg.writes),
            "write_total_ns": times["total_ns"],
            "write_exposed_ns": times["exposed_ns"],
            "write_hidden_ns": times["hidden_ns"],
        }
    return result


def format_cost_report(report: dict[str, Any]) -> str:
    """Render :func:`cost_report` as plain-text tables."""
    t = report["totals"]
    lines = [
        f"target {report['target']}, {report['mode']} mapping, solver {report['solver']}, "
        f"batch {report['batch']}",
        f"makespan        {t['makespan_ns'] / 1e3:12.2f} us",
        f"energy          {t['energy_pj'] / 1e6:12.4f} uJ  dynamic (compute "
        f"{t['compute_energy_pj'] / 1e6:.4f}, writes {t['write_energy_pj'] / 1e6:.4f})"
        f" + leakage {t['leakage_energy_pj'] / 1e6:.4f} = {t['total_energy_pj'] / 1e6:.4f} uJ",
        f"write share     {t['write_share']:12.2%}  (cell programming / total energy)",
        f"cell writes     {t['cell_writes']:12d}",
        f"crossbars used  {t['crossbars_used']:12d}"
        + (f"  ({plural(report['duplicated_operators'], 'operator')} with duplicated "
           "weights)"
           if report.get("duplicated_operators") else ""),
        f"utilization     {t['utilization']:12.2%}  (of allocated crossbars "
        f"{t['allocated_utilization']:.2%}, spatial {t['spatial_utilization']:.2%})",
        f"throughput      {t['images_per_s']:12.1f} subnet-images/s (FPS); "
        f"{t['total_energy_per_image_pj'] / 1e6:.4f} uJ per image with leakage",
        f"effective       {t['effective_tops']:12.4f} TOPS  "
        f"({t['effective_tops_per_w']:.4f} TOPS/W with leakage)",
    ]
    bounds = report.get("bounds", {})
    if "lower_bound_ns" in bounds:
        lines.append(f"lower bound     {bounds['lower_bound_ns'] / 1e3:12.2f} us  (gap "
                     f"{bounds['gap']:.2%}; CP-SAT {bounds.get('solver_status', 'not run')})")
    lines += _format_pipeline(report.get("pipeline"))
    lines += rb.format_components(report["components_pj"], report["shares"])
    lines += rb.format_chip(report["chip"])
    name_width = column_width(["subnet", *(row["name"] for row in report["subnets"])], 14)
    lines += [
        "",
        f"{'subnet':<{name_width}}{'ops':>6}{'shared':>8}{'MMACs':>10}{'latency us':>13}"
        f"{'energy uJ':>12}{'attrib. uJ':>12}{'util.':>8}{'spatial':>9}",
    ]
    for s in report["subnets"]:
        lines.append(
            f"{s['name']:<{name_width}}{s['operators']:>6}{s['shared_operators']:>8}"
            f"{s['macs'] / 1e6:>10.2f}{s['latency_ns'] / 1e3:>13.2f}"
            f"{s['energy_pj'] / 1e6:>12.4f}{s['attributed_energy_pj'] / 1e6:>12.4f}"
            f"{s['utilization']:>8.2%}{s['spatial_utilization']:>9.2%}"
        )
    if "operators" in report:
        lines += rb.format_breakdown(report["operators"])
    return "\n".join(lines)


def _format_pipeline(pipeline: dict[str, Any] | None) -> list[str]:
    if pipeline is None:
        return ["pipelined       none (dynamic mapping runs layer by layer)"]
    t, b = pipeline["totals"], pipeline["bounds"]
    return [
        "",
        f"pipelined run of {t['images']:,} images per subnet (one image enters every II)",
        f"II              {t['ii_ns'] / 1e3:12.3f} us  (lower bound "
        f"{b['ii_lower_bound_ns'] / 1e3:.3f} us, gap {b['gap']:.2%}, bound set by "
        f"{b['ii_binding']}; best any duplication reaches {b['best_ii_ns'] / 1e3:.3f} us)",
        f"one image       {t['latency_ns'] / 1e3:12.2f} us  through the pipeline",
        f"makespan        {t['makespan_ns'] / 1e6:12.3f} ms  (writes "
        f"{t['write_ns'] / 1e3:.1f} us, {t['write_time_share']:.4%}; compute "
        f"{t['compute_ns'] / 1e6:.3f} ms)",
        f"energy          {t['energy_pj'] / 1e6:12.3f} uJ  dynamic (compute "
        f"{t['compute_energy_pj'] / 1e6:.3f}, writes {t['write_energy_pj'] / 1e6:.3f}) + "
        f"leakage {t['leakage_energy_pj'] / 1e6:.3f} = {t['total_energy_pj'] / 1e6:.3f} uJ",
        f"steady state    {t['allocated_utilization']:12.2%}  of allocated crossbars "
        f"({t['crossbars_used']}; best any duplication reaches at most "
        f"{b['best_allocated_utilization']:.2%}), {t['utilization']:.2%} of the chip",
        f"throughput      {t['steady_images_per_s']:12.1f} subnet-images/s in steady state",
        *([f"tile packing    {b['unpacked_crossbars']:12,d}  crossbars before packing, "
           f"{t['crossbars_used']:,} after (no packing uses fewer than "
           f"{b.get('packed_crossbars_lower_bound', 0):,}; the duplication bound above is "
           "for unpacked crossbars)"]
          if "unpacked_crossbars" in b else []),
        *_format_segmented(pipeline.get("segmented")),
    ]


def _format_segmented(seg: dict[str, Any] | None) -> list[str]:
    if seg is None:
        return []
    return [
        f"segments        {seg['segments']:12d}  run one after another for every "
        f"micro-batch of {seg['micro_batch']:,} images; {seg['writes_per_pass']:,} tile "
        f"writes per pass, {seg['prefetched_per_pass']:,} prefetched while the previous "
        "segment computes",
        f"write time      {seg['write_exposed_ns'] / 1e3:12.1f} us  exposed, "
        f"{seg['write_hidden_ns'] / 1e3:.1f} us hidden behind compute (of "
        f"{seg['write_total_ns'] / 1e3:.1f} us one segment at a time)",
    ]
