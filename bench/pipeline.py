"""Benchmark: pipelined schedules of many images against the layer-by-layer plan.

Exports a group of G full-size SPOS subnets (224x224, 1000 classes, random weights,
sharing their bottom half, as ``bench/compile_stages.py``), compiles it for
``neurosim-22nm`` with the default throughput duplication and reports, from the plan
itself (every figure is validated, not estimated): the initiation interval, its lower
bound and gap, the best II and best steady-state utilisation any duplication could
reach on the chip, the plan's own utilisation, and the makespan of N images against
running them one after another on the layer-by-layer schedule of the same plan. It
also compiles with N = 1 and N = 10,000 images and records the plan sizes and compile
times (neither should grow with N). Then it compiles the group for ``edge``, too small
for it, with OPS's ranking and with ``--solver fcfs``: segmented pipelines, their
writes and off-chip traffic. Results go to ``bench/results/pipeline.json``.

Run:  python bench/pipeline.py [--group-size 16] [--images 10000]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

import torch
from _results import command_line, write_results

from enasa_compiler.models.export import export_group
from enasa_compiler.models.sampling import sample_shared_group
from enasa_compiler.models.spos import SposSupernet
from enasa_compiler.pipeline import compile_detailed
from enasa_compiler.validation.validator import validate


def main() -> None:
    """Run the benchmark and write its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group-size", type=int, default=16)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--target", default="neurosim-22nm")
    parser.add_argument("--edge-target", default="edge",
                        help="a target too small for the group (segmented pipelines)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    supernet = SposSupernet().eval()
    archs = sample_shared_group(supernet.num_layers, supernet.num_choices, args.group_size,
                                random.Random(args.seed))
    load_average = os.getloadavg()[0]
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        files = export_group(supernet, archs, Path(folder))
        for images in (1, args.images):
            start = time.perf_counter()
            plan = compile_detailed(files, args.target, images=images).plan
            seconds = time.perf_counter() - start
            violations = validate(plan)
            assert plan.pipeline is not None
            pipe = plan.pipeline
            t, b = pipe.totals, pipe.bounds
            serial_ns = plan.totals.makespan_ns * images  # one batch after another
            rows[images] = {
                "compile_s": round(seconds, 2),
                "plan_bytes": len(plan.to_json()),
                "valid": not violations,
                "ii_ns": t.ii_ns,
                "ii_lower_bound_ns": b["ii_lower_bound_ns"],
                "ii_gap": b["gap"],
                "ii_binding": b["ii_binding"],
                "best_ii_ns": b["best_ii_ns"],
                "allocated_utilization": t.allocated_utilization,
                "best_allocated_utilization": b["best_allocated_utilization"],
                "chip_utilization": t.utilization,
                "crossbars_used": t.crossbars_used,
                "one_image_latency_ns": t.latency_ns,
                "makespan_ns": t.makespan_ns,
                "energy_pj": t.energy_pj,
                "layer_by_layer_makespan_ns": serial_ns,
                "speedup_over_layer_by_layer": serial_ns / t.makespan_ns,
                "batch_schedule_allocated_utilization": plan.totals.allocated_utilization,
            }
            row = rows[images]
            print(f"N={images}: II {row['ii_ns'] / 1e3:.2f} us (bound "
                  f"{row['ii_lower_bound_ns'] / 1e3:.2f}, gap {row['ii_gap']:.2%}, best "
                  f"{row['best_ii_ns'] / 1e3:.2f}); utilisation "
                  f"{row['allocated_utilization']:.2%} of allocated (best "
                  f"{row['best_allocated_utilization']:.2%}); makespan "
                  f"{row['makespan_ns'] / 1e6:.1f} ms vs layer by layer "
                  f"{serial_ns / 1e6:.1f} ms ({row['speedup_over_layer_by_layer']:.1f}x); "
                  f"plan {row['plan_bytes']} bytes, compile {seconds:.1f} s, "
                  f"{'valid' if row['valid'] else 'INVALID'}", flush=True)
        # The same group on a chip too small for it: segmented pipelines, with OPS's
        # ranking and without it (first come, first served).
        edge = {}
        for solver in ("ops", "fcfs"):
            start = time.perf_counter()
            plan = compile_detailed(files, args.edge_target, solver=solver,
                                    images=args.images).plan
            seconds = time.perf_counter() - start
            assert plan.pipeline is not None
            pipe = plan.pipeline
            t = pipe.totals
            edge[solver] = {
                "compile_s": round(seconds, 2), "valid": not validate(plan),
                "mode": plan.mode, "segments": len(pipe.segments),
                "micro_batch": pipe.micro_batch,
                "writes_per_pass": sum(len(seg.writes) for seg in pipe.segments),
                "makespan_ns": t.makespan_ns, "ii_ns": t.ii_ns,
                "ii_lower_bound_ns": pipe.bounds["ii_lower_bound_ns"],
                "energy_pj": t.energy_pj, "write_energy_pj": t.write_energy_pj,
                "offchip_bytes": t.offchip_bytes, "offchip_energy_pj": t.offchip_energy_pj,
                "allocated_utilization": t.allocated_utilization,
            }
            row = edge[solver]
            print(f"{args.edge_target} {solver}: {row['mode']}, {row['segments']} segments, "
                  f"{row['writes_per_pass']} tile writes per pass, micro-batch "
                  f"{row['micro_batch']}, makespan {row['makespan_ns'] / 1e9:.2f} s, "
                  f"energy {row['energy_pj'] / 1e12:.2f} J (off chip "
                  f"{row['offchip_bytes'] / 1e9:.1f} GB), "
                  f"{'valid' if row['valid'] else 'INVALID'}", flush=True)
        edge["ops_speedup_over_fcfs"] = (edge["fcfs"]["makespan_ns"]
                                         / edge["ops"]["makespan_ns"])
        edge["fcfs_writes_over_ops"] = (edge["fcfs"]["writes_per_pass"]
                                        / edge["ops"]["writes_per_pass"])
    write_results("pipeline.json", {
        "command": command_line(__file__, args),
        "load_average_at_start": round(load_average, 2),
        "group_size": args.group_size,
        "target": args.target,
        "rows": {str(k): v for k, v in rows.items()},
        "segmented": {"target": args.edge_target, **edge},
    })


if __name__ == "__main__":
    main()
