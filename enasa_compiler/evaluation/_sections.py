"""The prose of the evaluation's report: claims, notes, ranking, NASA and CPU sections.

Each function takes the results (or one part of them) and returns markdown lines;
:func:`~.output.markdown_report` puts them together.
"""

from __future__ import annotations

from typing import Any

from enasa_compiler._text import plural

from ._format import PAPER, fmt_energy, fmt_ratio, fmt_share, fmt_time

__all__ = ["claim_notes", "cpu_section", "nasa_effective_macs_per_cycle", "nasa_section",
           "paper_notes", "ranking_notes", "ranking_section", "utilisation_notes"]


def ranking_section(results: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for name, ranking in results.get("ranking", {}).items():
        lines += ["", f"## Where OPS matters: {name} on `{ranking['target']}` "
                  f"({plural(ranking['crossbars'], 'crossbar')}, dynamic, segmented)", "",
                  "Same group, N images, pipelined in segments; OPS vs first come, first "
                  "served (FCFS) forming the segments. Ratios are FCFS over OPS (> 1x: OPS "
                  "is better).", "",
                  "| G | ranking | segments | micro-batch | makespan | cell writes / pass "
                  "| tile writes / pass | off-chip bytes | energy |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for row in ranking["rows"]:
            for solver in ("ops", "fcfs"):
                r = row[solver]
                lines.append(
                    f"| {row['group_size']} | {solver} | {r['segments']} | "
                    f"{r['micro_batch']} | "
                    f"{fmt_time(r['makespan_ns'] / 1e9)} | {r['cell_writes_per_pass']:,} | "
                    f"{r['tile_writes_per_pass']:,} | {r['offchip_bytes']:,} | "
                    f"{fmt_energy(r['energy_j'])} |")
            ratio = row["fcfs_over_ops"]
            lines.append(f"| {row['group_size']} | FCFS / OPS | | | "
                         f"{fmt_ratio(ratio['makespan_ns'])} | "
                         f"{fmt_ratio(ratio['cell_writes_per_pass'])} | | "
                         f"{fmt_ratio(ratio['offchip_bytes'])} | "
                         f"{fmt_ratio(ratio['energy_j'])} |")
        lines += ["", *ranking_notes(ranking)]
    return lines


def ranking_notes(ranking: dict[str, Any]) -> list[str]:
    """One sentence per group size: where the ranking changes time or writes."""
    notes = []
    for row in ranking["rows"]:
        ratio = row["fcfs_over_ops"]
        time_ratio = ratio["makespan_ns"] or 1.0
        writes = ratio["cell_writes_per_pass"]
        verdict = ("OPS is faster" if time_ratio > 1.005 else
                   "FCFS is faster" if time_ratio < 0.995 else "the ranking changes nothing")
        notes.append(
            f"- G = {row['group_size']}: {verdict} (FCFS takes {time_ratio:.3g}x OPS's "
            f"makespan); FCFS writes {fmt_ratio(writes)} the cells per pass and moves "
            f"{fmt_ratio(ratio['offchip_bytes'])} the off-chip bytes "
            f"({row['ops']['segments']} vs {row['fcfs']['segments']} segments, micro-batch "
            f"{row['ops']['micro_batch']} vs {row['fcfs']['micro_batch']}).")
    return notes


def nasa_section(results: dict[str, Any]) -> list[str]:
    spaces = list(results["spaces"].values())
    if not spaces:
        return []
    nasa = next(run for run in spaces[0]["systems"] if run["system"] == "nasa")
    lines = ["", "## (e) NASA: figures and sources", "",
             f"- Paper: {nasa['published']['venue']}.",
             f"- Network fusion: {nasa['published']['network_fusion']}."]
    lines += [f"- `{key}`: {text}" for key, text in nasa["assumptions"].items()]
    for name, space in results["spaces"].items():
        run = next(r for r in space["systems"] if r["system"] == "nasa")
        ratio = space["ratios"]["nasa"]
        effective = nasa_effective_macs_per_cycle(run)
        pj_for_claim = (run["assumed_mac_energy_pj"] * PAPER["energy_ratio_vs_nasa"]
                        / ratio["energy_ratio"])
        lines.append(
            f"- {name}: compute {fmt_time(run['compute_s'])}, DRAM "
            f"{fmt_time(run['dram_s'])} ({run['dram_bytes'] / 1e9:.3g} GB of weights) "
            "over the workload. Sensitivity: (a)'s time equals NASA's at about "
            f"{effective * ratio['speed_up']:.3g} effective MACs per cycle; the paper's "
            f"{PAPER['speed_up_vs_nasa']}x would mean a NASA with about "
            f"{effective * ratio['speed_up'] / PAPER['speed_up_vs_nasa']:.3g} effective "
            f"MACs per cycle at {run['assumed_clock_ghz']:g} GHz; its "
            f"{PAPER['energy_ratio_vs_nasa']:g}x energy, about "
            f"{pj_for_claim:.2g} pJ per MAC (compute-dominated).")
    return lines


def nasa_effective_macs_per_cycle(run: dict[str, Any]) -> float:
    """NASA's assumed MACs per cycle times its assumed utilisation."""
    return float(run["assumed_macs_per_cycle"] * run["assumed_utilization"])


def cpu_section(results: dict[str, Any]) -> list[str]:
    lines = ["", "## (d) CPU: how it was measured", ""]
    for name, space in results["spaces"].items():
        run = next(r for r in space["systems"] if r["system"] == "cpu")
        sweep = ", ".join(f"batch {b}: {s * 1e3:.3g} ms" for b, s in
                          run["batch_sweep_s_per_image"].items())
        low, mid, high = run["spread"]["time_s"]
        lines.append(
            f"- {name}: {run['device']}, {run['threads']} threads; per image on the first "
            f"subnet {sweep} (batch {run['batch']} used); {run['time_is']}; "
            f"{run['repeats']} repeats, total {fmt_time(low)} / {fmt_time(mid)} / "
            f"{fmt_time(high)} (min / median / max); load average "
            f"{run['load_average_before']} before, {run['load_average_after']} after; "
            f"energy {run['energy_is']}.")
    return lines


def utilisation_notes(space: dict[str, Any]) -> list[str]:
    enasa = space["systems"][0]
    bounds = space.get("pipeline_bounds", [])
    best = [b.get("best_allocated_utilization") for b in bounds]
    gaps = [b.get("gap") for b in bounds]
    return [
        f"Utilisation of (a), from the validated pipelined plans: steady state "
        f"{fmt_share(enasa.get('allocated_steady_utilization'))} of the crossbars "
        f"holding weights, {fmt_share(enasa.get('steady_utilization'))} of the chip; "
        f"{fmt_share(enasa.get('utilization'))} of the chip over the whole run, writes "
        f"included. Per generation, the II's gap to its lower bound: "
        f"{', '.join(fmt_share(g) for g in gaps) or '-'}; the best allocated utilisation "
        f"any duplication could reach at that II: "
        f"{', '.join(fmt_share(b) for b in best) or '-'}."]


def _claim(measured: float | None, claimed: float) -> str:
    if measured is None:
        return "not measured"
    if measured >= claimed:
        return f"reproduced ({measured:.3g}x >= {claimed:g}x)"
    return f"not reproduced ({measured:.3g}x < {claimed:g}x)"


def claim_notes(results: dict[str, Any]) -> list[str]:
    """One sentence per claim of the paper: reproduced or not, and why."""
    notes = []
    for name, space in results["spaces"].items():
        ratios = space["ratios"]
        cpu, nasa = ratios.get("cpu", {}), ratios.get("nasa", {})
        enasa = space["systems"][0]
        util = enasa.get("allocated_steady_utilization")
        reachable = max((b.get("best_allocated_utilization") or 0.0
                         for b in space.get("pipeline_bounds", [])), default=None)
        packed = next((a.get("allocated_steady_utilization")
                       for a in space.get("ablations", []) if a.get("system") == "packed"),
                      None)
        packed_text = ("" if packed is None else
                       f"; with tile packing (`--pack`) {fmt_share(packed)}, capped because "
                       "most crossbars hold full-size tiles that cannot share")
        notes += [
            f"- {name}, 196.6x speed-up vs CPU+GPU: "
            f"{_claim(cpu.get('speed_up'), PAPER['speed_up_vs_cpu_gpu'])} against this "
            "machine's CPU alone (the paper's CPU+GPU host is not available; a GPU would "
            "shrink the ratio, so the CPU ratio is an upper bound on the CPU+GPU one).",
            f"- {name}, 1200x energy vs CPU+GPU: "
            f"{_claim(cpu.get('energy_ratio'), PAPER['energy_ratio_vs_cpu_gpu'])}; the CPU's "
            "energy is an estimate (no RAPL here), see its row.",
            f"- {name}, 6.5x speed-up vs NASA: "
            f"{_claim(nasa.get('speed_up'), PAPER['speed_up_vs_nasa'])} against NASA "
            "modeled from assumed figures (its hardware table was not found); the ratio "
            "scales with the assumed MACs per cycle and utilisation.",
            f"- {name}, 9x energy vs NASA: "
            f"{_claim(nasa.get('energy_ratio'), PAPER['energy_ratio_vs_nasa'])}; it scales "
            "with the assumed pJ per MAC and DRAM reads per batch.",
            f"- {name}, crossbar utilisation > 90%: "
            + ("not measured" if util is None else
               (f"reproduced ({fmt_share(util)} of the allocated crossbars in the "
                "pipelined steady state)" if util > PAPER["utilization"] else
                f"not reproduced ({fmt_share(util)} of the allocated crossbars in the "
                "pipelined steady state; by the plans' bound no duplication fitting the "
                f"chip exceeds {fmt_share(reachable)} at their II, because every copy "
                f"repeats its slot's fixed buffer and interconnect time{packed_text})"))
            + ".",
        ]
    return notes


def paper_notes(results: dict[str, Any]) -> list[str]:
    """Say what the comparison can and cannot show, with this run's figures."""
    notes = []
    for name, space in results["spaces"].items():
        single = space["ratios"].get("single", {})
        resident = space["ratios"].get("resident", {})
        enasa = space["systems"][0]
        notes.append(
            f"- {name}: (a) over (b) {fmt_ratio(single.get('speed_up'))} time, "
            f"{fmt_ratio(single.get('energy_ratio'))} energy; over (c) "
            f"{fmt_ratio(resident.get('speed_up'))} and "
            f"{fmt_ratio(resident.get('energy_ratio'))}; dedup ratio of (a) "
            f"{fmt_ratio(enasa['dedup_ratio'])}.")
    for name, space in results["spaces"].items():
        single = next(r for r in space["systems"] if r["system"] == "single")
        enasa = space["systems"][0]
        if single.get("ii_ns") and enasa.get("ii_ns"):
            ii_b = sorted(single["ii_ns"])[len(single["ii_ns"]) // 2]
            per_subnet_a = enasa["time_s"] / enasa["subnets"] / enasa["images"]
            notes.append(
                f"- {name}: (b)'s median II is {fmt_time(ii_b * 1e-9)} per image; for "
                f"{single['plans_at_best_ii']} of {single['plans']} subnets no duplication "
                "fitting the chip could shorten it (the II equals the plan's `best_ii_ns`). "
                "(a)'s IIs are "
                f"{', '.join(fmt_time(i * 1e-9) for i in enasa['ii_ns'])} per image for "
                f"a whole generation, {fmt_time(per_subnet_a)} per subnet-image: the "
                "group computes the shared operators once and fills the crossbars a "
                "single subnet cannot use with the other subnets' layers.")
    notes += [
        "- (b) pays its writes once per subnet and runs one subnet's pipeline at a time; "
        "(a) streams each image through all of a group's subnets at once and computes "
        "their shared operators once. With both flows pipelined and throughput copies, "
        "the time gain is what the group's shared crossbars and digital units buy per "
        "image, not the group size alone.",
        "- The energy of every crossbar flow is mostly the N images' compute energy; a "
        "crossbar read costs the same in every flow, so (a)'s energy gain over (b) and "
        "(c) is close to its dedup ratio, plus the writes and leakage it saves.",
        "- The paper compares against CPU+GPU and NASA on its own hardware and on "
        "ImageNet images; here the CPU is this machine's (shared, loaded, two cores), "
        "NASA is a model from assumed figures, and no GPU was available, so only orders "
        "of magnitude are comparable.",
    ]
    return notes
