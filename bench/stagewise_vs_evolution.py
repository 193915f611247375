"""Benchmark: ENASA's stage-wise search against SPOS's plain evolution, same budget.

ENASA claims that fixing half the layers of every child to the best subnet's makes
generations that share work on the chip (dedup, shorter makespan per subnet) while the
search converges as well as plain evolution. This trains ONE small SPOS supernet on the
built-in digits data, then runs both searches (and uniform random groups, as a floor)
with the same seeds and the same number of evaluated subnets. Every generation is
compiled as one group; accuracy is top-1 on the validation split with onnxruntime after
each subnet's BN recalibration.

Reported per strategy, mean and spread over the seeds: best validation accuracy, mean
group dedup ratio (nodes and MACs), mean modeled makespan per subnet (group makespan /
group size), mean per-subnet energy and crossbars used per group. Results go to
``bench/results/stagewise_vs_evolution.json``.

Torch runs on one thread: these convolutions are tiny and two threads on a shared
machine are slower, not faster.

Run:  python bench/stagewise_vs_evolution.py [--seeds 0 1 2] [--generations 4]
          [--group-size 8] [--epochs 15]
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
from typing import Any

import torch
from _results import command_line, write_results

from enasa_compiler.models.checkpoint import SupernetConfig, build_supernet
from enasa_compiler.models.data import load_digits_dataset, train_val_split
from enasa_compiler.models.sampling import sample_uniform
from enasa_compiler.models.train import (
    evaluate_accuracy,
    recalibrate_batchnorm,
    train_supernet,
)
from enasa_compiler.search.loop import SearchConfig, search

STRATEGIES = ("stagewise", "evolution", "uniform")


def _train(args: argparse.Namespace) -> tuple[Any, Any, Any, dict[str, Any]]:
    train, val = train_val_split(load_digits_dataset(32), 0.2, seed=0)
    config = SupernetConfig(width_mult=0.25, input_size=32, num_classes=10,
                            stage_repeats=tuple(args.stage_repeats), seed=0,
                            epochs=args.epochs, rule="spos")
    supernet = build_supernet(config)
    stats = train_supernet(supernet, train, rule="spos", epochs=args.epochs, seed=0,
                           progress=True)
    rng = random.Random(123)
    sampled = []
    for _ in range(8):
        arch = sample_uniform(supernet.num_layers, supernet.num_choices, rng)
        recalibrate_batchnorm(supernet, arch, train)
        sampled.append(evaluate_accuracy(supernet, arch, val))
    info = {"config": config.to_dict(), "seconds": round(stats.seconds, 1),
            "epoch_losses": [round(x, 4) for x in stats.epoch_losses],
            "random_subnet_val_accuracy": [round(a, 4) for a in sampled],
            "train_images": len(train), "val_images": len(val)}
    return supernet, train, val, info


def _summarise(history: list[dict[str, Any]], group_size: int) -> dict[str, Any]:
    groups: dict[int, dict[str, Any]] = {}
    best_so_far, trajectory = 0.0, []
    for entry in history:
        groups.setdefault(entry["generation"], entry)
    for generation in sorted(groups):
        best_so_far = max([best_so_far] + [e["accuracy"] for e in history
                                           if e["generation"] == generation])
        trajectory.append(round(best_so_far, 4))
    firsts = list(groups.values())
    return {
        "best_accuracy": max(e["accuracy"] for e in history),
        "best_by_generation": trajectory,
        "mean_accuracy": statistics.mean(e["accuracy"] for e in history),
        "mean_dedup_node_ratio": statistics.mean(g["group_dedup_node_ratio"] for g in firsts),
        "mean_dedup_mac_ratio": statistics.mean(g["group_dedup_mac_ratio"] for g in firsts),
        "mean_makespan_per_subnet_ns": statistics.mean(g["group_makespan_ns"] / group_size
                                                       for g in firsts),
        "mean_energy_per_subnet_pj": statistics.mean(g["group_energy_pj"] / group_size
                                                     for g in firsts),
        "mean_crossbars_used": statistics.mean(g["group_crossbars_used"] for g in firsts),
        "dedup_node_ratio_by_generation": [round(g["group_dedup_node_ratio"], 3)
                                           for g in firsts],
        "crossbars_used_by_generation": [g["group_crossbars_used"] for g in firsts],
        "evaluated": len(history),
    }


def _spread(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.mean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def _cell(row: dict[str, dict[str, float]], metric: str, scale: float = 1.0,
          width: int = 16) -> str:
    text = f"{row[metric]['mean'] / scale:.3f}+-{row[metric]['std'] / scale:.3f}"
    return f"{text:>{width}}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--stage-repeats", type=int, nargs=4, default=[1, 1, 2, 1])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES),
                        choices=STRATEGIES)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    supernet, train, val, training = _train(args)
    print(f"supernet: {training['seconds']} s, loss {training['epoch_losses'][0]} -> "
          f"{training['epoch_losses'][-1]}, random subnets "
          f"{statistics.mean(training['random_subnet_val_accuracy']):.1%} mean val accuracy")

    runs: list[dict[str, Any]] = []
    for seed in args.seeds:
        for strategy in args.strategies:
            config = SearchConfig(strategy=strategy, generations=args.generations,
                                  group_size=args.group_size, seed=seed)
            result = search(supernet, train, val, config, progress=True)
            summary = _summarise(result.history, args.group_size)
            runs.append({"strategy": strategy, "seed": seed,
                         "seconds": round(result.seconds, 1), "best_arch": result.best_arch,
                         **summary})
            print(f"seed {seed} {strategy:<10} best {summary['best_accuracy']:.4f} "
                  f"dedup {summary['mean_dedup_node_ratio']:.2f}x "
                  f"makespan/subnet {summary['mean_makespan_per_subnet_ns'] / 1e3:.2f} us "
                  f"({result.seconds:.0f} s)", flush=True)

    metrics = ("best_accuracy", "mean_accuracy", "mean_dedup_node_ratio",
               "mean_dedup_mac_ratio", "mean_makespan_per_subnet_ns",
               "mean_energy_per_subnet_pj", "mean_crossbars_used")
    table = {s: {m: _spread([r[m] for r in runs if r["strategy"] == s]) for m in metrics}
             for s in args.strategies}
    header = (f"{'strategy':<11}{'best acc':>16}{'mean acc':>16}{'dedup nodes':>16}"
              f"{'dedup MACs':>16}{'makespan/subnet us':>22}{'energy/subnet uJ':>20}"
              f"{'crossbars':>18}")
    print(f"\n{len(args.seeds)} seeds x {args.generations} generations x "
          f"{args.group_size} subnets per strategy (mean +- std)")
    print(header)
    for strategy, row in table.items():
        print(f"{strategy:<11}{_cell(row, 'best_accuracy')}{_cell(row, 'mean_accuracy')}"
              f"{_cell(row, 'mean_dedup_node_ratio')}{_cell(row, 'mean_dedup_mac_ratio')}"
              f"{_cell(row, 'mean_makespan_per_subnet_ns', 1e3, 22)}"
              f"{_cell(row, 'mean_energy_per_subnet_pj', 1e6, 20)}"
              f"{_cell(row, 'mean_crossbars_used', 1.0, 18)}")

    write_results("stagewise_vs_evolution.json", {
        "command": command_line(__file__, args),
        "platform": platform.platform(), "python": platform.python_version(),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "target": "neurosim-22nm", "seeds": args.seeds, "generations": args.generations,
        "group_size": args.group_size, "supernet": training, "summary": table,
        "runs": runs, "total_seconds": round(time.perf_counter() - started, 1),
    })


if __name__ == "__main__":
    main()
