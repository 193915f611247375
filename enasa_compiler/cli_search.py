"""The ``enasa search`` and ``enasa train-supernet`` commands.

Kept apart from :mod:`enasa_compiler.cli` so that the compiler's commands do not import
torch: :func:`add_search_parsers` registers the two subcommands on the main parser, and
:func:`run_search` / :func:`run_train` run them. User errors are raised as
:class:`~enasa_compiler.errors.InputError`, which the main CLI prints as one line with
exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from enasa_compiler.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_EPOCHS", "VAL_FRACTION", "add_search_parsers", "run_search", "run_train"]

DEFAULT_EPOCHS = 10
"""Epochs of ``train-supernet`` and of the supernet ``search`` trains when given none."""
VAL_FRACTION = 0.2
"""Share of the images held out for validation; the split is seeded, so training never
sees the images ``search`` scores on."""
_SPLIT_SEED = 0
_STRATEGIES = ("uniform", "fair", "stagewise", "evolution")


def _stage_repeats(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 4 comma-separated ints, got '{text}'") from None
    if len(values) != 4 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected 4 counts >= 1, got '{text}'")
    return values


def _add_model_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    parser.add_argument("--space", choices=["spos", "fairnas"],
                        default="spos" if defaults else None,
                        help="search space (default spos)")
    parser.add_argument("--width", type=float, default=0.25 if defaults else None,
                        help="channel width multiplier (default 0.25)")
    parser.add_argument("--input-size", type=int, default=32,
                        help="image side, a multiple of 32 (default 32)")
    parser.add_argument("--stage-repeats", type=_stage_repeats, default=None,
                        help="SPOS choice layers per stage, e.g. 1,1,2,1 (default 4,4,8,4)")
    parser.add_argument("--data", type=Path, default=None,
                        help=".npz with float32 'images' (N,C,H,W) and int64 'labels' (N,); "
                        "default: scikit-learn's digits, upsampled")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_search_parsers(
    subparsers: Any, common: Callable[[argparse.ArgumentParser], None]
) -> None:
    """Register ``search`` and ``train-supernet`` on the main parser's subparsers.

    Args:
        subparsers: What ``ArgumentParser.add_subparsers`` returned.
        common: Adds the options every command takes (``--json``, ``--quiet``...).

    """
    p = subparsers.add_parser("search", help="evolutionary search, each generation "
                              "compiled as one group")
    _add_model_options(p, defaults=False)
    p.add_argument("--strategy", choices=_STRATEGIES, default="stagewise",
                   help="uniform/fair: random groups; evolution: SPOS; stagewise: ENASA "
                   "(default)")
    p.add_argument("--generations", type=int, default=4, help="groups to evaluate (4)")
    p.add_argument("--group-size", type=int, default=8, help="subnets per group (8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True,
                   help="folder for history.json, best.json and each generation's files")
    p.add_argument("--supernet", type=Path, default=None,
                   help="checkpoint from train-supernet (default: train one first)")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                   help=f"epochs of the supernet trained without --supernet "
                   f"({DEFAULT_EPOCHS})")
    p.add_argument("-t", "--target", default="neurosim-22nm",
                   help="target preset name or file (default neurosim-22nm)")
    p.add_argument("--max-latency-ns", type=float, default=None,
                   help="subnets slower than this in their group's plan are infeasible")
    p.add_argument("--max-macs", type=int, default=None,
                   help="never evaluate subnets with more MACs per image")
    p.add_argument("--top-k", type=int, default=None,
                   help="parents kept by evolution (default half the group)")
    common(p)

    p = subparsers.add_parser("train-supernet", help="train a supernet on images")
    _add_model_options(p, defaults=True)
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                   help=f"passes over the training split ({DEFAULT_EPOCHS})")
    p.add_argument("--rule", choices=["spos", "fair"], default="spos",
                   help="one uniform path per step (spos) or strict fairness (fair)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=0.02, help="initial learning rate (0.02)")
    p.add_argument("-o", "--output", type=Path, required=True, help="checkpoint to write")
    common(p)


def _load_data(path: Path | None, input_size: int) -> Any:
    from enasa_compiler.models.data import load_digits_dataset, load_npz, train_val_split

    data = load_npz(path) if path is not None else load_digits_dataset(input_size)
    return train_val_split(data, VAL_FRACTION, seed=_SPLIT_SEED)


def _train(args: argparse.Namespace, space: str, width: float, rule: str) -> Any:
    """Train a supernet as ``args`` say; return (supernet, config, stats, val split)."""
    from enasa_compiler.models.checkpoint import SupernetConfig, build_supernet
    from enasa_compiler.models.train import train_supernet

    train, val = _load_data(args.data, args.input_size)
    config = SupernetConfig(space=space, width_mult=width, input_size=train.input_size,
                            num_classes=train.num_classes, stage_repeats=args.stage_repeats,
                            seed=args.seed, epochs=args.epochs, rule=rule)
    supernet = build_supernet(config)
    stats = train_supernet(supernet, train, rule=rule, epochs=args.epochs, seed=args.seed,
                           batch_size=getattr(args, "batch_size", 16),
                           lr=getattr(args, "lr", 0.02), progress=_progress(args))
    return supernet, config, stats, (train, val)


def _progress(args: argparse.Namespace) -> bool:
    return not (args.no_progress or getattr(args, "quiet", False))


def _print(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, indent=1, sort_keys=True))
    elif not getattr(args, "quiet", False):
        print(text)


def run_train(args: argparse.Namespace) -> int:
    """Run ``enasa train-supernet``; return the exit code."""
    import random

    from enasa_compiler.models.checkpoint import save_checkpoint
    from enasa_compiler.models.sampling import sample_uniform
    from enasa_compiler.models.train import evaluate_accuracy, recalibrate_batchnorm

    if args.stage_repeats is not None and args.space != "spos":
        raise InputError("--stage-repeats applies to --space spos only")
    supernet, config, stats, (train, val) = _train(args, args.space, args.width, args.rule)
    save_checkpoint(args.output, supernet, config)
    # A glimpse of quality: a few random subnets scored the SPOS way.
    rng = random.Random(args.seed)
    accuracies = []
    for _ in range(4):
        arch = sample_uniform(supernet.num_layers, supernet.num_choices, rng)
        recalibrate_batchnorm(supernet, arch, train)
        accuracies.append(evaluate_accuracy(supernet, arch, val))
    mean = sum(accuracies) / len(accuracies)
    losses = stats.epoch_losses
    _print(args, {"checkpoint": str(args.output), "config": config.to_dict(),
                  "epoch_losses": losses, "seconds": stats.seconds,
                  "sampled_val_accuracy": accuracies},
           f"wrote {args.output}: {config.space} supernet, width {config.width_mult}, "
           f"{config.epochs} epochs ({config.rule} rule) in {stats.seconds:.0f} s; loss "
           f"{losses[0] if losses else float('nan'):.3f} -> "
           f"{losses[-1] if losses else float('nan'):.3f}; 4 random subnets: "
           f"{mean:.1%} mean validation accuracy")
    return 0


def _supernet_for_search(args: argparse.Namespace) -> Any:
    from enasa_compiler.models.checkpoint import load_checkpoint

    if args.supernet is None:
        space = args.space or "spos"
        width = args.width if args.width is not None else 0.25
        if args.stage_repeats is not None and space != "spos":
            raise InputError("--stage-repeats applies to --space spos only")
        source = args.data or "the built-in digits dataset"
        print(f"enasa search: no --supernet given; training a {space} supernet (width "
              f"{width}, {args.epochs} epochs) on {source} first", file=sys.stderr)
        supernet, config, _, split = _train(args, space, width, "spos")
        return supernet, config, split
    supernet, config = load_checkpoint(args.supernet)
    for option, wanted, have in (("--space", args.space, config.space),
                                 ("--width", args.width, config.width_mult)):
        if wanted is not None and wanted != have:
            raise InputError(f"{option} {wanted} does not match the checkpoint's {have}")
    train, val = _load_data(args.data, config.input_size)
    return supernet, config, (train, val)


def run_search(args: argparse.Namespace) -> int:
    """Run ``enasa search``; return the exit code."""
    from enasa_compiler.atomic import write_atomic
    from enasa_compiler.models.search import SearchConfig, search

    config = SearchConfig(strategy=args.strategy, generations=args.generations,
                          group_size=args.group_size, seed=args.seed, top_k=args.top_k,
                          max_macs=args.max_macs, max_latency_ns=args.max_latency_ns,
                          target=args.target)
    supernet, supernet_config, (train, val) = _supernet_for_search(args)
    out = Path(args.out)
    result = search(supernet, train, val, config, out_dir=out, progress=_progress(args))
    header = {"supernet": supernet_config.to_dict(), "search": result.config,
              "seconds": result.seconds}
    write_atomic(out / "history.json",
                 json.dumps({**header, "history": result.history}, indent=1) + "\n")
    write_atomic(out / "best.json", json.dumps({**header, "best": result.best}, indent=1)
                 + "\n")
    best = result.best
    text = (f"searched {len(result.history)} subnets ({args.strategy}) in "
            f"{result.seconds:.0f} s; wrote {out / 'history.json'} and {out / 'best.json'}")
    if best is None:
        text += "; no subnet met the latency limit"
    else:
        text += (f"\nbest arch {best['arch']}: accuracy {best['accuracy']:.1%}, latency "
                 f"{best['latency_ns'] / 1e3:.1f} us, energy "
                 f"{best['energy_pj'] / 1e6:.3f} uJ, group dedup "
                 f"{best['group_dedup_node_ratio']:.2f}x")
    _print(args, {"history": str(out / "history.json"), "best": best}, text)
    return 0
