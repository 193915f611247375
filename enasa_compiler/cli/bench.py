"""``enasa bench``: the paper's comparison on one workload, measured in one run.

Kept apart from :mod:`enasa_compiler.cli` like the other long commands; ``cli``
registers it with :func:`add_bench_parser` and dispatches to :func:`run_bench`.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from enasa_compiler.atomic import json_text
from enasa_compiler.cli._output import show_progress

logger = logging.getLogger(__name__)

__all__ = ["add_bench_parser", "run_bench"]


def add_bench_parser(
    subparsers: argparse._SubParsersAction[Any],
    common: Callable[[argparse.ArgumentParser], None],
) -> argparse.ArgumentParser:
    """Register the ``bench`` command (see :func:`run_bench`)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bench", help="ENASA flow vs single-network CIM, resident, CPU and NASA baselines",
        description="Run the distinct subnets of K generations of G full-size SPOS and "
                    "FairNAS subnets on N images (pipelined plans) through the ENASA flow "
                    "and the baselines, compare OPS with FCFS on a capacity-limited chip; "
                    "write results.json, results.md and PNG plots into --out.")
    parser.add_argument("--out", type=Path, required=True, help="results folder")
    parser.add_argument("--quick", action="store_true",
                        help="small settings (2 generations of 4 subnets, 1000 images, "
                             "8 CPU images, ranking G=4 only): a few minutes on two cores")
    parser.add_argument("--spaces", nargs="+", choices=["spos", "fairnas"], default=None)
    parser.add_argument("--generations", type=int, default=None, help="K (full: 4)")
    parser.add_argument("--group-size", type=int, default=None, help="G (full: 16)")
    parser.add_argument("--images", type=int, default=None,
                        help="N images per subnet, pipelined (default 10000, the paper's)")
    parser.add_argument("--cpu-images", type=int, default=None,
                        help="images measured per subnet on the CPU (default 64)")
    parser.add_argument("--cpu-batches", type=int, nargs="+", default=None, metavar="B",
                        help="onnxruntime batch sizes to try (default 1 8 32)")
    parser.add_argument("--cpu-repeats", type=int, default=None,
                        help="timed CPU runs per subnet (default 3)")
    parser.add_argument("--ranking-groups", type=int, nargs="+", default=None, metavar="G",
                        help="group sizes of OPS vs FCFS on the edge target (default 4 16)")
    parser.add_argument("--no-ranking", action="store_true",
                        help="skip OPS vs FCFS on the edge target")
    parser.add_argument("--stagewise-ablation", action="store_true",
                        help="also run (a) on uniformly drawn groups")
    parser.add_argument("--input-size", type=int, default=None,
                        help="image side (default 224, the full size)")
    parser.add_argument("-t", "--target", default=None, help="preset or target file")
    parser.add_argument("--solver", choices=["ops", "auto"], default=None,
                        help="ENASA flow's mapper (default ops)")
    parser.add_argument("--duplicate", default=None, metavar="throughput|off|auto|N",
                        help="weight duplication for every crossbar flow "
                             "(default throughput)")
    parser.add_argument("--scaling-groups", type=int, nargs="+", default=None,
                        metavar="G", help="group sizes of the scaling curve")
    parser.add_argument("--scaling", action="store_true",
                        help="also measure the scaling curves (group size, chip capacity)")
    parser.add_argument("--no-scaling", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-ablations", action="store_true", help="skip the ablations")
    parser.add_argument("--inputs", type=Path, default=None, metavar="DATA.npz",
                        help="images to evaluate on (default: seeded random images)")
    parser.add_argument("--seed", type=int, default=None)
    common(parser)
    return parser


def _config(args: argparse.Namespace, argv: list[str]) -> Any:
    from enasa_compiler.evaluation import BenchConfig, quick_config

    overrides: dict[str, Any] = {}
    for option, key in (("spaces", "spaces"), ("generations", "generations"),
                        ("group_size", "group_size"), ("images", "images"),
                        ("input_size", "input_size"), ("target", "target"),
                        ("solver", "solver"), ("scaling_groups", "scaling_groups"),
                        ("seed", "seed"), ("inputs", "inputs"),
                        ("duplicate", "duplicate"), ("cpu_images", "cpu_images"),
                        ("cpu_batches", "cpu_batches"), ("cpu_repeats", "cpu_repeats"),
                        ("ranking_groups", "ranking_groups")):
        value = getattr(args, option)
        if value is not None:
            overrides[key] = tuple(value) if isinstance(value, list) else value
    if args.scaling and not args.no_scaling:
        overrides["scaling_spaces"] = overrides.get("spaces", ("spos",))[:1]
    if args.no_ablations:
        overrides["ablations"] = False
    if args.stagewise_ablation:
        overrides["stagewise_ablation"] = True
    if args.no_ranking:
        overrides["ranking_groups"] = ()
    overrides["progress"] = show_progress(args)
    overrides["command"] = "enasa " + shlex.join(argv)
    if args.quick:
        return quick_config(args.out, **overrides)
    return BenchConfig(out=args.out, **overrides)


def run_bench(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    """Run the evaluation; print the headline (or the whole results as JSON)."""
    from enasa_compiler.atomic import check_output_path
    from enasa_compiler.evaluation import run_evaluation
    from enasa_compiler.evaluation.output import markdown_report

    check_output_path(args.out, folder=True)  # before minutes of work, not after
    config = _config(args, list(sys.argv[1:] if argv is None else argv))
    results = run_evaluation(config)
    if args.json:
        print(json_text(results, "the --json result", indent=1, sort_keys=True))
    elif not args.quiet:
        report = markdown_report(results)
        headline = report.split("## Headline", 1)[1].split("\n## ", 1)[0]
        print(f"## Headline{headline.rstrip()}\n\nwrote {config.out}/results.md, "
              f"results.json and plots")
    return 0
