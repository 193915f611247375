"""Benchmark: compile time and peak memory for full-size SPOS groups, and what dedup saves.

Exports groups of G full-size SPOS subnets (224x224, 1000 classes, random weights)
that share their bottom half, then compiles each group ``--repeats`` times per mapping
mode and duplication policy (by default ``throughput``, what ``enasa compile`` does, and
``off``): ONNX files in, plan out (the export is not timed with it). Each run is timed
per stage of ``enasa compile`` (frontend, graph passes, lowering, OPS mapping, plan
assembly), the stages adding up to the whole compile, and its plan is checked by the
validator, timed apart.
Medians are reported, with every run's whole-compile time, because the machine may be
shared. Peak memory is the peak resident size (VmHWM: the ``ru_maxrss`` of that process
alone) of a fresh process that imports the compiler and compiles the group once; the
size after the imports alone is given next to it. Beside them, the per-file floor: the
reading, hashing, parsing, checking and shape inference that any compile checking its
input must do, timed alone (see ``_floor``). Results go to ``bench/results/``.

Run:  python bench/compile_stages.py [--groups 4 16 64] [--repeats 5]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import torch
from _results import command_line, write_results

from enasa_compiler._gc import collector_paused
from enasa_compiler.evaluation.stages import time_compile_stages
from enasa_compiler.frontend import _has_subgraphs, _without_weight_bytes, load_group
from enasa_compiler.models.export import export_group
from enasa_compiler.models.sampling import sample_shared_group
from enasa_compiler.models.spos import SposSupernet
from enasa_compiler.pipeline import build_group_model
from enasa_compiler.targets import load_target

# Run in a fresh interpreter: the peak resident size after importing the compiler, then
# after one compile. It is read from VmHWM, which is ru_maxrss for this process alone:
# Linux carries ru_maxrss over exec, so a child started from this (torch-sized) process
# would report the parent's size.
_PEAK_MEMORY_SCRIPT = """
import json, resource, sys
from enasa_compiler.pipeline import compile_detailed
from enasa_compiler.targets import load_target

def peak_mb():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

