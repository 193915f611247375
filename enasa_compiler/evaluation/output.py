"""Write an evaluation's results: JSON, a markdown report, and matplotlib plots.

Every file is written atomically, so an interrupted run leaves either the previous
results or the new ones, never a mix of half files.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from enasa_compiler._text import plural
from enasa_compiler.atomic import json_text, write_atomic
from enasa_compiler.plan import Plan
from enasa_compiler.report._charts import utilization_figure

from ._format import (
    PAPER,
    fmt_energy,
    fmt_ratio,
    fmt_share,
    fmt_spread,
    fmt_time,
)
from ._sections import (
    claim_notes,
    cpu_section,
    nasa_section,
    paper_notes,
    ranking_section,
    utilisation_notes,
)

__all__ = ["PAPER", "markdown_report", "write_outputs"]

_BASELINES = ("single", "resident", "cpu", "nasa")
_SHORT = {"single": "(b) single", "resident": "(c) no sharing", "cpu": "(d) CPU",
          "nasa": "(e) NASA"}


def _system_table(space: dict[str, Any]) -> list[str]:
    lines = ["| system | kind | time / subnet | energy / subnet | (a) speed-up | "
             "(a) energy ratio | steady utilisation (chip) | steady utilisation "
             "(allocated) | dedup | cell writes |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    ratios = space["ratios"]
    for run in space["systems"]:
        if run["kind"] == "not measured":
            lines.append(f"| {run['label']} | not measured | - | - | - | - | - | - | - | - |")
            continue
        ratio = ratios.get(run["system"], {})
        writes = run.get("cell_writes")
        lines.append(
            f"| {run['label']} | {run['kind']} | {fmt_time(run['time_per_subnet_s'])} | "
            f"{fmt_energy(run['energy_per_subnet_j'])} | "
            f"{fmt_ratio(ratio.get('speed_up'))} | {fmt_ratio(ratio.get('energy_ratio'))} | "
            f"{fmt_share(run.get('steady_utilization'))} | "
            f"{fmt_share(run.get('allocated_steady_utilization'))} | "
            f"{fmt_ratio(run['dedup_ratio'])} | "
            f"{'-' if writes is None else format(writes, ',')} |")
    return lines


def _ablation_table(space: dict[str, Any]) -> list[str]:
    if not space["ablations"]:
        return []
    lines = ["", "Ablation: (a) with one part switched off; > 1x means the part helps.", "",
             "| variant | time / subnet | energy / subnet | slow-down vs (a) | "
             "energy vs (a) | dedup | cell writes | utilization (allocated) |",
             "|---|---|---|---|---|---|---|---|"]
    for run in space["ablations"]:
        lines.append(
            f"| {run['label']} | {fmt_time(run['time_per_subnet_s'])} | "
            f"{fmt_energy(run['energy_per_subnet_j'])} | "
            f"{fmt_ratio(run['vs_enasa']['speed_up'])} | "
            f"{fmt_ratio(run['vs_enasa']['energy_ratio'])} | "
            f"{fmt_ratio(run['dedup_ratio'])} | {run['cell_writes']:,} | "
            f"{fmt_share(run.get('allocated_steady_utilization'))} |")
    return lines


def _pair(ratios: dict[str, Any], system: str) -> str:
    ratio = ratios.get(system, {})
    return (f"{fmt_ratio(ratio.get('speed_up'))}{fmt_spread(ratio.get('speed_up_spread'))}"
            f" | {fmt_ratio(ratio.get('energy_ratio'))}"
            f"{fmt_spread(ratio.get('energy_ratio_spread'))}")


def _headline(results: dict[str, Any]) -> list[str]:
    lines = ["| space | distinct subnets | (a) over (b) time | energy | (a) over (c) time | "
             "energy | (a) over (d) CPU time | energy | (a) over (e) NASA time | energy | "
             "(f) GPU | steady utilisation of (a), allocated (chip) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, space in results["spaces"].items():
        ratios = space["ratios"]
        enasa = space["systems"][0]
        lines.append(
            f"| {name} | {space['distinct_subnets']} of {space['drawn_subnets']} drawn | "
            f"{_pair(ratios, 'single')} | {_pair(ratios, 'resident')} | "
            f"{_pair(ratios, 'cpu')} | {_pair(ratios, 'nasa')} | not measured | "
            f"{fmt_share(enasa.get('allocated_steady_utilization'))} "
            f"({fmt_share(enasa.get('steady_utilization'))}) |")
    lines.append("| paper | - | - | - | - | - | "
                 f"{PAPER['speed_up_vs_cpu_gpu']}x (vs CPU+GPU) | "
                 f"{PAPER['energy_ratio_vs_cpu_gpu']:g}x (vs CPU+GPU) | "
                 f"{PAPER['speed_up_vs_nasa']}x | {PAPER['energy_ratio_vs_nasa']:g}x | "
                 "(in CPU+GPU) | > 90% |")
    return lines


def _scaling_table(name: str, scaling: dict[str, Any]) -> list[str]:
    lines = ["", f"Scaling, {name}: compile time by stage and modeled makespan vs group "
             "size (pipelined makespan, N images).", "",
             "| G | operators | compile (s) | frontend | passes | lower | "
             "mapping | cost | makespan / subnet | utilization (allocated) | dedup |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in scaling["group_size"]:
        dedup = row["macs_before"] / row["macs_after"] if row["macs_after"] else None
        lines.append(
            f"| {row['group_size']} | {row['operators']} | {row['compile_s']:.2f} | "
            f"{row['frontend_s']:.2f} | {row['passes_s']:.2f} | {row['lower_s']:.2f} | "
            f"{row['mapping_s']:.3f} | {row['cost_s']:.3f} | "
            f"{fmt_time(row['makespan_per_subnet_ns'] / 1e9)} | "
            f"{fmt_share(row.get('pipeline_allocated_utilization'))} | "
            f"{fmt_ratio(dedup)} |")
    lines += ["", f"Chip capacity, {name} (G = {scaling['capacity_group']}):", "",
              "| crossbars | x needed | mode | makespan | cell writes |",
              "|---|---|---|---|---|"]
    for row in scaling["capacity"]:
        if "error" in row:
            lines.append(f"| {row['crossbars']} | {row['capacity_factor']} | does not fit "
                         f"| - | - |")
            continue
        lines.append(f"| {row['crossbars']} | {row['capacity_factor']} | {row['mode']} | "
                     f"{fmt_time(row['pipeline_makespan_ns'] / 1e9)} | "
                     f"{row['cell_writes']:,} |")
    return lines


def markdown_report(results: dict[str, Any]) -> str:
    """Render the results for people: headline, per-space tables, claims, notes."""
    config = results["config"]
    lines = [
        "# ENASA evaluation",
        "",
        f"Command: `{results['command']}`",
        "",
        f"Workload per space: {plural(config['generations'], 'generation')} of "
        f"{plural(config['group_size'], 'subnet')} drawn by the stage-wise sampler from the "
        f"full-size supernet ({config['input_size']}x{config['input_size']}, "
        f"{plural(config['num_classes'], 'class', 'classes')}, seeded random weights). "
        "**Each distinct architecture is counted once**: the sampler is asked for children "
        "not seen before and any repeat left (in its generation or an earlier one) is "
        "dropped from the workload, so every flow is charged per distinct subnet. Each "
        f"subnet is evaluated on N = {config['images']:,} images"
        f"{' (the paper' + chr(39) + 's setting)' if config['images'] == 10_000 else ''}, "
        "from the plans' pipelined schedules (the plans model the N images; none is "
        f"executed). Target: `{results['target']['name']}` "
        f"({plural(results['target']['crossbars'], 'crossbar')}); weight duplication "
        f"`{config['duplicate']}` and solver `{config['solver']}` for every crossbar flow.",
        "",
        "**Rows.** *modeled*: a cost model, no measurement. (a) ENASA flow: each "
        "generation's distinct subnets compiled as one group (merged, deduplicated, OPS, "
        "weights resident with throughput-balanced copies, online mapping from the previous "
        "generation's crossbars), N images pipelined; time and energy are the pipeline's "
        "makespan and energy (compute, writes, off-chip) plus the chip's leakage over the "
        "makespan, every plan validated. (b) the strongest single-network CIM flow this "
        "compiler makes: each distinct subnet compiled alone on the same target with the "
        "same pipelining, throughput duplication and digital lanes, programmed subnet by "
        "subnet (all its writes counted every time), N images each, one after another. "
        "(c) (a) without sharing: `dedup_operators=False`. (e) NASA (ISCA 2021) modeled "
        "from stated figures (section below). *estimated*: (d) the CPU, measured here on "
        "a few images per subnet and extrapolated per image to N; its energy as its label "
        "says. (f) GPU: not measured (no GPU on this machine; `bench/gpu_baseline.py` "
        "measures one).",
        "",
        "## Headline: ratios of (a) over each baseline (> 1x: (a) is better)",
        "",
        *_headline(results),
        "",
        "## Paper claims",
        "",
        *claim_notes(results),
    ]
    for name, space in results["spaces"].items():
        lines += ["", f"## {name}", "", *_system_table(space), *_ablation_table(space),
                  "", *utilisation_notes(space)]
    lines += ranking_section(results)
    lines += nasa_section(results)
    lines += cpu_section(results)
    for name, scaling in results["scaling"].items():
        lines += ["", f"## Scaling ({name})", *_scaling_table(name, scaling)]
    lines += ["", "## Notes", "", *paper_notes(results), ""]
    return "\n".join(lines)


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def speedup_figure(results: dict[str, Any]) -> Figure:
    """Speed-up and energy ratio of (a) over each baseline, per space (log scale)."""
    spaces = list(results["spaces"])
    fig = Figure(figsize=(9, 3.8), layout="constrained")
    axes = fig.subplots(1, 2)
    width = 0.8 / max(1, len(spaces))
    for ax, key, title in ((axes[0], "speed_up", "speed-up of (a)"),
                           (axes[1], "energy_ratio", "energy ratio of (a)")):
        baselines = [b for b in _BASELINES
                     if any(b in results["spaces"][s]["ratios"] for s in spaces)]
        for i, space in enumerate(spaces):
            ratios = results["spaces"][space]["ratios"]
            values = [ratios.get(b, {}).get(key) or 0.0 for b in baselines]
            positions = [j + i * width for j in range(len(baselines))]
            bars = ax.bar(positions, values, width, label=space)
            ax.bar_label(bars, labels=[f"{v:.3g}x" if v else "-" for v in values],
                         fontsize=7)
        ax.set_xticks([j + width * (len(spaces) - 1) / 2 for j in range(len(baselines))],
                      [_SHORT[b] for b in baselines], fontsize=7)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.axhline(1.0, color="#888888", linewidth=0.8)
        ax.set_title(title, loc="left")
        ax.legend(fontsize=8, frameon=False)
    return fig


def scaling_figure(results: dict[str, Any]) -> Figure:
    """Makespan per subnet, compile time and utilization vs G; makespan vs capacity."""
    fig = Figure(figsize=(10, 6.5), layout="constrained")
    (ax_make, ax_compile), (ax_util, ax_cap) = fig.subplots(2, 2)
    for name, scaling in results["scaling"].items():
        rows = scaling["group_size"]
        sizes = [r["group_size"] for r in rows]
        ax_make.plot(sizes, [r["makespan_per_subnet_ns"] / 1e6 for r in rows], "o-",
                     label=name)
        ax_compile.plot(sizes, [r["compile_s"] for r in rows], "o-", label=f"{name} total")
        ax_compile.plot(sizes, [r["mapping_s"] for r in rows], "x--",
                        label=f"{name} mapping")
        ax_util.plot(sizes, [r.get("pipeline_allocated_utilization") or 0.0 for r in rows],
                     "o-", label=name)
        fits = [r for r in scaling["capacity"] if "error" not in r]
        ax_cap.plot([r["crossbars"] for r in fits],
                    [r["pipeline_makespan_ns"] / 1e6 for r in fits],
                    "o-", label=name)
    for ax, ylabel, title in (
            (ax_make, "ms per subnet (N images)", "modeled makespan per subnet"),
            (ax_compile, "seconds", "compile time"),
            (ax_util, "busy share", "utilization of allocated crossbars"),
            (ax_cap, "ms (N images)", "makespan vs crossbars on chip")):
        ax.set_ylabel(ylabel)
        ax.set_title(title, loc="left")
        ax.grid(color="#e6e6e6", linewidth=0.6)
        ax.legend(fontsize=8, frameon=False)
    for ax in (ax_make, ax_compile, ax_util):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("group size G")
    ax_cap.set_xlabel("crossbars")
    return fig


def write_outputs(out: Path, results: dict[str, Any], plans: dict[str, Plan]) -> None:
    """Write results.json, results.md and the PNG plots into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "results.json", json_text(results, "results.json", indent=1) + "\n")
    write_atomic(out / "results.md", markdown_report(results))
    write_atomic(out / "speedup.png", _png(speedup_figure(results)))
    if results["scaling"]:
        write_atomic(out / "scaling.png", _png(scaling_figure(results)))
    enasa_plans = [plan for key, plan in plans.items() if key.endswith("/enasa")]
    if enasa_plans:
        write_atomic(out / "utilization.png", _png(utilization_figure(enasa_plans[0])))
