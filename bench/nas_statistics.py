"""Benchmark: NAS evidence with statistics on the built-in shapes10 set.

A reviewer asks three things of a one-shot NAS claim, and this script measures each on
the procedurally generated 32x32 shapes10 set (``enasa_compiler.models.synthetic``;
nothing is downloaded):

1. Is the task hard enough? Logistic regression on the raw pixels, the usual floor.
2. Does a full-depth supernet train and rank architectures? A full-depth SPOS supernet
   (20 choice layers, small-input stem) and a full-depth FairNAS supernet (19 layers,
   strict fairness) are trained with warm-up plus cosine decay; random distinct subnets
   are scored with inherited weights (BN recomputed, SPOS's protocol), the best one is
   reported, and for the SPOS supernet the same subnets are also trained stand-alone
   from scratch with the same recipe: Kendall's tau between the two rankings. With
   plain SGD a 20-layer supernet stays at chance here; ``--adaptive-clip`` and
   ``--path-warmup-epochs`` (``train_supernet``'s options, see its docs) are what make
   it learn, and the results file records the command that was run.
3. Does stage-wise search converge as well as evolution? Stage-wise vs evolution vs
   uniform on several independently trained (reduced-depth, for time) SPOS supernets x
   several search seeds, each search compiled group by group by the search loop: mean,
   95% t-interval and paired tests (t-test and Wilcoxon signed-rank over the
   (supernet, seed) pairs) of the best accuracy found, plus the group dedup ratio and
   the modeled makespan per subnet of every generation.

Torch runs on one thread and with deterministic algorithms; every run is seeded, so the
same command on the same machine gives the same figures (a different thread count gives
different supernets). Results go to ``bench/results/nas_statistics.json`` and ``.md``,
rewritten after each part, so a run cut short keeps what it finished. A run of some
``--parts`` keeps the other parts of the existing results file (each part records the
command, data sizes and recipe it was measured with, under ``run``); ``--fresh`` drops
them.

Run:  nice -n 10 python bench/nas_statistics.py   (see --help for the sizes)
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from _results import RESULTS, command_line, write_results
from scipy import stats
from torch import nn

from enasa_compiler.atomic import write_atomic
from enasa_compiler.models.checkpoint import SupernetConfig, build_supernet
from enasa_compiler.models.data import ImageDataset, load_shapes10_dataset, train_val_split
from enasa_compiler.models.export import Supernet
from enasa_compiler.models.sampling import sample_distinct_uniform
from enasa_compiler.models.train import (
    adaptive_clip_,
    deterministic_algorithms,
    evaluate_accuracy,
    lr_factor,
    recalibrate_batchnorm,
    train_supernet,
)
from enasa_compiler.search.loop import SearchConfig, Strategy, search

STRATEGIES = ("stagewise", "evolution", "uniform")
PARTS = {"lr": "logistic_regression", "spos": "full_depth_spos", "search": "search",
         "fairnas": "full_depth_fairnas"}
"""Command-line part -> its key in the results."""
_RUN_KEYS = ("command", "recipe", "sizes", "torch", "torch_threads", "platform")
CONFIDENCE = 0.95


# --- statistics ---------------------------------------------------------------------------


def interval(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation and the 95% Student-t interval of the mean."""
    values = list(values)
    mean = statistics.fmean(values)
    if len(values) < 2:
        return {"n": len(values), "mean": mean, "std": 0.0, "ci_low": mean, "ci_high": mean}
    std = statistics.stdev(values)
    half = stats.t.ppf((1 + CONFIDENCE) / 2, len(values) - 1) * std / len(values) ** 0.5
    return {"n": len(values), "mean": mean, "std": std, "ci_low": mean - half,
            "ci_high": mean + half}


def paired(first: Sequence[float], second: Sequence[float]) -> dict[str, Any]:
    """Paired comparison of two strategies over the same (supernet, seed) runs."""
    diffs = [a - b for a, b in zip(first, second, strict=True)]
    result: dict[str, Any] = {"mean_difference": statistics.fmean(diffs),
                              "difference": interval(diffs),
                              "wins": sum(d > 0 for d in diffs),
                              "ties": sum(d == 0 for d in diffs),
                              "losses": sum(d < 0 for d in diffs)}
    if any(d != 0 for d in diffs):
        result["t_test_p"] = float(stats.ttest_rel(first, second).pvalue)
        result["wilcoxon_p"] = float(stats.wilcoxon(first, second).pvalue)
    else:
        result["t_test_p"] = result["wilcoxon_p"] = 1.0
    return result


