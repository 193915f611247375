"""The ``enasa`` command line.

Exit codes: 0 success, 1 a check failed (invalid plan), 2 bad input or usage,
3 an internal error (a bug in the toolchain). Errors are one line on stderr;
``--debug`` shows the traceback instead. Output files are written atomically, so
a failed command leaves none behind.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from enasa_compiler.errors import EnasaError

logger = logging.getLogger(__name__)

__all__ = ["main"]

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL_ERROR = 3


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exit code 2."""

    def error(self, message: str) -> Any:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="enasa", description="Compile groups of NAS subnets onto ReRAM "
                     "compute-in-memory crossbars.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("compile", help="compile a group of ONNX subnets into a plan")
    p.add_argument("models", nargs="+", type=Path, help="ONNX subnet files (one group)")
    p.add_argument("-t", "--target", default="neurosim-22nm",
                   help="target preset name or target file (default: neurosim-22nm)")
    p.add_argument("-o", "--output", type=Path, required=True, help="plan file to write")
    p.add_argument("--solver", default="ops", choices=["ops", "cpsat", "auto", "fcfs"],
                   help="ops: the operator-parallel scheduler (fast); cpsat: the exact "
                   "model started from the OPS plan; auto: OPS improved by CP-SAT within "
                   "the time limit when the group is small enough; fcfs: OPS without its "
                   "ranking (first come, first served), for ablations")
    p.add_argument("--time-limit", type=float, default=10.0, metavar="SECONDS",
                   help="CP-SAT budget (deterministic time; default 10)")
    p.add_argument("--nondeterministic", action="store_true",
                   help="let CP-SAT use all cores and wall-clock time (plans may differ "
                   "from run to run)")
    p.add_argument("--mode", default="auto", choices=["auto", "resident", "dynamic"],
                   help="weights resident (programmed once) or dynamic (programmed on use)")
    p.add_argument("--batch", type=int, default=1, help="images per run (default 1)")
    p.add_argument("--initial-state", type=Path, default=None, metavar="PREV_PLAN.json",
                   help="online mapping: start from the crossbar contents a previous plan "
                   "left; tiles already in place are not written again")
    p.add_argument("--duplicate", default="off", metavar="auto|off|N",
                   help="weight duplication: auto gives spare crossbars of a resident "
                   "mapping to the slowest operators; N copies every crossbar operator's "
                   "weights N times (default off)")
    _common(p)

    p = sub.add_parser("validate", help="check a plan; exit 1 if invalid")
    p.add_argument("plan", type=Path)
    p.add_argument("--models", nargs="+", type=Path, default=None,
                   help="the ONNX subnets the plan claims to map")
    _common(p)

    p = sub.add_parser("simulate", help="cost report of a plan; --execute runs it")
    p.add_argument("plan", type=Path)
    p.add_argument("--execute", action="store_true",
                   help="run the plan numerically through its tiles and compare each subnet "
                   "with onnxruntime (needs --models and --inputs)")
    p.add_argument("--models", nargs="+", type=Path, default=None,
                   help="the plan's ONNX subnets, in order")
    p.add_argument("--inputs", type=Path, default=None, metavar="DATA.npz",
                   help="images (N x C x H x W float32) and optional labels (N int64)")
    p.add_argument("--quantized", action="store_true",
                   help="also run the quantized crossbar datapath (bit slices, bit-serial "
                   "inputs, ADC) and report top-1 agreement")
    p.add_argument("--limit", type=int, default=None, help="use the first N images")
    p.add_argument("--breakdown", action="store_true",
                   help="add the per-operator (per-layer) table: latency, read time, "
                   "energy by component, leakage")
    _common(p)

    p = sub.add_parser("targets", help="list target presets")
    _common(p)

    from enasa_compiler.cli_bench import add_bench_parser
    from enasa_compiler.cli_report import add_report_parser
    from enasa_compiler.cli_search import add_search_parsers

    add_report_parser(sub, _common)
    add_search_parsers(sub, _common)
    add_bench_parser(sub, _common)

    p = sub.add_parser("demo", help="the whole flow on a built-in small supernet")
    p.add_argument("--subnets", type=int, default=8, help="group size (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-t", "--target", default="neurosim-22nm")
    p.add_argument("-o", "--output-dir", type=Path, default=None,
                   help="keep the exported subnets and the plan here")
    _common(p)
    return parser


def _show_progress(args: argparse.Namespace) -> bool:
    """Progress bars go to an interactive stderr only, and never with --quiet/--json."""
    return not (args.quiet or args.json) and sys.stderr.isatty()


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    if args.json:
        print(json.dumps(data, indent=1, sort_keys=True))
    elif not args.quiet:
        print(text)


