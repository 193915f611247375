"""The ``enasa search`` and ``enasa train-supernet`` commands.

Kept apart from :mod:`enasa_compiler.cli` so that the compiler's commands do not import
torch: :func:`add_search_parsers` registers the two subcommands on the main parser, and
:func:`run_search` / :func:`run_train` run them. ``search`` runs its groups on the
executor ``--executor`` names (in process, or Ray) and ``--resume DIR`` continues a
search from the checkpoint it keeps in its output folder; a search that trains its own
supernet saves it there too, so that a resumed one scores with the same weights. User
errors are raised as :class:`~enasa_compiler.errors.InputError`, which the main CLI
prints as one line with exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enasa_compiler._text import about, plural
from enasa_compiler.atomic import check_output_path, json_text
from enasa_compiler.budgets import check_threads
from enasa_compiler.cli._output import emit
from enasa_compiler.errors import InputError

if TYPE_CHECKING:  # the models import torch, which the CLI loads only when it must
    from enasa_compiler.models.export import Supernet
    from enasa_compiler.models.train import TrainEstimate

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_EPOCHS", "VAL_FRACTION", "add_search_parsers", "run_search", "run_train"]

DEFAULT_EPOCHS = 10
"""Epochs of ``train-supernet`` and of the supernet ``search`` trains when given none."""
VAL_FRACTION = 0.2
"""Share of the images held out for validation; the split is seeded, so training never
sees the images ``search`` scores on."""
_SPLIT_SEED = 0
BUILTIN_DATA = ("digits", "shapes10")  # models.data.BUILTIN_DATASETS, without torch
_STRATEGIES = ("uniform", "fair", "stagewise", "evolution")
EXECUTORS = ("inprocess", "ray")  # search.executors.EXECUTORS, without importing torch
_SEARCH_DEFAULTS = {"strategy": "stagewise", "generations": 4, "group_size": 8,
                    "groups_per_generation": 1, "online": False, "seed": 0,
                    "target": "neurosim-22nm", "epochs": DEFAULT_EPOCHS, "input_size": 32}
_SUPERNET_FILE = "supernet.pt"  # where search keeps the supernet it trained, for --resume
_LONG_TRAINING_S = 120
"""Training estimated to take longer than this is called long in the up-front line,
which then says how to skip it next time."""


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
    parser.add_argument("--input-size", type=int, default=32 if defaults else None,
                        help="image side, a multiple of 32 (default 32)")
    parser.add_argument("--stage-repeats", type=_stage_repeats, default=None,
                        help="SPOS choice layers per stage, e.g. 1,1,2,1 (default 4,4,8,4)")
    parser.add_argument("--data", type=Path, default=None,
                        help="a built-in dataset, digits (scikit-learn's, upsampled; the "
                        "default) or shapes10 (6000 seeded, generated 32x32 images of 10 "
                        "shape-and-fill classes), or an .npz with float32 'images' "
                        "(N,C,H,W) and int64 'labels' (N,); write ./shapes10 for a file of "
                        "that name")
    parser.add_argument("--small-input", action="store_true",
                        default=False if defaults else None,
                        help="small-input stem for 32x32 images: fewer stride-2 stages "
                        "(stem stride 1, so 32x32 images end at 2x2, not 1x1)")
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
                              "compiled as groups")
    _add_model_options(p, defaults=False)
    # Options that shape results default to None so that --resume can tell what was given.
    p.add_argument("--strategy", choices=_STRATEGIES, default=None,
                   help="uniform/fair: random groups; evolution: SPOS; stagewise: ENASA "
                   "(default)")
    p.add_argument("--generations", type=int, default=None,
                   help="generations to evaluate (4); with --resume, may extend the search")
    p.add_argument("--group-size", type=int, default=None, help="subnets per group (8)")
    p.add_argument("--groups-per-generation", type=int, default=None,
                   help="independent groups per generation, run in parallel by --executor "
                   "ray (1)")
    p.add_argument("--online", action="store_true", default=None,
                   help="start each group from the crossbars of the same group of the "
                   "previous generation (online mapping)")
    p.add_argument("--seed", type=int, default=None, help="seed of the search (0)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for history.json, best.json, the checkpoint and each "
                   "generation's files")
    p.add_argument("--resume", type=Path, default=None, metavar="DIR",
                   help="continue the search whose checkpoint is in DIR")
    p.add_argument("--supernet", type=Path, default=None,
                   help="checkpoint from train-supernet (default: train one first)")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"epochs of the supernet trained without --supernet "
                   f"({DEFAULT_EPOCHS})")
    p.add_argument("-t", "--target", default=None,
                   help="target preset name or file (default neurosim-22nm)")
    p.add_argument("--max-latency-ns", type=float, default=None,
                   help="subnets slower than this in their group's plan are infeasible")
    p.add_argument("--max-macs", type=int, default=None,
                   help="never evaluate subnets with more MACs per image")
    p.add_argument("--top-k", type=int, default=None,
                   help="parents kept by evolution (default half the group)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch/onnxruntime threads per group (default torch's); results "
                   "depend on it, so compare runs with the same value")
    p.add_argument("--executor", choices=EXECUTORS, default="inprocess",
                   help="where groups run: here (inprocess, default) or on Ray")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join (default: start a local one)")
    p.add_argument("--workers", type=int, default=None,
                   help="CPUs of the local Ray cluster (default: the machine's)")
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
    p.add_argument("--schedule", choices=["linear", "cosine"], default="linear",
                   help="learning-rate decay to zero: linear (SPOS, default) or cosine")
    p.add_argument("--warmup-epochs", type=float, default=0.0,
                   help="epochs of linear learning-rate warm-up first (0)")
    p.add_argument("--adaptive-clip", type=float, default=None, metavar="RATIO",
                   help="cap each unit's gradient at RATIO of its weights' norm "
                   "(adaptive gradient clipping; 0.1 trains the full-depth spaces)")
    p.add_argument("--path-warmup-epochs", type=float, default=0.0,
                   help="spos rule: open the layers to random choices deepest first over "
                   "this many epochs (0: all at once)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default torch's); recorded in the checkpoint, as "
                   "the weights are reproducible bit for bit for the same count only")
    p.add_argument("-o", "--output", type=Path, required=True, help="checkpoint to write")
    p.add_argument("--force", action="store_true",
                   help="replace a read-only checkpoint file (never an input)")
    common(p)


def _data_source(path: Path | None) -> str | None:
    """Return what ``--data`` names: a built-in dataset's name, a resolved path or None."""
    if path is None or str(path) in BUILTIN_DATA:
        return None if path is None else str(path)
    return str(Path(path).resolve())


