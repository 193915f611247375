"""Benchmark: pipelined schedules of many images against the layer-by-layer plan.

Exports a group of G full-size SPOS subnets (224x224, 1000 classes, random weights,
sharing their bottom half, as ``bench/compile_stages.py``), compiles it for
``neurosim-22nm`` with the default throughput duplication and reports, from the plan
itself (every figure is validated, not estimated): the initiation interval, its lower
bound and gap, the best II and best steady-state utilisation any duplication could
reach on the chip, the plan's own utilisation, and the makespan of N images against
running them one after another on the layer-by-layer schedule of the same plan. It
also compiles with N = 1 and N = 10,000 images and records the plan sizes and compile
times (neither should grow with N). It compiles N images again with tile packing
(``pack_tiles``, issue #15): utilisation, crossbars and II with and without packing, and
the packer's crossbars against its lower bound. Then it compiles the group for
``edge``, too small for it, with OPS's ranking and with ``--solver fcfs``: segmented
pipelines, their writes (how many prefetched while the previous segment computes,
and the write time exposed and hidden) and off-chip traffic, with the writes
overlapped and in the sequential form, for N images and for a short run
(``--edge-short-images``). Results go to
``bench/results/pipeline.json``.

Run:  python bench/pipeline.py [--group-size 16] [--images 10000]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import random
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import torch
from _results import command_line, write_results

import enasa_compiler.pipeline as pipeline_module
from enasa_compiler.models.export import export_group
from enasa_compiler.models.sampling import sample_shared_group
from enasa_compiler.models.spos import SposSupernet
from enasa_compiler.passes.mapping.packing import PackItem, busy_phases, phase_lower_bound
from enasa_compiler.pipeline import compile_detailed
from enasa_compiler.plan import Placement, Plan
from enasa_compiler.plan.totals import pipeline_write_ns
from enasa_compiler.validation.validator import validate


def _packing_ceilings(plan: Plan) -> dict[str, float]:
    """What no packing of the plan's tiles can beat, from the packed plan itself.

    ``phase_preserving_lower_bound``: crossbars any packing keeping the slots' phases
    needs (the packer keeps them); ``cells_lower_bound``: crossbars the cells alone
    need (full-size tiles one each, the others by area), whatever the timing, and the
    utilisation there: the ceiling of packing at this duplication and II.
    """
    assert plan.pipeline is not None
    pipe = plan.pipeline
    crossbar = plan.target["crossbar"]
    rows, cols = crossbar["rows"], crossbar["cols"]
    tiles = plan.tiles()
    index = {e.tile: i for i, e in enumerate(plan.program)}
    by_tile = [replace(s, placements=tuple(Placement(p.tile, index[p.tile])
                                           for p in s.placements))
               for s in pipe.schedule.slots]
    phases = busy_phases(by_tile, pipe.schedule.ii_ns)
    items = [PackItem(i, tiles[e.tile].phys_rows, tiles[e.tile].phys_cols, phases.get(i, ()))
             for i, e in enumerate(plan.program)]
    full = sum(1 for item in items if item.rows >= rows and item.cols >= cols)
    small_cells = sum(item.rows * item.cols for item in items
                      if not (item.rows >= rows and item.cols >= cols))
    cells_bound = full + math.ceil(small_cells / (rows * cols))
    return {
        "phase_preserving_lower_bound": phase_lower_bound(items, rows, cols),
        "cells_lower_bound": cells_bound,
        "full_size_tiles": full,
        "allocated_utilization_at_cells_bound": min(
            1.0, pipe.totals.busy_crossbar_ns_per_image / (cells_bound * pipe.schedule.ii_ns)),
    }


@contextlib.contextmanager
def _overlap(enabled: bool) -> Iterator[None]:
    """Compile segmented pipelines with or without write overlap (the default: with)."""
    original = pipeline_module.build_segmented_pipeline
    pipeline_module.build_segmented_pipeline = functools.partial(original, overlap=enabled)
    try:
        yield
    finally:
        pipeline_module.build_segmented_pipeline = original


def _edge_row(files: list[Path], target: str, solver: str, images: int, *,
              overlap: bool) -> dict[str, object]:
    """Compile for a chip too small for the group; the segmented run's figures."""
    start = time.perf_counter()
    with _overlap(overlap):
        plan = compile_detailed(files, target, solver=solver, images=images).plan
    seconds = time.perf_counter() - start
    assert plan.pipeline is not None
    pipe = plan.pipeline
    t = pipe.totals
    times = pipeline_write_ns(pipe.segments, pipe.images, pipe.micro_batch)
    row: dict[str, object] = {
        "compile_s": round(seconds, 2), "valid": not validate(plan),
        "mode": plan.mode, "segments": len(pipe.segments),
        "micro_batch": pipe.micro_batch,
        "writes_per_pass": sum(len(seg.writes) for seg in pipe.segments),
        "prefetched_per_pass": sum(w.prefetch for seg in pipe.segments for w in seg.writes),
        "makespan_ns": t.makespan_ns, "ii_ns": t.ii_ns,
        "ii_lower_bound_ns": pipe.bounds["ii_lower_bound_ns"],
        "write_exposed_ns": times["exposed_ns"], "write_hidden_ns": times["hidden_ns"],
        "energy_pj": t.energy_pj, "write_energy_pj": t.write_energy_pj,
        "offchip_bytes": t.offchip_bytes, "offchip_energy_pj": t.offchip_energy_pj,
        "allocated_utilization": t.allocated_utilization,
    }
    print(f"{target} {solver} N={images} {'overlap' if overlap else 'sequential'}: "
          f"{row['mode']}, {row['segments']} segments, {row['writes_per_pass']} tile writes "
          f"per pass ({row['prefetched_per_pass']} prefetched), micro-batch "
          f"{row['micro_batch']}, makespan {t.makespan_ns / 1e9:.6f} s, writes exposed "
          f"{times['exposed_ns'] / 1e3:.1f} us, hidden {times['hidden_ns'] / 1e3:.1f} us, "
          f"energy {t.energy_pj / 1e12:.4f} J (off chip {t.offchip_bytes / 1e9:.1f} GB), "
          f"{'valid' if row['valid'] else 'INVALID'}", flush=True)
    return row


