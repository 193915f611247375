"""Benchmark: time per compile stage for full-size SPOS groups, and what dedup saves.

Exports groups of G full-size SPOS subnets (224x224, 1000 classes, random weights)
that share their bottom half, then times each stage of ``enasa compile`` (frontend,
graph passes, lowering, OPS mapping, plan assembly) and the validator, repeating
the whole compile and reporting medians (the split ``enasa bench`` reports).
Results go to ``bench/results/``.

Run:  python bench/compile_stages.py [--groups 4 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _results import command_line, write_results

from enasa_compiler.evaluation.stages import time_compile_stages
from enasa_compiler.models.export import export_group
from enasa_compiler.models.sampling import sample_shared_group
from enasa_compiler.models.spos import SposSupernet
from enasa_compiler.targets import load_target


def _time_compile(files: list[Path], target_name: str, mode: str) -> dict[str, Any]:
    _, row = time_compile_stages(files, load_target(target_name), mode=mode)
    return row


def _summary(row: dict[str, Any]) -> str:
    return (f"G={row['group_size']:3d} {row['mode']:9s} ops={row['operators']:5d} "
            f"dedup nodes {row['nodes_before']}->{row['nodes_after']} "
            f"MMACs {row['macs_before'] / 1e6:.0f}->{row['macs_after'] / 1e6:.0f}  "
            f"compile {row['compile_s']:.2f} s (frontend {row['frontend_s']:.2f}, "
            f"passes {row['passes_s']:.2f}, lower {row['lower_s']:.2f}, "
            f"mapping {row['mapping_s']:.2f}, cost {row['cost_s']:.2f}), "
            f"validate {row['validate_s']:.2f} s, makespan {row['makespan_ns'] / 1e6:.2f} ms, "
            f"{row['crossbars_used']} crossbars, {row['allocated_utilization']:.1%} busy")


def main() -> None:
    """Run the benchmark and write its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--target", default="neurosim-22nm")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    supernet = SposSupernet().eval()
    rows = []
    for group_size in args.groups:
        archs = sample_shared_group(supernet.num_layers, supernet.num_choices, group_size,
                                    random.Random(args.seed))
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            files = export_group(supernet, archs, Path(folder))
            export_s = time.perf_counter() - start
            for mode in ("auto", "dynamic"):
                runs = [_time_compile(files, args.target, mode) for _ in range(args.repeats)]
                row: dict[str, Any] = {"group_size": group_size, "requested_mode": mode,
                                          "export_s": round(export_s, 2)}
                for key, value in runs[0].items():
                    if key.endswith("_s"):
                        row[key] = round(statistics.median(float(r[key]) for r in runs), 3)
                    else:
                        row[key] = value
                rows.append(row)
                print(_summary(row), flush=True)
    write_results("compile_stages.json", {
        "command": command_line(__file__, args),
        "machine": f"{platform.processor() or platform.machine()}, "
                   f"{torch.get_num_threads()} torch threads",
        "repeats": args.repeats,
        "rows": rows,
    })


if __name__ == "__main__":
    main()
