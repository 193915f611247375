"""Benchmark: search throughput (groups per second) in process and on a local Ray cluster.

The workload is one search on a small SPOS supernet (width 0.25, 32x32 inputs, all 20
choice layers, seeded untrained weights; accuracy is meaningless here, the work is
real): stage-wise strategy, ``--generations`` generations of ``--groups`` groups of
``--group-size`` subnets, each group exported, compiled, costed and scored with
onnxruntime on 200 validation images. Torch runs one thread per group (``threads=1``),
so every executor computes the same bytes; the script checks the results are equal.
The load average before and after each executor's runs is kept: on a shared machine
other processes take CPUs from the workers.

Measured, per executor, after the cluster is up (its start is reported apart): the
search's wall time and groups per second, and the same for as many independent groups
run by one ``executor.map`` (no generation barrier: the executor's own scaling). Ray
runs with 1 and then 2 worker CPUs. The first repeat on a cluster includes each worker's
cold start (importing torch); every run puts the supernet and the data into the object
store once and each worker fetches them once. Throughput is from the best repeat; every
run is kept. In the search, the groups of one generation run in parallel and the next
generation waits for all of them (its proposals need their accuracies).

Run:  python bench/ray_throughput.py [--generations 2] [--groups 4] [--group-size 4]
          [--workers 1 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import time
from typing import Any

import numpy as np
import ray
import torch
from _results import command_line, write_results

from enasa_compiler.models.checkpoint import SupernetConfig, build_supernet
from enasa_compiler.models.data import load_digits_dataset, train_val_split
from enasa_compiler.models.sampling import sample_uniform
from enasa_compiler.search.executors import (
    Executor,
    GroupInputs,
    GroupTask,
    InProcessExecutor,
    RayExecutor,
    run_group,
)
from enasa_compiler.search.loop import SearchConfig, search


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _timed_search(inputs: tuple[Any, ...], config: SearchConfig,
                  executor: Executor) -> tuple[float, list[dict[str, Any]]]:
    started = time.perf_counter()
    result = search(*inputs, config, executor=executor)
    return time.perf_counter() - started, result.history


def _timed_map(inputs: tuple[Any, ...], tasks: list[GroupTask],
               executor: Executor) -> tuple[float, list[Any]]:
    started = time.perf_counter()
    shared = executor.share(GroupInputs(*inputs))
    results = executor.map(run_group, tasks, [shared])
    return time.perf_counter() - started, [r.records for r in results]


def _independent_tasks(supernet: Any, args: argparse.Namespace) -> list[GroupTask]:
    rng = random.Random(0)
    count = args.generations * args.groups
    return [GroupTask(generation=0, group=index,
                      archs=tuple(sample_uniform(supernet.num_layers, supernet.num_choices,
                                                 rng) for _ in range(args.group_size)),
                      target="neurosim-22nm", calib_batches=8, calib_batch_size=64,
                      max_latency_ns=None, threads=1) for index in range(count)]


def _measure(name: str, workers: int, executor: Executor, inputs: tuple[Any, ...],
             config: SearchConfig, tasks: list[GroupTask], repeats: int,
             reference: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"executor": name, "workers": workers, "load_before": _load()}
    for workload, run in (("search", lambda: _timed_search(inputs, config, executor)),
                          ("map", lambda: _timed_map(inputs, tasks, executor))):
        times = []
        for _ in range(repeats):
            seconds, output = run()
            if reference.setdefault(workload, output) != output:
                raise SystemExit(f"{name} x{workers}: {workload} results differ")
            times.append(round(seconds, 2))
        row[workload] = {"seconds": times, "groups_per_second": round(len(tasks) /
                                                                      min(times), 3)}
    row["load_after"] = _load()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=2)
    parser.add_argument("--groups", type=int, default=4, help="groups per generation")
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    train, val = train_val_split(load_digits_dataset(32), 0.2, seed=0)
    supernet = build_supernet(SupernetConfig(width_mult=0.25, input_size=32, seed=0))
    inputs = (supernet, train, val.subset(np.arange(200)))
    config = SearchConfig(strategy="stagewise", generations=args.generations,
                          group_size=args.group_size, groups_per_generation=args.groups,
                          seed=0, threads=1)
    tasks = _independent_tasks(supernet, args)
    reference: dict[str, Any] = {}
    rows = [_measure("inprocess", 1, InProcessExecutor(), inputs, config, tasks,
                     args.repeats, reference)]
    for workers in args.workers:
        started = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        startup = time.perf_counter() - started
        with RayExecutor() as executor:
            row = _measure("ray", workers, executor, inputs, config, tasks, args.repeats,
                           reference)
        ray.shutdown()
        rows.append({**row, "cluster_start_seconds": round(startup, 1)})
    base = rows[0]
    for row in rows:
        for workload in ("search", "map"):
            row[workload]["speedup_vs_inprocess"] = round(
                row[workload]["groups_per_second"] / base[workload]["groups_per_second"], 2)
        print(f"{row['executor']:<9} x{row['workers']}: search "
              f"{row['search']['groups_per_second']:.3f} groups/s "
              f"({row['search']['speedup_vs_inprocess']:.2f}x), independent groups "
              f"{row['map']['groups_per_second']:.3f} groups/s "
              f"({row['map']['speedup_vs_inprocess']:.2f}x); runs {row['search']['seconds']}"
              f" / {row['map']['seconds']} s; load {row['load_before']} -> "
              f"{row['load_after']}")

    write_results("ray_throughput.json", {
        "command": command_line(__file__, args),
        "platform": platform.platform(), "python": platform.python_version(),
        "cpus": os.cpu_count(), "torch": torch.__version__, "ray": ray.__version__,
        "workload": {"supernet": "spos width 0.25, input 32, 20 layers, untrained",
                     "search": f"stagewise, {args.generations} generations x {args.groups} "
                               f"groups x {args.group_size} subnets",
                     "map": f"{len(tasks)} independent groups of {args.group_size} uniform "
                            "subnets, one executor.map",
                     "val_images": 200, "threads_per_group": 1, "groups": len(tasks)},
        "results_identical_across_executors": True,
        "results": rows,
    })


if __name__ == "__main__":
    main()