def _cmd_compile(args: argparse.Namespace) -> int:
    from enasa_compiler.pipeline import compile_detailed

    plan = compile_detailed(args.models, args.target, solver=args.solver, mode=args.mode,
                            batch=args.batch, time_limit_s=args.time_limit,
                            deterministic=not args.nondeterministic,
                            initial_state=args.initial_state,
                            progress=_show_progress(args),
                            duplicate=args.duplicate).plan
    plan.save(args.output)
    t = plan.totals
    dedup = plan.dedup
    tiles = plan.tiles()
    in_place = sum(tiles[p.tile].cells for p in plan.initial)
    reuse = (f"; {len(plan.initial)} tiles ({in_place} cells) already in place, not "
             "written again" if plan.initial else "")
    bound = plan.bounds.get("lower_bound_ns")
    quality = (f", within {plan.bounds['gap']:.1%} of the lower bound {bound / 1e3:.1f} us"
               if bound is not None else "")
    _emit(args, {"plan": str(args.output), "mode": plan.mode, "solver": plan.solver,
                 "totals": t.__dict__, "dedup": dedup, "bounds": plan.bounds,
                 "cells_in_place": in_place},
          f"wrote {args.output}: {len(plan.subnets)} subnets, {len(plan.operators)} "
          f"operators ({dedup.get('nodes_removed', 0)} shared nodes removed), {plan.mode} "
          f"mapping on {t.crossbars_used} crossbars, makespan {t.makespan_ns / 1e3:.1f} us, "
          f"energy {t.energy_pj / 1e6:.3f} uJ, utilization {t.utilization:.2%} "
          f"({plan.solver}{quality}){reuse}")
    return EXIT_OK


def _cmd_validate(args: argparse.Namespace) -> int:
    from enasa_compiler.validator import validate

    violations = validate(args.plan, models=args.models)
    if args.json:
        print(json.dumps({"valid": not violations,
                          "violations": [{"kind": v.kind, "message": v.message}
                                         for v in violations]}, indent=1))
    elif violations:
        for violation in violations:
            print(str(violation))
    elif not args.quiet:
        print(f"{args.plan}: valid")
    return EXIT_CHECK_FAILED if violations else EXIT_OK


def _cmd_simulate(args: argparse.Namespace) -> int:
    from enasa_compiler.plan import Plan
    from enasa_compiler.report import check_plan_target, cost_report, format_cost_report
    from enasa_compiler.validator import validate

    if args.execute:
        return _execute(args)
    # A plan's embedded target is input like a target file: a bad one exits 2, named.
    check_plan_target(Plan.load(args.plan), str(args.plan))
    # A report of a plan that does not hold together would be numbers about nothing.
    violations = validate(args.plan)
    if violations:
        print(f"enasa simulate: {args.plan} is not a valid plan ({len(violations)} "
              f"violations; first: {violations[0]}); see enasa validate", file=sys.stderr)
        return EXIT_CHECK_FAILED
    plan = Plan.load(args.plan)
    report = cost_report(plan, breakdown=args.breakdown)
    _emit(args, report, format_cost_report(report))
    return EXIT_OK


def _execute(args: argparse.Namespace) -> int:
    from enasa_compiler.errors import InputError
    from enasa_compiler.execution import (
        PlanInvalidError,
        execute_and_compare,
        format_execution,
    )

    if not args.models or args.inputs is None:
        raise InputError("--execute needs --models (the plan's ONNX subnets) and --inputs")
    try:
        report = execute_and_compare(args.plan, args.models, args.inputs,
                                     quantized=args.quantized, limit=args.limit)
    except PlanInvalidError as exc:
        print(f"enasa simulate: {args.plan} does not validate against the models ({exc}); "
              "see enasa validate --models", file=sys.stderr)
        return EXIT_CHECK_FAILED
    _emit(args, report, format_execution(report))
    return EXIT_OK


def _cmd_targets(args: argparse.Namespace) -> int:
    from enasa_compiler.targets import list_presets, load_target

    rows = []
    for name in list_presets():
        target = load_target(name)
        rows.append({"name": name, "crossbars": target.chip.crossbars,
                     "crossbar": f"{target.crossbar.rows}x{target.crossbar.cols}",
                     "cell_bits": target.crossbar.cell_bits,
                     "description": target.description})
    text = "\n".join(f"{r['name']:<16} {r['crossbars']:>6} x {r['crossbar']} "
                     f"{r['cell_bits']} bit/cell  {r['description']}" for r in rows)
    _emit(args, {"targets": rows}, text)
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from enasa_compiler.demo import format_demo, run_demo

    result = run_demo(group_size=args.subnets, seed=args.seed, target=args.target,
                      output_dir=args.output_dir)
    _emit(args, result, format_demo(result))
    return EXIT_OK if result["valid"] else EXIT_CHECK_FAILED


def _cmd_report(args: argparse.Namespace) -> int:
    from enasa_compiler.cli_report import run_report

    return run_report(args)


def _cmd_bench(args: argparse.Namespace) -> int:
    from enasa_compiler.cli_bench import run_bench

    return run_bench(args, args.argv)


def _cmd_search(args: argparse.Namespace) -> int:
    from enasa_compiler.cli_search import run_search

    return run_search(args)


def _cmd_train(args: argparse.Namespace) -> int:
    from enasa_compiler.cli_search import run_train

    return run_train(args)


_COMMANDS = {
    "bench": _cmd_bench,
    "compile": _cmd_compile,
    "report": _cmd_report,
    "search": _cmd_search,
    "train-supernet": _cmd_train,
    "validate": _cmd_validate,
    "simulate": _cmd_simulate,
    "targets": _cmd_targets,
    "demo": _cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``enasa`` command; returns the exit code."""
    args = _build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    level = logging.WARNING
    if args.verbose:
        level = logging.INFO
    if args.quiet:
        level = logging.ERROR
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _COMMANDS[args.command](args)
    except EnasaError as exc:
        if args.debug:
            raise
        print(f"enasa {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"enasa {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: still one line, never half a file
        if args.debug:
            raise
        print(f"enasa {args.command}: internal error: {type(exc).__name__}: {exc} "
              "(rerun with --debug for the traceback and report it)", file=sys.stderr)
        return EXIT_INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
