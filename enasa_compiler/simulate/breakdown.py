"""NeuroSim-style breakdowns of a plan: energy by component, per operator, the chip.

NeuroSim reports, per layer, read latency, dynamic energy, leakage, the buffer and
interconnect shares and the ADC/accumulation split, and for the chip the area
breakdown, TOPS, TOPS/W, TOPS/mm^2 and FPS. This module computes the same from a plan
and its embedded target with the cost model, so every figure re-derives from the
plan: per-operator energies by component sum to the operator's recorded energy.

Leakage is static power times time. The plan's leakage is the chip's static power
over the makespan; an operator is charged the static power of the hardware it holds
(its crossbars with their share of PE and tile, or its digital unit) while it runs;
what is left is idle leakage.
"""

from __future__ import annotations

import logging
from typing import Any

from enasa_compiler._text import column_width, plural
from enasa_compiler.ir import CostTable, MvmOp
from enasa_compiler.passes.price import price_operators
from enasa_compiler.plan import Plan
from enasa_compiler.targets import area, power, throughput
from enasa_compiler.targets.cost import (
    ACCUMULATION,
    ARRAY,
    BUFFER,
    CONVERSION,
    INTERCONNECT,
)
from enasa_compiler.targets.target import Target

logger = logging.getLogger(__name__)

__all__ = ["COMPONENT_GROUPS", "GROUP_LABELS", "chip_summary", "component_energy",
           "format_breakdown", "format_chip", "format_components", "operator_rows",
           "plan_costs", "write_times"]

# Component groups of the shares line, in the order NeuroSim lists them.
_GROUPS = {
    "array": ARRAY,
    "adc_dac_sample_hold": CONVERSION,
    "accumulation": ACCUMULATION,
    "buffer": BUFFER,
    "interconnect": INTERCONNECT,
    "digital": ("digital",),
    "write": ("write", "verify", "write_bus", "write_router"),
    "leakage": ("leakage",),
}
_LABELS = {"adc_dac_sample_hold": "ADC+DAC+S&H", "write": "writes"}
COMPONENT_GROUPS = _GROUPS
"""Component group -> the ``components_pj`` keys it sums (the ``shares`` groups)."""
GROUP_LABELS = _LABELS
"""Display names of the groups whose key is not already readable."""


def plan_costs(plan: Plan, target: Target) -> CostTable:
    """Price a plan's operators and tiles from its own records, as the compile did."""
    return price_operators([plan.to_ir_op(op) for op in plan.operators],
                           plan.tiles().values(), target, plan.batch)


def component_energy(plan: Plan, target: Target) -> dict[str, float]:
    """Plan energy per component in pJ: compute, programming and leakage.

    Programming's bus and router traffic is kept apart (``write_bus``,
    ``write_router``) so the write share counts everything programming costs.
    """
    totals: dict[str, float] = {}
    costs = plan_costs(plan, target)
    for cost in costs.operators.values():
        for key, pj in cost.breakdown_pj.items():
            totals[key] = totals.get(key, 0.0) + pj
    for event in plan.program:
        write = costs.writes.get(event.tile)
        if write is None:
            continue
        for key, pj in write.breakdown_pj.items():
            name = key if key in ("write", "verify") else f"write_{key}"
            totals[name] = totals.get(name, 0.0) + pj
    totals["leakage"] = leakage_pj(plan, target)
    return totals


def write_times(plan: Plan) -> dict[str, int]:
    """Time spent programming crossbars, in ns, two ways.

    ``write_time_ns`` is wall-clock time during which at least one crossbar is being
    written (what a resident plan's start-up or a dynamic plan's reloading costs in
    time); ``write_crossbar_ns`` is crossbar-time spent writing, comparable with the
    totals' ``busy_crossbar_ns`` for computing.
    """
    wall_ns = 0
    reach_ns: int | None = None
    for start, end in sorted((e.start_ns, e.end_ns) for e in plan.program):
        if reach_ns is None or start > reach_ns:
            wall_ns += end - start
            reach_ns = end
        elif end > reach_ns:
            wall_ns += end - reach_ns
            reach_ns = end
    return {"write_time_ns": wall_ns,
            "write_crossbar_ns": sum(e.end_ns - e.start_ns for e in plan.program)}


