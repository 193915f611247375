"""Cost reports of a plan: per plan, per subnet and per operator kind.

A subnet's *latency* is the span from the group's first event to the end of the
last operator serving it (what a user waiting for that subnet's answer sees). Its
*energy* is given two ways: the energy of every operator it uses (what it would
cost alone with this mapping) and the energy *attributed* to it, where a
compute-shared operator's energy is split evenly among its subnets and writes are
split evenly among all subnets; attributed energies add up to the plan's total.
"""

from __future__ import annotations

import logging
from typing import Any

from enasa_compiler.ir import OpKind
from enasa_compiler.plan import Plan

logger = logging.getLogger(__name__)

__all__ = ["cost_report", "format_cost_report"]


def cost_report(plan: Plan) -> dict[str, Any]:
    """Summarise a plan's costs as JSON-ready data."""
    ends = {e.op: e.end_ns for e in plan.compute}
    starts = [e.start_ns for e in plan.compute] + [e.start_ns for e in plan.program]
    origin_ns = min(starts) if starts else 0
    group_size = len(plan.subnets)
    write_share = plan.totals.write_energy_pj / group_size if group_size else 0.0
    subnets = []
    for info in plan.subnets:
        used = [op for op in plan.operators if info.index in op.subnets]
        subnets.append({
            "index": info.index,
            "name": info.name,
            "operators": len(used),
            "shared_operators": sum(1 for op in used if len(op.subnets) > 1),
            "macs": sum(op.macs for op in used),
            "latency_ns": max((ends[op.id] for op in used if op.id in ends),
                              default=origin_ns) - origin_ns,
            "energy_pj": sum(op.energy_pj for op in used),
            "attributed_energy_pj": write_share + sum(op.energy_pj / len(op.subnets)
                                                      for op in used),
        })
    by_kind: dict[str, dict[str, float]] = {}
    for op in plan.operators:
        entry = by_kind.setdefault(op.kind.value, {"operators": 0, "energy_pj": 0.0})
        entry["operators"] += 1
        entry["energy_pj"] += op.energy_pj
    totals = dict(plan.totals.__dict__)
    makespan_s = plan.totals.makespan_ns * 1e-9
    totals["images_per_s"] = plan.batch * group_size / makespan_s if makespan_s else 0.0
    totals["energy_per_image_pj"] = (plan.totals.energy_pj / (plan.batch * group_size)
                                     if group_size else 0.0)
    return {
        "target": plan.target.get("name", "?"),
        "mode": plan.mode,
        "solver": plan.solver,
        "batch": plan.batch,
        "totals": totals,
        "dedup": dict(plan.dedup),
        "by_kind": by_kind,
        "mvm_operators": sum(1 for op in plan.operators if op.kind is OpKind.MVM),
        "bounds": dict(plan.bounds),
        "subnets": subnets,
    }


def format_cost_report(report: dict[str, Any]) -> str:
    """Render :func:`cost_report` as a plain-text table."""
    t = report["totals"]
    lines = [
        f"target {report['target']}, {report['mode']} mapping, solver {report['solver']}, "
        f"batch {report['batch']}",
        f"makespan        {t['makespan_ns'] / 1e3:12.2f} us",
        f"energy          {t['energy_pj'] / 1e6:12.4f} uJ  (compute "
        f"{t['compute_energy_pj'] / 1e6:.4f}, writes {t['write_energy_pj'] / 1e6:.4f})",
        f"cell writes     {t['cell_writes']:12d}",
        f"crossbars used  {t['crossbars_used']:12d}",
        f"utilization     {t['utilization']:12.2%}  (of allocated crossbars "
        f"{t['allocated_utilization']:.2%}, spatial {t['spatial_utilization']:.2%})",
        f"throughput      {t['images_per_s']:12.1f} subnet-images/s",
    ]
    bounds = report.get("bounds", {})
    if "lower_bound_ns" in bounds:
        lines.append(f"lower bound     {bounds['lower_bound_ns'] / 1e3:12.2f} us  (gap "
                     f"{bounds['gap']:.2%}; CP-SAT {bounds.get('solver_status', 'not run')})")
    lines += [
        "",
        f"{'subnet':<14}{'ops':>6}{'shared':>8}{'MMACs':>10}{'latency us':>13}"
        f"{'energy uJ':>12}{'attrib. uJ':>12}",
    ]
    for s in report["subnets"]:
        lines.append(
            f"{s['name'][:13]:<14}{s['operators']:>6}{s['shared_operators']:>8}"
            f"{s['macs'] / 1e6:>10.2f}{s['latency_ns'] / 1e3:>13.2f}"
            f"{s['energy_pj'] / 1e6:>12.4f}{s['attributed_energy_pj'] / 1e6:>12.4f}"
        )
    return "\n".join(lines)