# --- data and training --------------------------------------------------------------------


def logistic_regression_baseline(train: ImageDataset, val: ImageDataset,
                                 grid: Sequence[float]) -> dict[str, Any]:
    """Multinomial logistic regression on the raw (standardised) pixels, per C."""
    from sklearn.linear_model import LogisticRegression

    x_train = train.images.reshape(len(train), -1).numpy()
    x_val = val.images.reshape(len(val), -1).numpy()
    rows = []
    for c in grid:
        model = LogisticRegression(C=c, max_iter=300)
        model.fit(x_train, train.labels.numpy())
        rows.append({"C": c, "train_accuracy": float(model.score(x_train, train.labels)),
                     "val_accuracy": float(model.score(x_val, val.labels))})
    return {"per_C": rows, "best_val_accuracy": max(r["val_accuracy"] for r in rows),
            "note": "best over the C grid, picked on the validation split itself, so an "
                    "optimistic figure for the linear model"}


def _recipe(args: argparse.Namespace) -> dict[str, Any]:
    return {"batch_size": args.batch_size, "lr": args.lr, "schedule": "cosine",
            "warmup_epochs": args.warmup_epochs, "momentum": 0.9, "weight_decay": 4e-5,
            "label_smoothing": 0.1, "optimizer": "SGD",
            "adaptive_clip": args.adaptive_clip,
            "path_warmup_epochs": args.path_warmup_epochs}


def train_one(config: SupernetConfig, train: ImageDataset,
              args: argparse.Namespace) -> tuple[Supernet, dict[str, Any]]:
    supernet = build_supernet(config)
    run = train_supernet(supernet, train, rule=config.rule, epochs=config.epochs,
                         seed=config.seed, batch_size=args.batch_size, lr=args.lr,
                         schedule="cosine", warmup_epochs=min(args.warmup_epochs,
                                                              config.epochs),
                         adaptive_clip=args.adaptive_clip,
                         path_warmup_epochs=min(args.path_warmup_epochs, config.epochs)
                         if config.rule == "spos" else 0.0)
    return supernet, {"config": config.to_dict(), "seconds": round(run.seconds, 1),
                      "optimizer_steps": run.optimizer_steps,
                      "epoch_losses": [round(x, 4) for x in run.epoch_losses]}


def inherited_accuracy(supernet: Supernet, arch: Sequence[int], train: ImageDataset,
                       val: ImageDataset) -> float:
    recalibrate_batchnorm(supernet, arch, train)
    return evaluate_accuracy(supernet, arch, val)