def leakage_pj(plan: Plan, target: Target) -> float:
    """Return the static energy of the whole chip over the makespan (mW x ns = pJ)."""
    return power.static_power_mw(target) * plan.totals.makespan_ns


def shares(components: dict[str, float]) -> dict[str, float]:
    """Each component group's fraction of the total energy (leakage included)."""
    total = sum(components.values())
    return {group: (sum(components.get(k, 0.0) for k in keys) / total if total else 0.0)
            for group, keys in _GROUPS.items()}


def operator_rows(plan: Plan, target: Target) -> list[dict[str, Any]]:
    """One row per operator: latency split, dynamic energy by component, leakage, cells."""
    events = {e.op: e for e in plan.compute}
    per_crossbar_mw = power.static_power_per_crossbar_mw(target)
    unit_mw = target.chip.digital_unit.leakage_mw
    crossbar_cells = target.crossbar.cells
    rows = []
    costs = plan_costs(plan, target)
    for op in plan.operators:
        ir_op = plan.to_ir_op(op)
        cost = costs.operators[op.id]
        event = events.get(op.id)
        busy_ns = event.end_ns - event.start_ns if event else cost.latency_ns
        row: dict[str, Any] = {
            "id": op.id, "op_type": op.op_type, "kind": op.kind.value, "layer": op.layer,
            "subnets": list(op.subnets), "start_ns": event.start_ns if event else None,
            "latency_ns": cost.latency_ns, "energy_pj": cost.energy_pj,
            "components_pj": dict(cost.breakdown_pj), "macs": op.macs,
        }
        if isinstance(ir_op, MvmOp):
            tiles = ir_op.tiles
            row.update(
                crossbars=len(tiles), copies=ir_op.copies, read_ns=cost.read_ns,
                sensing_ns=cost.mvm_time_ns(ir_op.copies) - cost.read_ns,
                leakage_pj=per_crossbar_mw * len(tiles) * busy_ns,
                spatial_utilization=(sum(t.cells for t in tiles)
                                     / (len(tiles) * crossbar_cells)),
            )
        else:
            row.update(crossbars=0, copies=1, read_ns=0.0, sensing_ns=0.0,
                       leakage_pj=unit_mw * busy_ns, spatial_utilization=None)
        rows.append(row)
    return rows


def chip_summary(target: Target) -> dict[str, Any]:
    """Describe the target: hierarchy, area breakdown, peak power and efficiency."""
    return {
        "name": target.name,
        "tiles": target.tiles, "pes": target.pes, "crossbars": target.chip.crossbars,
        "pes_per_tile": target.tile.pes_per_tile,
        "crossbars_per_pe": target.pe.crossbars_per_pe,
        "area_mm2": area.chip_area_mm2(target),
        "area_breakdown_mm2": area.area_breakdown_mm2(target),
        "pe_area_mm2": area.pe_area_mm2(target),
        "tile_area_mm2": area.tile_area_mm2(target),
        "pe_power_mw": power.pe_power_mw(target),
        "tile_power_mw": power.tile_power_mw(target),
        "peak_power_w": power.chip_power_w(target),
        "static_power_mw": power.static_power_mw(target),
        "peak_tops": throughput.peak_tops(target),
        "tops_per_w": throughput.tops_per_w(target),
        "tops_per_mm2": throughput.tops_per_mm2(target),
    }