def _data_inputs(path: Path | None) -> list[Path]:
    """Return the files ``--data`` reads (none for a built-in dataset)."""
    return [] if path is None or str(path) in BUILTIN_DATA else [path]


def _load_data(source: Path | str | None, input_size: int) -> Any:
    from enasa_compiler.models.data import load_builtin, load_npz, train_val_split

    if source is None or str(source) in BUILTIN_DATA:
        data = load_builtin(str(source or "digits"), input_size)
    else:
        data = load_npz(source)
    return train_val_split(data, VAL_FRACTION, seed=_SPLIT_SEED)


def _train(args: argparse.Namespace, space: str, width: float, rule: str,
           announce: Callable[[Supernet, TrainEstimate], None] | None = None) -> Any:
    """Train a supernet as ``args`` say; return (supernet, config, stats, val split).

    ``announce`` is called with the supernet and the estimate of the run once its first
    steps are timed.
    """
    import torch

    from enasa_compiler.models.checkpoint import SupernetConfig, build_supernet
    from enasa_compiler.models.train import train_supernet

    train, val = _load_data(args.data, args.input_size)
    threads = getattr(args, "threads", None) or torch.get_num_threads()
    config = SupernetConfig(space=space, width_mult=width, input_size=train.input_size,
                            num_classes=train.num_classes, stage_repeats=args.stage_repeats,
                            seed=args.seed, epochs=args.epochs, rule=rule,
                            small_input=bool(args.small_input), threads=threads)
    supernet = build_supernet(config)
    on_estimate = None if announce is None else (
        lambda estimate: announce(supernet, estimate))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        stats = train_supernet(supernet, train, rule=rule, epochs=args.epochs,
                               seed=args.seed, batch_size=getattr(args, "batch_size", 16),
                               lr=getattr(args, "lr", 0.02),
                               schedule=getattr(args, "schedule", "linear"),
                               warmup_epochs=getattr(args, "warmup_epochs", 0.0),
                               adaptive_clip=getattr(args, "adaptive_clip", None),
                               path_warmup_epochs=getattr(args, "path_warmup_epochs", 0.0),
                               progress=_progress(args), on_estimate=on_estimate)
    finally:
        torch.set_num_threads(before)
    return supernet, config, stats, (train, val)


def _progress(args: argparse.Namespace) -> bool:
    """Progress bars go to an interactive stderr only, never with --quiet or --json."""
    return not (args.no_progress or getattr(args, "quiet", False)
                or getattr(args, "json", False)) and sys.stderr.isatty()


