"""Benchmark: OPS vs CP-SAT on full-size SPOS and FairNAS groups, and online mapping.

For each space and group size G, a group of G full-size subnets (224x224, 1000
classes, random weights) sharing their bottom half is exported and lowered once;
then, on a resident target (the neurosim-22nm preset) and on a dynamic one (the same
chip cut to a third of the crossbars the group needs), it times OPS and CP-SAT
(started from OPS, deterministic, fixed budget) and reports both makespans, the best
lower bound and each plan's gap. Every plan is validated.

The online-mapping part compiles consecutive generations of a stage-wise run (the
fixed half alternating bottom/top, children of the previous generation's first
subnet) each from empty and each from the previous plan's final crossbar state, and
reports the cells written both ways.

Run:  python bench/mapping.py [--groups 4 16 64] [--time-limit 10]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _results import command_line, write_results

from enasa_compiler.frontend import load_group
from enasa_compiler.models.export import export_group
from enasa_compiler.models.fairnas import FairnasSupernet
from enasa_compiler.models.sampling import sample_shared_group, stagewise_children
from enasa_compiler.models.spos import SposSupernet
from enasa_compiler.passes.lower import lower
from enasa_compiler.passes.mapping import crossbars_needed, schedule_ops
from enasa_compiler.passes.mapping.bounds import makespan_lower_bound
from enasa_compiler.passes.mapping.cpsat import schedule_cpsat
from enasa_compiler.passes.price import price
from enasa_compiler.pipeline import assemble_plan, build_group_model, compile_detailed
from enasa_compiler.targets import load_target, target_from_dict
from enasa_compiler.validation.validator import validate


def _makespan(schedule: Any) -> int:
    return max(e.end_ns for e in (*schedule.compute, *schedule.program))


def _supernet(space: str) -> Any:
    return (SposSupernet() if space == "spos" else FairnasSupernet()).eval()


def _dynamic_target(needed: int, largest: int) -> Any:
    data = load_target("neurosim-22nm").to_dict()
    data["name"] = "neurosim-22nm-third"
    data["chip"]["crossbars"] = max(largest, needed // 3)
    return target_from_dict(data)


def _map_row(program: Any, subnets: Any, dedup: Any, target: Any, mode: str,
             time_limit: float, repeats: int) -> dict[str, Any]:
    ops_times = []
    for _ in range(repeats):
        started = time.perf_counter()
        ops = schedule_ops(program, target, mode)
        ops_times.append(time.perf_counter() - started)
    cpsat = schedule_cpsat(program, target, mode, hint=ops, time_limit_s=time_limit)
    analytic = makespan_lower_bound(program, target).bound_ns
    bound = max(analytic, cpsat.solver_bound_ns if cpsat.unit_ns == 1 else 0)
    row: dict[str, Any] = {
        "mode": ops.mode, "crossbars": target.chip.crossbars,
        "ops_s": round(statistics.median(ops_times), 4),
        "ops_makespan_ns": _makespan(ops),
        "cpsat_s": round(cpsat.wall_s, 2), "cpsat_status": cpsat.status,
        "cpsat_makespan_ns": cpsat.makespan_ns, "cpsat_unit_ns": cpsat.unit_ns,
        "analytic_bound_ns": analytic, "best_bound_ns": bound,
    }
    best = min(row["ops_makespan_ns"], cpsat.makespan_ns or row["ops_makespan_ns"])
    bound = min(bound, best)
    row["best_bound_ns"] = bound
    row["ops_gap"] = round((row["ops_makespan_ns"] - bound) / row["ops_makespan_ns"], 5)
    row["ops_over_bound"] = round(row["ops_makespan_ns"] / bound, 4)
    if cpsat.makespan_ns:
        row["cpsat_gap"] = round((cpsat.makespan_ns - bound) / cpsat.makespan_ns, 5)
    for name, schedule in (("ops", ops), ("cpsat", cpsat.schedule)):
        if schedule is not None:
            plan = assemble_plan(program, price(program, target), schedule, target, subnets,
                                 dedup, name)
            assert validate(plan) == [], f"{name} plan invalid"
            row[f"{name}_cell_writes"] = plan.totals.cell_writes
    return row


def _online(space: str, supernet: Any, group_size: int, generations: int, seed: int,
            folder: Path) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    layers, choices = supernet.num_layers, supernet.num_choices
    group = sample_shared_group(layers, choices, group_size, rng)
    previous = None
    rows = []
    for generation in range(generations):
        files = export_group(supernet, group, folder / f"{space}_gen{generation}")
        fresh = compile_detailed(files, "neurosim-22nm").plan
        row = {"generation": generation, "fresh_cell_writes": fresh.totals.cell_writes}
        if previous is not None:
            online = compile_detailed(files, "neurosim-22nm", initial_state=previous).plan
            assert validate(online) == []
            row["online_cell_writes"] = online.totals.cell_writes
            row["saved_share"] = round(1 - online.totals.cell_writes
                                       / fresh.totals.cell_writes, 4)
            previous = online
        else:
            previous = fresh
        rows.append(row)
        print(f"  online {space} gen {generation}: {row}", flush=True)
        group = stagewise_children(group[0], group, group_size, generation + 1, rng,
                                   num_choices=choices)
    return rows


def main() -> None:
    """Run the benchmark and write its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", nargs="+", default=["spos", "fairnas"])
    parser.add_argument("--groups", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--time-limit", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--online-generations", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    rows: list[dict[str, Any]] = []
    online: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for space in args.spaces:
            supernet = _supernet(space)
            for group_size in args.groups:
                archs = sample_shared_group(supernet.num_layers, supernet.num_choices,
                                            group_size, random.Random(args.seed))
                files = export_group(supernet, archs, Path(scratch) / f"{space}{group_size}")
                subnets = load_group(files)
                group, dedup = build_group_model(subnets)
                resident = load_target("neurosim-22nm")
                program = lower(group, resident)
                needed = crossbars_needed(program)
                largest = max(len(op.tiles) for op in program.mvm_ops())
                targets = [(resident, "auto"), (_dynamic_target(needed, largest), "dynamic")]
                for target, mode in targets:
                    row = {"space": space, "group_size": group_size,
                           "operators": len(program.ops), "crossbars_needed": needed,
                           **_map_row(program, subnets, dedup, target, mode,
                                      args.time_limit, args.repeats)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            online[space] = _online(space, supernet, 8, args.online_generations, args.seed,
                                    Path(scratch))
    write_results("mapping.json", {
        "command": command_line(__file__, args),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "rows": rows,
        "online": online,
    })


if __name__ == "__main__":
    main()