target = load_target(sys.argv[1])
imported = peak_mb()
compile_detailed(sys.argv[4:], target, mode=sys.argv[2], duplicate=sys.argv[3])
print(json.dumps({"import_rss_mb": imported, "peak_rss_mb": peak_mb()}))
"""


def _peak_memory(files: list[Path], target_name: str, mode: str, duplicate: str
                 ) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_MEMORY_SCRIPT, target_name, mode, duplicate,
         *map(str, files)],
        capture_output=True, text=True, check=True)
    figures: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return {key: round(value, 1) for key, value in figures.items()}


def _time_compiles(files: list[Path], target_name: str, mode: str, duplicate: str,
                   repeats: int
                   ) -> dict[str, Any]:
    """Compile ``repeats`` times; medians of the timings, the rest from the first run."""
    target = load_target(target_name)
    runs = [time_compile_stages(files, target, mode=mode, duplicate=duplicate)[1]
            for _ in range(repeats)]
    row: dict[str, Any] = {}
    for key, value in runs[0].items():
        if key.endswith("_s"):
            row[key] = round(statistics.median(float(r[key]) for r in runs), 3)
        else:
            row[key] = value
    row["compile_runs_s"] = [round(float(r["compile_s"]), 3) for r in runs]
    return row


def _timed(spent: dict[str, float], part: str, work: Callable[[], Any]) -> Any:
    """Run ``work`` and add the seconds it took to ``spent[part]``."""
    start = time.perf_counter()
    result = work()
    spent[part] += time.perf_counter() - start
    return result


def _floor(files: list[Path], repeats: int) -> dict[str, Any]:
    """Time the per-file work that any compile checking its input must do; medians.

    One file after another on one thread: read the bytes, hash them (the plan records
    each source's sha256), parse them once, run onnx's checker on those bytes, and infer
    shapes once on the model without its weights' bytes (the frontend's own cheapest
    route). Everything else a compile does (building graph objects, passes, lowering,
    mapping, the plan) comes on top, so no compile of these files can be faster than
    ``floor_s`` on one core, or than half of it on two with a perfect split.
    """
    parts = ("read", "sha256", "parse", "checker", "infer")
    runs: list[dict[str, float]] = []
    for _ in range(repeats):
        spent = dict.fromkeys(parts, 0.0)
        for path in files:
            data = _timed(spent, "read", path.read_bytes)
            _timed(spent, "sha256", lambda data=data: hashlib.sha256(data).hexdigest())
            proto = _timed(spent, "parse", lambda data=data: onnx.load_from_string(data))
            _timed(spent, "checker", lambda data=data: onnx.checker.check_model(data))
            _timed(spent, "infer", lambda proto=proto: onnx.shape_inference.infer_shapes(
                _without_weight_bytes(proto, _has_subgraphs(proto.graph))
                .SerializeToString(), check_type=True,
                strict_mode=True, data_prop=True))
        runs.append(spent)
    floor = {f"floor_{part}_s": round(statistics.median(r[part] for r in runs), 3)
             for part in parts}
    floor["floor_s"] = round(statistics.median(sum(r.values()) for r in runs), 3)
    floor["source_mb"] = round(sum(path.stat().st_size for path in files) / 1e6, 1)
    return floor


def _pass_split(files: list[Path], repeats: int) -> dict[str, float]:
    """Medians of the graph passes' steps (see ``build_group_model``'s ``timings``).

    Steps after dedup (BatchNorm folding, the folded weights' hashes, weight sharing)
    work on the deduplicated group, as lowering, mapping and the plan do: a frontend
    that never built the duplicate nodes would not shorten them.
    """
    runs = []
    for _ in range(repeats):
        timings: dict[str, float] = {}
        with collector_paused():  # as in compile_detailed
            build_group_model(load_group(files), timings=timings)
        runs.append(timings)
    return {f"passes_{step}_s": round(statistics.median(r[step] for r in runs), 3)
            for step in runs[0]}


def _summary(row: dict[str, Any]) -> str:
    return (f"G={row['group_size']:3d} {row['mode']:9s} duplicate {row['duplicate']:10s} "
            f"ops={row['operators']:5d} "
            f"dedup nodes {row['nodes_before']}->{row['nodes_after']} "
            f"MMACs {row['macs_before'] / 1e6:.0f}->{row['macs_after'] / 1e6:.0f}  "
            f"compile {row['compile_s']:.2f} s median of {len(row['compile_runs_s'])} "
            f"(frontend {row['frontend_s']:.2f}, passes {row['passes_s']:.2f}, "
            f"lower {row['lower_s']:.2f}, mapping {row['mapping_s']:.2f}, "
            f"cost {row['cost_s']:.2f}), validate {row['validate_s']:.2f} s, "
            f"peak {row['peak_rss_mb']:.0f} MB ({row['import_rss_mb']:.0f} MB imports), "
            f"makespan {row['makespan_ns'] / 1e6:.2f} ms, "
            f"{row['crossbars_used']} crossbars, {row['allocated_utilization']:.1%} busy; "
            f"per-file floor {row['floor_s']:.2f} s one core ({row['source_mb']:.0f} MB)")


def main() -> None:
    """Run the benchmark and write its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--modes", nargs="+", default=["auto", "dynamic"])
    parser.add_argument("--duplicate", nargs="+", default=["throughput", "off"],
                        help="duplication policies to time (throughput: the default of "
                             "enasa compile)")
    parser.add_argument("--target", default="neurosim-22nm")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    supernet = SposSupernet().eval()
    load_average = os.getloadavg()[0]
    rows = []
    for group_size in args.groups:
        archs = sample_shared_group(supernet.num_layers, supernet.num_choices, group_size,
                                    random.Random(args.seed))
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            files = export_group(supernet, archs, Path(folder))
            export_s = time.perf_counter() - start
            floor = _floor(files, args.repeats)
            floor.update(_pass_split(files, args.repeats))
            for mode, duplicate in itertools.product(args.modes, args.duplicate):
                row: dict[str, Any] = {"group_size": group_size, "requested_mode": mode,
                                       "duplicate": duplicate,
                                       "export_s": round(export_s, 2)}
                row.update(_time_compiles(files, args.target, mode, duplicate,
                                          args.repeats))
                row.update(_peak_memory(files, args.target, mode, duplicate))
                row.update(floor)
                rows.append(row)
                print(_summary(row), flush=True)
    write_results("compile_stages.json", {
        "command": command_line(__file__, args),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
                   f"{torch.get_num_threads()} torch threads",
        "load_average_at_start": round(load_average, 2),
        "repeats": args.repeats,
        "rows": rows,
    })


if __name__ == "__main__":
    main()