def train_standalone(config: SupernetConfig, arch: Sequence[int], train: ImageDataset,
                     val: ImageDataset, epochs: int, args: argparse.Namespace) -> float:
    """Train the subnet ``arch`` alone from a fresh initialisation; its val accuracy.

    Same recipe as the supernet (SGD, warm-up plus cosine, label smoothing), one fixed
    path instead of sampled ones; BN statistics are recomputed before scoring, as for
    the inherited accuracies, so the two are measured the same way.
    """
    net = build_supernet(config)
    optimizer = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9,
                                weight_decay=4e-5)
    steps_per_epoch = -(-len(train) // args.batch_size)
    total = max(1, epochs * steps_per_epoch)
    warmup = round(min(args.warmup_epochs, epochs) * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda done: lr_factor(done, total, warmup, "cosine"))
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    with torch.random.fork_rng(devices=[]), deterministic_algorithms():
        torch.manual_seed(config.seed)
        net.train()
        for epoch in range(epochs):
            for images, labels in train.batches(args.batch_size,
                                                shuffle_seed=config.seed * 1000 + epoch):
                optimizer.zero_grad(set_to_none=True)
                criterion(net(images, arch), labels).backward()
                if args.adaptive_clip is not None:
                    adaptive_clip_(net.parameters(), args.adaptive_clip)
                optimizer.step()
                scheduler.step()
    return inherited_accuracy(net, arch, train, val)


# --- the three parts ----------------------------------------------------------------------


def full_depth(space: str, train: ImageDataset, val: ImageDataset,
               args: argparse.Namespace, standalone: int) -> dict[str, Any]:
    """Train one full-depth supernet; score random subnets; optionally rank-correlate."""
    epochs = args.spos_epochs if space == "spos" else args.fairnas_epochs
    config = SupernetConfig(space=space, width_mult=args.width, input_size=32,
                            num_classes=10, seed=0, epochs=epochs,
                            rule="spos" if space == "spos" else "fair",
                            small_input=True, threads=torch.get_num_threads())
    supernet, info = train_one(config, train, args)
    print(f"{space} full depth: {info['seconds']} s, loss {info['epoch_losses'][0]} -> "
          f"{info['epoch_losses'][-1]}", flush=True)
    archs = sample_distinct_uniform(supernet.num_layers, supernet.num_choices,
                                    args.subnets, random.Random(2024))
    accuracies = [inherited_accuracy(supernet, arch, train, val) for arch in archs]
    best = max(range(len(archs)), key=lambda i: accuracies[i])
    result: dict[str, Any] = {
        "supernet": info, "layers": supernet.num_layers, "choices": supernet.num_choices,
        "subnets": [{"arch": list(a), "inherited_accuracy": acc}
                    for a, acc in zip(archs, accuracies, strict=True)],
        "inherited": interval(accuracies),
        "best_subnet": {"arch": list(archs[best]), "accuracy": accuracies[best]},
    }
    print(f"{space}: best of {len(archs)} subnets {accuracies[best]:.3f}, mean "
          f"{statistics.fmean(accuracies):.3f}", flush=True)
    if standalone:
        alone = []
        for index, arch in enumerate(archs[:standalone]):
            alone.append(train_standalone(config, arch, train, val, args.standalone_epochs,
                                          args))
            result["subnets"][index]["standalone_accuracy"] = alone[-1]
            print(f"  stand-alone {index}: {alone[-1]:.3f} (inherited "
                  f"{accuracies[index]:.3f})", flush=True)
        tau = stats.kendalltau(accuracies[:standalone], alone)
        result["kendall_tau"] = {"tau": float(tau.statistic), "p_value": float(tau.pvalue),
                                 "subnets": standalone,
                                 "standalone_epochs": args.standalone_epochs}
        result["standalone"] = interval(alone)
    return result


def _per_generation(history: list[dict[str, Any]], group_size: int) -> list[dict[str, Any]]:
    rows = []
    for generation in sorted({e["generation"] for e in history}):
        members = [e for e in history if e["generation"] == generation]
        first = members[0]
        rows.append({
            "generation": generation,
            "subnets": len(members),
            "distinct_subnets": len({tuple(e["arch"]) for e in members}),
            "best_so_far": max(e["accuracy"] for e in history
                               if e["generation"] <= generation),
            "dedup_node_ratio": first["group_dedup_node_ratio"],
            "dedup_mac_ratio": first["group_dedup_mac_ratio"],
            "makespan_per_subnet_ns": first["group_makespan_ns"] / len(members),
        })
    return rows


def search_statistics(train: ImageDataset, val: ImageDataset,
                      args: argparse.Namespace) -> dict[str, Any]:
    """Strategies over several supernets x seeds; paired tests of the best accuracy."""
    supernets, runs = [], []
    for index in range(args.supernets):
        config = SupernetConfig(space="spos", width_mult=args.width, input_size=32,
                                num_classes=10, stage_repeats=tuple(args.stage_repeats),
                                seed=100 + index, epochs=args.search_supernet_epochs,
                                small_input=True, threads=torch.get_num_threads())
        supernet, info = train_one(config, train, args)
        supernets.append(info)
        for seed in args.seeds:
            for strategy in STRATEGIES:
                search_config = SearchConfig(strategy=Strategy(strategy),
                                             generations=args.generations,
                                             group_size=args.group_size, seed=seed,
                                             calib_batches=args.calib_batches, threads=1)
                result = search(supernet, train, val, search_config)
                generations = _per_generation(result.history, args.group_size)
                archs = [tuple(e["arch"]) for e in result.history]
                runs.append({
                    "supernet": index, "seed": seed, "strategy": strategy,
                    "best_accuracy": result.best["accuracy"] if result.best else 0.0,
                    "best_arch": result.best_arch,
                    "evaluated": len(archs), "distinct_evaluated": len(set(archs)),
                    "mean_dedup_node_ratio": statistics.fmean(
                        g["dedup_node_ratio"] for g in generations),
                    "mean_makespan_per_subnet_ns": statistics.fmean(
                        g["makespan_per_subnet_ns"] for g in generations),
                    "generations": generations, "seconds": round(result.seconds, 1),
                })
                print(f"supernet {index} seed {seed} {strategy:<10} best "
                      f"{runs[-1]['best_accuracy']:.4f} dedup "
                      f"{runs[-1]['mean_dedup_node_ratio']:.2f}x ({result.seconds:.0f} s)",
                      flush=True)
    key = {s: [r for r in runs if r["strategy"] == s] for s in STRATEGIES}
    summary: dict[str, Any] = {}
    for strategy, rows in key.items():
        summary[strategy] = {
            "best_accuracy": interval([r["best_accuracy"] for r in rows]),
            "best_accuracy_supernet_means": interval([
                statistics.fmean(r["best_accuracy"] for r in rows if r["supernet"] == i)
                for i in range(args.supernets)]),
            "dedup_node_ratio": interval([r["mean_dedup_node_ratio"] for r in rows]),
            "makespan_per_subnet_ns": interval([r["mean_makespan_per_subnet_ns"]
                                                for r in rows]),
            "by_generation": [
                {"generation": g,
                 "dedup_node_ratio": statistics.fmean(r["generations"][g]["dedup_node_ratio"]
                                                      for r in rows),
                 "dedup_mac_ratio": statistics.fmean(r["generations"][g]["dedup_mac_ratio"]
                                                     for r in rows),
                 "makespan_per_subnet_ns": statistics.fmean(
                     r["generations"][g]["makespan_per_subnet_ns"] for r in rows),
                 "best_so_far": statistics.fmean(r["generations"][g]["best_so_far"]
                                                 for r in rows)}
                for g in range(args.generations)],
            "all_evaluations_distinct": all(r["evaluated"] == r["distinct_evaluated"]
                                            for r in rows),
        }
    tests = {}
    for first, second in (("stagewise", "evolution"), ("stagewise", "uniform"),
                          ("evolution", "uniform")):
        tests[f"{first}_vs_{second}"] = paired([r["best_accuracy"] for r in key[first]],
                                               [r["best_accuracy"] for r in key[second]])
    return {"supernets": supernets, "summary": summary, "paired_tests": tests, "runs": runs}


# --- output -------------------------------------------------------------------------------


def _ci(row: dict[str, float], scale: float = 1.0, digits: int = 3) -> str:
    return (f"{row['mean'] / scale:.{digits}f} [{row['ci_low'] / scale:.{digits}f}, "
            f"{row['ci_high'] / scale:.{digits}f}]")


def _other_run(payload: dict[str, Any], part: dict[str, Any]) -> list[str]:
    """Lines naming the run a part comes from when it is not this file's command."""
    run = part.get("run")
    if run is None or run.get("command") == payload["command"]:
        return []
    sizes = run["sizes"]
    return [f"Kept from an earlier run: `{run['command']}`; data: shapes10, "
            f"{sizes['images']} images, {sizes['train_images']} train / "
            f"{sizes['val_images']} validation; recipe: {run['recipe']}.", ""]


def run_info(payload: dict[str, Any]) -> dict[str, Any]:
    """The command, sizes and recipe of ``payload``'s run, to store with each part."""
    return {key: payload[key] for key in _RUN_KEYS if key in payload}


def _part_keys(payload: dict[str, Any]) -> list[str]:
    """The result keys of ``payload`` that hold parts, labelled spos runs included."""
    labelled = f"{PARTS['spos']}_"
    return [k for k in payload if k in PARTS.values() or k.startswith(labelled)]


def carried_parts(previous: dict[str, Any], written: Sequence[str]) -> dict[str, Any]:
    """The parts of an earlier results payload that this run, writing ``written``, keeps.

    Each keeps (or, from a file written before parts recorded it, is given) the
    ``run`` it was measured in, so its figures stay tied to their own command.
    """
    return {key: {**previous[key], "run": previous[key].get("run", run_info(previous))}
            for key in _part_keys(previous) if key not in written}


def markdown(payload: dict[str, Any]) -> str:
    """The results as a Markdown report."""
    sizes = payload["sizes"]
    lines = ["# NAS evidence with statistics (shapes10, 32x32)", "",
             f"Command: `{payload['command']}`", "",
             f"Torch {payload['torch']}, {payload['torch_threads']} thread, deterministic "
             f"algorithms; {payload['platform']}. Data: shapes10, {sizes['images']} images "
             f"(seed 0), {sizes['train_images']} train / {sizes['val_images']} validation. "
             f"Recipe: {payload['recipe']}.", ""]
    if "logistic_regression" in payload:
        lr = payload["logistic_regression"]
        lines += ["## Task difficulty", "", *_other_run(payload, lr),
                  f"Logistic regression on raw pixels: best validation accuracy "
                  f"**{lr['best_val_accuracy']:.3f}** over C in "
                  f"{[r['C'] for r in lr['per_C']]} ({lr['note']}).", ""]
    full_keys = [PARTS["spos"], *sorted(k for k in payload
                                         if k.startswith(f"{PARTS['spos']}_")),
                 PARTS["fairnas"]]
    for key in full_keys:
        part = payload.get(key)
        if part is None:
            continue
        config = part["supernet"]["config"]
        title = f"{config['space']}" + (f" ({part['label']})" if part.get("label") else "")
        lines += [f"## Full-depth {title} supernet", "", *_other_run(payload, part),
                  f"{part['layers']} choice layers x {part['choices']} choices, width "
                  f"{config['width_mult']}, small-input stem, {config['epochs']} epochs "
                  f"({part['supernet']['optimizer_steps']} steps, rule {config['rule']}, "
                  f"{part['supernet']['seconds']} s); loss "
                  f"{part['supernet']['epoch_losses'][0]} -> "
                  f"{part['supernet']['epoch_losses'][-1]}.", "",
                  f"- {part['inherited']['n']} random distinct subnets, inherited weights "
                  f"(BN recomputed): mean accuracy {_ci(part['inherited'])}",
                  f"- best subnet: **{part['best_subnet']['accuracy']:.3f}** "
                  f"(arch {part['best_subnet']['arch']})"]
        if "kendall_tau" in part:
            tau = part["kendall_tau"]
            lines += [f"- Kendall's tau, inherited vs stand-alone ({tau['subnets']} subnets, "
                      f"{tau['standalone_epochs']} stand-alone epochs each): "
                      f"**{tau['tau']:.3f}** (p = {tau['p_value']:.3f}); stand-alone mean "
                      f"{_ci(part['standalone'])}"]
        lines.append("")
    if "search" in payload:
        part = payload["search"]
        sizes = part.get("run", payload)["sizes"]
        lines += ["## Stage-wise vs evolution vs uniform", "", *_other_run(payload, part),
                  f"{sizes['supernets']} SPOS supernets (stage repeats "
                  f"{sizes['stage_repeats']}, width {sizes['width']}, small-input stem, "
                  f"{sizes['search_supernet_epochs']} epochs, seeds 100..) x "
                  f"{len(sizes['seeds'])} search seeds {sizes['seeds']}; "
                  f"{sizes['generations']} generations x {sizes['group_size']} subnets, "
                  "every group compiled for neurosim-22nm by the search loop. Mean and 95% "
                  "t-interval over the runs (and over the per-supernet means, which do not "
                  "assume runs on one supernet are independent).", "",
                  "| strategy | best accuracy (runs) | (supernet means) | dedup nodes | "
                  "makespan/subnet us | all distinct |", "|---|---|---|---|---|---|"]
        for strategy, row in part["summary"].items():
            lines.append(f"| {strategy} | {_ci(row['best_accuracy'])} | "
                         f"{_ci(row['best_accuracy_supernet_means'])} | "
                         f"{_ci(row['dedup_node_ratio'], digits=2)} | "
                         f"{_ci(row['makespan_per_subnet_ns'], 1e3, 2)} | "
                         f"{row['all_evaluations_distinct']} |")
        lines += ["", "Paired over (supernet, seed): mean difference of best accuracy, its "
                  "95% interval, wins/ties/losses, paired t-test and Wilcoxon p.", "",
                  "| comparison | mean diff [95% CI] | W/T/L | t-test p | Wilcoxon p |",
                  "|---|---|---|---|---|"]
        for name, test in part["paired_tests"].items():
            lines.append(f"| {name.replace('_', ' ')} | {_ci(test['difference'], digits=4)} "
                         f"| {test['wins']}/{test['ties']}/{test['losses']} | "
                         f"{test['t_test_p']:.3f} | {test['wilcoxon_p']:.3f} |")
        lines += ["", "Per generation (means over runs): dedup node ratio, makespan per "
                  "subnet (us), best so far.", "",
                  "| strategy | " + " | ".join(f"gen {g}" for g in range(sizes['generations']))
                  + " |", "|---|" + "---|" * sizes["generations"]]
        for strategy, row in part["summary"].items():
            cells = [f"{g['dedup_node_ratio']:.2f}x, {g['makespan_per_subnet_ns'] / 1e3:.2f}, "
                     f"{g['best_so_far']:.3f}" for g in row["by_generation"]]
            lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append(f"Total time: {payload['total_seconds']} s.")
    return "\n".join(lines) + "\n"


def _spos_key(args: argparse.Namespace) -> str:
    return PARTS["spos"] + (f"_{args.spos_label}" if args.spos_label else "")


def _write(payload: dict[str, Any], started: float) -> None:
    for key in _part_keys(payload):
        if "run" not in payload[key]:
            payload[key]["run"] = run_info(payload)
    payload["total_seconds"] = round(time.perf_counter() - started, 1)
    write_results("nas_statistics.json", payload)
    write_atomic(RESULTS / "nas_statistics.md", markdown(payload))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--warmup-epochs", type=float, default=1.0)
    parser.add_argument("--adaptive-clip", type=float, default=None,
                        help="adaptive gradient clipping ratio (train_supernet's "
                             "adaptive_clip) for every training run; default none")
    parser.add_argument("--path-warmup-epochs", type=float, default=0.0,
                        help="SPOS-rule supernets open their layers to path sampling one "
                             "by one over these epochs (train_supernet's "
                             "path_warmup_epochs); default 0")
    parser.add_argument("--lr-grid", type=float, nargs="+", default=[0.01, 0.1])
    parser.add_argument("--spos-epochs", type=int, default=8)
    parser.add_argument("--fairnas-epochs", type=int, default=2)
    parser.add_argument("--subnets", type=int, default=12)
    parser.add_argument("--standalone", type=int, default=10)
    parser.add_argument("--standalone-epochs", type=int, default=3)
    parser.add_argument("--supernets", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--stage-repeats", type=int, nargs=4, default=[1, 1, 2, 1])
    parser.add_argument("--search-supernet-epochs", type=int, default=10)
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--group-size", type=int, default=6)
    parser.add_argument("--calib-batches", type=int, default=4)
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    parser.add_argument("--spos-label", default="",
                        help="store the spos part under full_depth_spos_LABEL, beside the "
                             "main one (e.g. a shorter budget for the ranking check)")
    parser.add_argument("--fresh", action="store_true",
                        help="drop the parts of the existing results file not run now")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    data = load_shapes10_dataset(32, args.images, seed=0)
    train, val = train_val_split(data, 0.2, seed=0)
    payload: dict[str, Any] = {
        "command": command_line(__file__, argparse.Namespace(
            **{k: v for k, v in vars(args).items() if k != "fresh"}))
        + (" --fresh" if args.fresh else ""),
        "platform": platform.platform(),
        "python": platform.python_version(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "numpy": np.__version__,
        "recipe": _recipe(args),
        "sizes": {"images": args.images, "train_images": len(train),
                  "val_images": len(val), **{k: v for k, v in vars(args).items()
                                             if k not in ("images", "parts", "fresh")}},
    }
    existing = RESULTS / "nas_statistics.json"
    if not args.fresh and existing.exists():
        payload.update(carried_parts(json.loads(existing.read_text()),
                                     [_spos_key(args) if part == "spos" else PARTS[part]
                                      for part in args.parts]))
    if "lr" in args.parts:
        payload["logistic_regression"] = logistic_regression_baseline(train, val,
                                                                      args.lr_grid)
        best = payload["logistic_regression"]["best_val_accuracy"]
        print(f"logistic regression: {best:.3f}", flush=True)
        _write(payload, started)
    if "search" in args.parts:
        payload["search"] = search_statistics(train, val, args)
        _write(payload, started)
    if "spos" in args.parts:
        key = _spos_key(args)
        payload[key] = full_depth("spos", train, val, args, args.standalone)
        if args.spos_label:
            payload[key]["label"] = args.spos_label
        _write(payload, started)
    if "fairnas" in args.parts:
        payload["full_depth_fairnas"] = full_depth("fairnas", train, val, args, 0)
        _write(payload, started)


if __name__ == "__main__":
    main()