# ---- text --------------------------------------------------------------------------
def format_components(components: dict[str, float],
                      group_shares: dict[str, float]) -> list[str]:
    """Lines of the energy-by-component table and the shares line."""
    total = sum(components.values())
    lines = ["", f"{'energy by component':<24}{'uJ':>12}{'share':>9}"]
    for key, pj in sorted(components.items(), key=lambda kv: -kv[1]):
        if pj > 0:
            lines.append(f"{key:<24}{pj / 1e6:>12.4f}{pj / total if total else 0:>9.2%}")
    named = ", ".join(f"{_LABELS.get(g, g)} {s:.1%}" for g, s in group_shares.items())
    lines.append(f"shares: {named}")
    adc = components.get("adc", 0.0)
    accumulation = sum(components.get(k, 0.0) for k in ACCUMULATION)
    if adc + accumulation:
        lines.append(f"ADC vs accumulation: {adc / (adc + accumulation):.1%} / "
                     f"{accumulation / (adc + accumulation):.1%}")
    return lines


def format_chip(chip: dict[str, Any]) -> list[str]:
    """Lines describing the chip: hierarchy, area breakdown, peak figures."""
    parts = sorted(chip["area_breakdown_mm2"].items(), key=lambda kv: -kv[1])
    total = chip["area_mm2"]
    listed = ", ".join(f"{k} {v / total:.1%}" for k, v in parts if v > 0 and total)
    return [
        "",
        f"chip {chip['name']}: {plural(chip['tiles'], 'tile')} x "
        f"{plural(chip['pes_per_tile'], 'PE')} x "
        f"{plural(chip['crossbars_per_pe'], 'crossbar')} "
        f"({plural(chip['crossbars'], 'crossbar')})",
        f"area            {total:12.3f} mm^2  (tile {chip['tile_area_mm2']:.4f}, PE "
        f"{chip['pe_area_mm2']:.5f}; {listed})",
        f"peak power      {chip['peak_power_w']:12.3f} W     (tile "
        f"{chip['tile_power_mw']:.2f} mW, PE {chip['pe_power_mw']:.3f} mW, static "
        f"{chip['static_power_mw']:.1f} mW)",
        f"peak            {chip['peak_tops']:12.2f} TOPS  ({chip['tops_per_w']:.3f} TOPS/W, "
        f"{chip['tops_per_mm2']:.3f} TOPS/mm^2)",
    ]


def format_breakdown(rows: list[dict[str, Any]]) -> list[str]:
    """Render the per-operator (per-layer) table, in schedule order.

    Operator ids of a merged group differ only in their tails (``s3/...``), and op types
    are what a reader scans for, so both columns are as wide as their longest entry.
    """
    id_width = column_width(["operator", *(r["id"] for r in rows)], 28)
    type_width = column_width(["type", *(r["op_type"] for r in rows)], 10)
    lines = ["", f"{'operator':<{id_width}}{'type':<{type_width}}{'xbars':>6}{'copies':>7}"
                 f"{'latency ns':>12}{'read ns':>10}{'sense ns':>10}{'dyn. nJ':>10}"
                 f"{'ADC nJ':>9}{'acc. nJ':>9}{'buf. nJ':>9}{'IC nJ':>8}{'leak. nJ':>10}"]
    ordered = sorted(rows, key=lambda r: (r["start_ns"] is None, r["start_ns"] or 0, r["id"]))
    for r in ordered:
        c = r["components_pj"]
        buffers = sum(c.get(k, 0.0) for k in BUFFER)
        links = sum(c.get(k, 0.0) for k in INTERCONNECT)
        accumulate = sum(c.get(k, 0.0) for k in ACCUMULATION)
        lines.append(
            f"{r['id']:<{id_width}}{r['op_type']:<{type_width}}{r['crossbars']:>6}"
            f"{r['copies']:>7}"
            f"{r['latency_ns']:>12}{r['read_ns']:>10.0f}{r['sensing_ns']:>10.0f}"
            f"{r['energy_pj'] / 1e3:>10.3f}{c.get('adc', 0.0) / 1e3:>9.3f}"
            f"{accumulate / 1e3:>9.3f}{buffers / 1e3:>9.3f}{links / 1e3:>8.3f}"
            f"{r['leakage_pj'] / 1e3:>10.3f}")
    return lines