def _say(args: argparse.Namespace, text: str) -> None:
    """Tell the user ``text`` on stderr, above any progress bar.

    --quiet asks for errors only and --json for JSON only, so then the line goes to the
    log alone, which --verbose shows.
    """
    if getattr(args, "quiet", False) or getattr(args, "json", False):
        logger.info("%s", text)
        return
    from tqdm import tqdm

    tqdm.write(f"enasa {args.command}: {text}", file=sys.stderr)



def run_train(args: argparse.Namespace) -> int:
    """Run ``enasa train-supernet``; return the exit code."""
    import random

    from enasa_compiler.models.checkpoint import save_checkpoint
    from enasa_compiler.models.sampling import sample_uniform
    from enasa_compiler.models.train import evaluate_accuracy, recalibrate_batchnorm

    if args.stage_repeats is not None and args.space != "spos":
        raise InputError("--stage-repeats applies to --space spos only")
    # Before training, which takes minutes: a checkpoint that cannot be written then
    # would throw the work away.
    check_threads(getattr(args, "threads", None), "--threads")
    check_output_path(args.output, _data_inputs(args.data), force=args.force)
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
    emit(args, {"checkpoint": str(args.output), "config": config.to_dict(),
                  "epoch_losses": losses, "seconds": stats.seconds,
                  "sampled_val_accuracy": accuracies},
           f"wrote {args.output}: {config.space} supernet, width {config.width_mult}, "
           f"{plural(config.epochs, 'epoch')} ({config.rule} rule) in {stats.seconds:.0f} s; "
           f"loss {losses[0] if losses else float('nan'):.3f} -> "
           f"{losses[-1] if losses else float('nan'):.3f}; 4 random subnets: "
           f"{mean:.1%} mean validation accuracy")
    return 0


def _supernet_for_search(args: argparse.Namespace, out: Path) -> Any:
    """Return (supernet, config, (train, val), where the checkpoint is) for a new search."""
    from enasa_compiler.models.checkpoint import load_checkpoint, save_checkpoint

    if args.supernet is None:
        space = args.space or "spos"
        width = args.width if args.width is not None else 0.25
        if args.stage_repeats is not None and space != "spos":
            raise InputError("--stage-repeats applies to --space spos only")
        source = (f"the built-in {args.data or 'digits'} dataset"
                  if _data_source(args.data) in (None, *BUILTIN_DATA) else args.data)

        def announce(supernet: Supernet, estimate: TrainEstimate) -> None:
            text = (f"no --supernet given; training a {space} supernet (width {width}, "
                    f"{plural(supernet.num_layers, 'choice layer')}) on {source} first: "
                    f"{plural(estimate.total_steps, 'step')} in "
                    f"{plural(args.epochs, 'epoch')}, {about(estimate.total_s)} here "
                    f"({estimate.seconds_per_step:.2f} s a step)")
            if estimate.total_s > _LONG_TRAINING_S:
                text += (f"; a long wait, but later searches can skip it with --supernet "
                         f"{out / _SUPERNET_FILE}")
            _say(args, text)

        supernet, config, _, split = _train(args, space, width, "spos", announce)
        save_checkpoint(out / _SUPERNET_FILE, supernet, config)
        return supernet, config, split, _SUPERNET_FILE
    supernet, config = load_checkpoint(args.supernet)
    for option, wanted, have in (("--space", args.space, config.space),
                                 ("--width", args.width, config.width_mult),
                                 ("--small-input", args.small_input, config.small_input)):
        if wanted is not None and wanted != have:
            raise InputError(f"{option} {wanted} does not match the checkpoint's {have}")
    train, val = _load_data(args.data, config.input_size)
    return supernet, config, (train, val), str(args.supernet.resolve())


def _new_search(args: argparse.Namespace) -> tuple[Any, ...]:
    from enasa_compiler.search.loop import SearchConfig

    if args.out is None:
        raise InputError("give --out DIR for a new search, or --resume DIR")
    for name, value in _SEARCH_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    config = SearchConfig(strategy=args.strategy, generations=args.generations,
                          group_size=args.group_size, seed=args.seed, top_k=args.top_k,
                          max_macs=args.max_macs, max_latency_ns=args.max_latency_ns,
                          target=args.target,
                          groups_per_generation=args.groups_per_generation,
                          online=args.online, threads=args.threads)
    out = Path(args.out)
    supernet, supernet_config, split, origin = _supernet_for_search(args, out)
    inputs = {"supernet": origin, "data": _data_source(args.data)}
    return config, out, supernet, supernet_config, split, inputs