def main() -> None:
    """Run the benchmark and write its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group-size", type=int, default=16)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--target", default="neurosim-22nm")
    parser.add_argument("--edge-target", default="edge",
                        help="a target too small for the group (segmented pipelines)")
    parser.add_argument("--edge-short-images", type=int, default=16,
                        help="images of a second, short segmented run (short passes: "
                             "where hiding writes matters)")
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
        for images, pack in ((1, False), (args.images, False), (args.images, True)):
            start = time.perf_counter()
            plan = compile_detailed(files, args.target, images=images, pack_tiles=pack).plan
            seconds = time.perf_counter() - start
            violations = validate(plan)
            assert plan.pipeline is not None
            pipe = plan.pipeline
            t, b = pipe.totals, pipe.bounds
            serial_ns = plan.totals.makespan_ns * images  # one batch after another
            key = f"{images}_packed" if pack else str(images)
            rows[key] = {
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
            row = rows[key]
            if pack:
                row["unpacked_crossbars"] = b["unpacked_crossbars"]
                row["packed_crossbars_lower_bound"] = b["packed_crossbars_lower_bound"]
                row["allocated_utilization_at_lower_bound"] = t.busy_crossbar_ns_per_image / (
                    b["packed_crossbars_lower_bound"] * t.ii_ns)
                row.update(_packing_ceilings(plan))
                print(f"N={images} packed: {row['unpacked_crossbars']} crossbars into "
                      f"{row['crossbars_used']} (lower bound "
                      f"{row['packed_crossbars_lower_bound']}, where utilisation would be "
                      f"{row['allocated_utilization_at_lower_bound']:.2%}; keeping the "
                      f"phases {row['phase_preserving_lower_bound']}; cells alone "
                      f"{row['cells_lower_bound']}, "
                      f"{row['allocated_utilization_at_cells_bound']:.2%})", flush=True)
            print(f"N={images}{' packed' if pack else ''}: II {row['ii_ns'] / 1e3:.2f} us "
                  f"(bound "
                  f"{row['ii_lower_bound_ns'] / 1e3:.2f}, gap {row['ii_gap']:.2%}, best "
                  f"{row['best_ii_ns'] / 1e3:.2f}); utilisation "
                  f"{row['allocated_utilization']:.2%} of allocated (best "
                  f"{row['best_allocated_utilization']:.2%}); makespan "
                  f"{row['makespan_ns'] / 1e6:.1f} ms vs layer by layer "
                  f"{serial_ns / 1e6:.1f} ms ({row['speedup_over_layer_by_layer']:.1f}x); "
                  f"plan {row['plan_bytes']} bytes, compile {seconds:.1f} s, "
                  f"{'valid' if row['valid'] else 'INVALID'}", flush=True)
        # The same group on a chip too small for it: segmented pipelines, with OPS's
        # ranking and without it (first come, first served); each with the segments'
        # writes overlapping the previous segment where crossbars allow (the default)
        # and in the sequential form (every write waits for the previous segment).
        edge: dict[str, object] = {}
        for images in (args.images, args.edge_short_images):
            for solver in ("ops", "fcfs"):
                key = solver if images == args.images else f"{solver}_{images}_images"
                edge[key] = {
                    "images": images,
                    **_edge_row(files, args.edge_target, solver, images, overlap=True),
                    "sequential": _edge_row(files, args.edge_target, solver, images,
                                            overlap=False),
                }
        ops, fcfs = edge["ops"], edge["fcfs"]
        assert isinstance(ops, dict) and isinstance(fcfs, dict)
        edge["ops_speedup_over_fcfs"] = fcfs["makespan_ns"] / ops["makespan_ns"]
        edge["fcfs_writes_over_ops"] = fcfs["writes_per_pass"] / ops["writes_per_pass"]
    write_results("pipeline.json", {
        "command": command_line(__file__, args),
        "load_average_at_start": round(load_average, 2),
        "group_size": args.group_size,
        "target": args.target,
        "rows": rows,
        "packing": {
            "ii_ns": [rows[str(args.images)]["ii_ns"],
                      rows[f"{args.images}_packed"]["ii_ns"]],
            "crossbars_used": [rows[str(args.images)]["crossbars_used"],
                               rows[f"{args.images}_packed"]["crossbars_used"]],
            "allocated_utilization": [
                rows[str(args.images)]["allocated_utilization"],
                rows[f"{args.images}_packed"]["allocated_utilization"]],
            "note": "[without packing, with packing] for N images, resident",
        },
        "segmented": {"target": args.edge_target, **edge},
    })


if __name__ == "__main__":
    main()