def _check_unchanged(args: argparse.Namespace, saved: dict[str, Any],
                     supernet: dict[str, Any], inputs: dict[str, Any], out: Path) -> None:
    """Refuse options given with --resume that differ from the search being resumed."""
    data = _data_source(args.data)
    checkpoint = None if args.supernet is None else str(Path(args.supernet).resolve())
    given = {
        "--strategy": (args.strategy, saved["strategy"]),
        "--group-size": (args.group_size, saved["group_size"]),
        "--groups-per-generation": (args.groups_per_generation,
                                    saved["groups_per_generation"]),
        "--online": (args.online, saved["online"]),
        "--seed": (args.seed, saved["seed"]),
        "--target": (args.target, saved["target"]),
        "--max-latency-ns": (args.max_latency_ns, saved["max_latency_ns"]),
        "--max-macs": (args.max_macs, saved["max_macs"]),
        "--top-k": (args.top_k, saved["top_k"]),
        "--threads": (args.threads, saved["threads"]),
        "--space": (args.space, supernet["space"]),
        "--width": (args.width, supernet["width_mult"]),
        "--input-size": (args.input_size, supernet["input_size"]),
        "--small-input": (args.small_input or None, supernet.get("small_input", False)),
        "--stage-repeats": (None if args.stage_repeats is None else list(args.stage_repeats),
                            supernet["stage_repeats"]),
        "--epochs": (args.epochs, supernet["epochs"]),
        "--data": (data, inputs.get("data")),
        "--supernet": (checkpoint, str((out / inputs["supernet"]).resolve())),
    }
    for option, (value, have) in given.items():
        if value is not None and value != have:
            raise InputError(f"{option} {value} differs from the search being resumed "
                             f"({have}); leave it out to resume")


def _resumed_search(args: argparse.Namespace) -> tuple[Any, ...]:
    from enasa_compiler.models.checkpoint import load_checkpoint
    from enasa_compiler.search.loop import SearchConfig, read_checkpoint

    out = Path(args.resume)
    if args.out is not None and Path(args.out).resolve() != out.resolve():
        raise InputError("--resume continues in its own folder; leave --out out")
    state = read_checkpoint(out)
    inputs = state["inputs"]
    if not isinstance(inputs, dict) or not isinstance(inputs.get("supernet"), str):
        raise InputError(f"{out}: the checkpoint does not say where its supernet is")
    saved = dict(state["config"])
    supernet, supernet_config = load_checkpoint(out / inputs["supernet"])
    _check_unchanged(args, saved, supernet_config.to_dict(), inputs, out)
    if args.generations is not None:
        saved["generations"] = args.generations
    try:
        config = SearchConfig(**saved)
    except TypeError as exc:
        raise InputError(f"{out}: checkpoint config does not fit this version ({exc})") \
            from exc
    data = inputs.get("data")
    split = _load_data(data, supernet_config.input_size)
    return config, out, supernet, supernet_config, split, inputs


def run_search(args: argparse.Namespace) -> int:
    """Run ``enasa search``; return the exit code."""
    from enasa_compiler.atomic import write_atomic
    from enasa_compiler.search.executors import make_executor
    from enasa_compiler.search.loop import search

    resume = args.resume is not None
    check_threads(args.threads, "--threads")
    check_threads(args.workers, "--workers")
    if args.out is not None:
        check_output_path(args.out, folder=True)
    if args.executor != "ray" and (args.address is not None or args.workers is not None):
        raise InputError("--address and --workers apply to --executor ray only")
    config, out, supernet, supernet_config, (train, val), inputs = (
        _resumed_search(args) if resume else _new_search(args))
    executor = make_executor(args.executor, address=args.address, workers=args.workers)
    try:
        result = search(supernet, train, val, config, out_dir=out, progress=_progress(args),
                        executor=executor, resume=resume, inputs=inputs)
    finally:
        executor.close()
    # No timing here: the same seed gives the same bytes, on any executor, resumed or not.
    header = {"supernet": supernet_config.to_dict(), "search": result.config}
    history = json_text({**header, "history": result.history}, "history.json", indent=1)
    write_atomic(out / "history.json", history + "\n")
    best_text = json_text({**header, "best": result.best}, "best.json", indent=1)
    write_atomic(out / "best.json", best_text + "\n")
    best = result.best
    text = (f"searched {plural(len(result.history), 'subnet')} ({config.strategy}, "
            f"{executor.name} executor) in {result.seconds:.0f} s; wrote "
            f"{out / 'history.json'} and {out / 'best.json'}")
    if best is None:
        text += "; no subnet met the latency limit"
    else:
        text += (f"\nbest arch {best['arch']}: accuracy {best['accuracy']:.1%}, latency "
                 f"{best['latency_ns'] / 1e3:.1f} us, energy "
                 f"{best['energy_pj'] / 1e6:.3f} uJ, group dedup "
                 f"{best['group_dedup_node_ratio']:.2f}x")
    emit(args, {"history": str(out / "history.json"), "best": best,
                  "seconds": result.seconds, "executor": executor.name}, text)
    return 0
