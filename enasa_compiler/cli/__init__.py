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
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enasa_compiler import __version__, budgets
from enasa_compiler.atomic import remove_pending
from enasa_compiler.cli._output import PipeSafeStdout, emit, print_json_error, show_progress
from enasa_compiler.errors import CheckFailedError, EnasaError

if TYPE_CHECKING:
    from enasa_compiler.plan import Plan

logger = logging.getLogger(__name__)

__all__ = ["main"]

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL_ERROR = 3


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exit code 2.

    With ``--json`` anywhere on the command line the error is also one JSON object on
    stdout, like every other outcome, so a CI job that parses stdout sees it.
    """

    json_requested = False

    def error(self, message: str) -> Any:
        if _Parser.json_requested:
            print_json_error("usage", f"{self.prog}: {message}", EXIT_BAD_INPUT)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--max-memory", type=int, default=None, metavar="MIB",
                        help="largest tensor, .npz or folding result an input may declare "
                        "(default 1024, or ENASA_MAX_MEMORY_MB; docs/validation.md)")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="enasa", description="Compile groups of NAS subnets onto ReRAM "
                     "compute-in-memory crossbars.")
    parser.add_argument("--version", action="version", version=f"enasa {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("compile", help="compile a group of ONNX subnets into a plan")
    p.add_argument("models", nargs="+", type=Path, help="ONNX subnet files (one group)")
    p.add_argument("-t", "--target", default="neurosim-22nm",
                   help="target preset name or target file (default: neurosim-22nm)")
    p.add_argument("-o", "--output", type=Path, required=True, help="plan file to write")
    p.add_argument("--force", action="store_true",
                   help="replace a read-only output file (never an input, device or FIFO)")
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
    p.add_argument("--duplicate", default="throughput", metavar="throughput|auto|off|N",
                   help="weight duplication: throughput (default) gives copies to the "
                   "pipeline's bottleneck to minimise its initiation interval; auto gives "
                   "spare crossbars of a resident mapping to the slowest operators; N "
                   "copies every crossbar operator's weights N times; off: none")
    p.add_argument("--images", type=int, default=10_000, metavar="N",
                   help="images the pipelined schedule runs (default 10000, the ENASA "
                   "paper's setting; the plan's size does not depend on it)")
    p.add_argument("--pack", action=argparse.BooleanOptionalAction, default=False,
                   help="resident plans: put the small tiles of several crossbars into one "
                   "where their cells fit side by side and their pipeline slots never "
                   "overlap (the II stays); default --no-pack")
    _common(p)

    p = sub.add_parser("validate", help="check plans; exit 1 if one is invalid")
    p.add_argument("plan", nargs="+", type=Path,
                   help="plan files (several, as a pre-commit hook passes them: each line "
                   "of the report then starts with the plan's name)")
    p.add_argument("--models", nargs="+", type=Path, default=None,
                   help="the ONNX subnets the plan claims to map (one plan only); with "
                   "them the plan is proven, not only checked for consistency")
    p.add_argument("-t", "--target", default=None, metavar="TARGET",
                   help="the preset or target file the plan claims to be made for (needed "
                   "to prove a plan for a custom target)")
    p.add_argument("--initial-state", type=Path, default=None, metavar="PREV_PLAN.json",
                   help="the previous plan an online plan started from: its final "
                   "crossbar contents must be the plan's initial_state")
    p.add_argument("--junit", type=Path, default=None, metavar="FILE",
                   help="also write a JUnit XML report (a test case per check) for CI, "
                   "for invalid plans and plans that do not load too")
    _common(p)

    p = sub.add_parser("simulate", help="cost report of a plan; --execute runs it")
    p.add_argument("plan", type=Path)
    p.add_argument("--execute", action="store_true",
                   help="run the plan numerically through its tiles and compare each subnet "
                   "with onnxruntime (needs --models and --inputs)")
    p.add_argument("--models", nargs="+", type=Path, default=None,
                   help="the plan's ONNX subnets, in order")
    p.add_argument("--inputs", type=Path, default=None, metavar="DATA.npz",
                   help="an array named like the models' input (any rank, its dtype; "
                   "first axis the samples), or images (N x C x H x W float32); optional "
                   "labels (N int64)")
    p.add_argument("--pipelined", action="store_true",
                   help="with --execute: follow the plan's pipelined schedule (one image "
                   "at a time through its segments) instead of its batch schedule")
    p.add_argument("--atol", type=float, default=None, metavar="ABS",
                   help="with --execute: exit 1 unless every output is within ABS + RTOL "
                   "x |onnxruntime| (numpy.allclose) of onnxruntime's")
    p.add_argument("--rtol", type=float, default=None, metavar="RTOL",
                   help="with --execute: the relative part of that tolerance (default 0)")
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

    from enasa_compiler.cli.bench import add_bench_parser
    from enasa_compiler.cli.check import add_check_parser
    from enasa_compiler.cli.report import add_report_parser
    from enasa_compiler.cli.search import add_search_parsers

    add_report_parser(sub, _common)
    add_search_parsers(sub, _common)
    add_bench_parser(sub, _common)
    add_check_parser(sub, _common)

    p = sub.add_parser("demo", help="the whole flow on a built-in small supernet")
    p.add_argument("--subnets", type=int, default=8, help="group size (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-t", "--target", default="neurosim-22nm")
    p.add_argument("-o", "--output-dir", type=Path, default=None,
                   help="keep the exported subnets and the plan here")
    _common(p)
    return parser


def _cmd_compile(args: argparse.Namespace) -> int:
    from enasa_compiler._text import plural
    from enasa_compiler.atomic import check_output_path
    from enasa_compiler.pipeline import compile_detailed

    inputs = [*args.models, args.target]
    if args.initial_state is not None:
        inputs.append(args.initial_state)
    check_output_path(args.output, inputs, force=args.force)

    plan = compile_detailed(args.models, args.target, solver=args.solver, mode=args.mode,
                            batch=args.batch, time_limit_s=args.time_limit,
                            deterministic=not args.nondeterministic,
                            initial_state=args.initial_state,
                            progress=show_progress(args),
                            duplicate=args.duplicate, images=args.images,
                            pack_tiles=args.pack).plan
    plan.save(args.output)
    t = plan.totals
    dedup = plan.dedup
    tiles = plan.tiles()
    in_place = sum(tiles[p.tile].cells for p in plan.initial)
    reuse = (f"; {plural(len(plan.initial), 'tile')} ({in_place} cells) already in place, not "
             "written again" if plan.initial else "")
    bound = plan.bounds.get("lower_bound_ns")
    quality = (f", within {plan.bounds['gap']:.1%} of the lower bound {bound / 1e3:.1f} us"
               if bound is not None else "")
    emit(args, {"plan": str(args.output), "mode": plan.mode, "solver": plan.solver,
                 "totals": t.__dict__, "dedup": dedup, "bounds": plan.bounds,
                 "pipeline": (None if plan.pipeline is None else
                              {"totals": plan.pipeline.totals.__dict__,
                               "bounds": plan.pipeline.bounds}),
                 "cells_in_place": in_place},
          f"wrote {args.output}: {plural(len(plan.subnets), 'subnet')}, "
          f"{plural(len(plan.operators), 'operator')} "
          f"({plural(dedup.get('nodes_removed', 0), 'shared node')} removed), {plan.mode} "
          f"mapping on {plural(t.crossbars_used, 'crossbar')}, makespan "
          f"{t.makespan_ns / 1e3:.1f} us, "
          f"energy {t.energy_pj / 1e6:.3f} uJ, utilization {t.utilization:.2%} "
          f"({plan.solver}{quality}){reuse}" + _pipeline_line(plan))
    return EXIT_OK


def _pipeline_line(plan: Plan) -> str:
    """Describe the pipelined schedule's figures: the second line of compile's report."""
    if plan.pipeline is None:
        return "\nno pipelined schedule (dynamic mapping runs layer by layer)"
    t, b = plan.pipeline.totals, plan.pipeline.bounds
    return (f"\npipelined, {t.images:,} images: II {t.ii_ns / 1e3:.2f} us (bound "
            f"{b['ii_lower_bound_ns'] / 1e3:.2f} us, gap {b['gap']:.1%}), makespan "
            f"{t.makespan_ns / 1e6:.3f} ms, energy {t.energy_pj / 1e6:.3f} uJ, steady-state "
            f"utilization {t.allocated_utilization:.1%} of allocated crossbars (best any "
            f"duplication reaches: {b['best_allocated_utilization']:.1%})"
            + _packing_text(t.crossbars_used, b))


def _packing_text(crossbars_used: int, bounds: dict[str, object]) -> str:
    """Crossbars before and after tile packing, for a packed plan ('' otherwise)."""
    before = bounds.get("unpacked_crossbars")
    if before is None:
        return ""
    return (f"; tiles packed from {before:,} crossbars into {crossbars_used:,} (no "
            f"packing uses fewer than {bounds.get('packed_crossbars_lower_bound', 0):,}; the "
            "duplication bound is for unpacked crossbars)")


def _cmd_validate(args: argparse.Namespace) -> int:
    from enasa_compiler.errors import InputError
    from enasa_compiler.validation.junit import check_plan, write_junit

    if args.models is not None and len(args.plan) > 1:
        raise InputError("--models belongs to one plan; validate the plans one at a time")
    if (args.target is not None or args.initial_state is not None) and len(args.plan) > 1:
        raise InputError("-t and --initial-state belong to one plan; validate the plans "
                         "one at a time")
    checks = [check_plan(path, models=args.models, target=args.target,
                         initial_state=args.initial_state) for path in args.plan]
    if args.junit is not None:
        write_junit(args.junit, checks)
    several = len(checks) > 1
    errors = [c.error for c in checks if c.error is not None]
    if args.json and not errors:  # with an error, stdout holds main's error object only
        results = [{"plan": c.plan, "valid": c.valid,
                    "violations": [{"kind": v.kind, "message": v.message}
                                   for v in c.violations],
                    "unchecked": list(c.unchecked)} for c in checks]
        print(json.dumps({"valid": all(c.valid for c in checks), "plans": results}
                         if several else results[0], indent=1))
    elif not args.json:
        for check in checks:
            prefix = f"{check.plan}: " if several else ""
            for violation in check.violations:
                print(f"{prefix}{violation}")
            if check.valid and not args.quiet:
                print(f"{check.plan}: valid")
            if check.valid and check.unchecked and not args.quiet:
                print(f"{check.plan}: not proven without --models: "
                      f"{'; '.join(check.unchecked)}")
    bug = next((e for e in errors if not isinstance(e, EnasaError)), None)
    if bug is not None or len(errors) == 1:
        raise bug or errors[0]
    if errors:  # one line, as every error: the plans that could not be checked
        raise InputError("; ".join(str(e) for e in errors)) from errors[0]
    return EXIT_CHECK_FAILED if any(c.violations for c in checks) else EXIT_OK


def _cmd_simulate(args: argparse.Namespace) -> int:
    from enasa_compiler.plan import Plan
    from enasa_compiler.simulate.cost import check_plan_target, cost_report, format_cost_report
    from enasa_compiler.validation.validator import describe_violations, validate

    if args.execute:
        return _execute(args)
    # A report of a plan that does not hold together would be numbers about nothing.
    # Checked first, so that a plan failing its schema or carrying a bad embedded target
    # exits 1 here as in validate and report (the file is readable; its content fails).
    violations = validate(args.plan)
    if violations:
        raise CheckFailedError(f"{args.plan} is not a valid plan "
                               f"({describe_violations(violations)}); see enasa validate")
    plan = Plan.load(args.plan)
    check_plan_target(plan, str(args.plan))
    report = cost_report(plan, breakdown=args.breakdown)
    emit(args, report, format_cost_report(report))
    return EXIT_OK


def _execute(args: argparse.Namespace) -> int:
    from enasa_compiler.errors import InputError
    from enasa_compiler.simulate.execute import (
        PlanInvalidError,
        execute_and_compare,
        format_execution,
    )

    if not args.models or args.inputs is None:
        raise InputError("--execute needs --models (the plan's ONNX subnets) and --inputs")
    try:
        report = execute_and_compare(args.plan, args.models, args.inputs,
                                     quantized=args.quantized, limit=args.limit,
                                     atol=args.atol, rtol=args.rtol,
                                     pipelined=args.pipelined)
    except PlanInvalidError as exc:
        raise CheckFailedError(f"{args.plan} does not validate against the models ({exc}); "
                               "see enasa validate --models") from exc
    emit(args, report, format_execution(report))
    return EXIT_CHECK_FAILED if report.get("passed") is False else EXIT_OK


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
    emit(args, {"targets": rows}, text)
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.output_dir is not None:
        from enasa_compiler.atomic import check_output_path

        check_output_path(args.output_dir, folder=True)
    from enasa_compiler.cli.demo import format_demo, run_demo

    result = run_demo(group_size=args.subnets, seed=args.seed, target=args.target,
                      output_dir=args.output_dir)
    emit(args, result, format_demo(result))
    return EXIT_OK if result["valid"] else EXIT_CHECK_FAILED


def _cmd_report(args: argparse.Namespace) -> int:
    from enasa_compiler.cli.report import run_report

    return run_report(args)


def _cmd_bench(args: argparse.Namespace) -> int:
    from enasa_compiler.cli.bench import run_bench

    return run_bench(args, args.argv)


def _cmd_search(args: argparse.Namespace) -> int:
    from enasa_compiler.cli.search import run_search

    return run_search(args)


def _cmd_train(args: argparse.Namespace) -> int:
    from enasa_compiler.cli.search import run_train

    return run_train(args)


def _cmd_check(args: argparse.Namespace) -> int:
    from enasa_compiler.cli.check import run_check

    return run_check(args)


_COMMANDS = {
    "bench": _cmd_bench,
    "check": _cmd_check,
    "compile": _cmd_compile,
    "report": _cmd_report,
    "search": _cmd_search,
    "train-supernet": _cmd_train,
    "validate": _cmd_validate,
    "simulate": _cmd_simulate,
    "targets": _cmd_targets,
    "demo": _cmd_demo,
}


class _Stopped(BaseException):
    """SIGTERM or SIGHUP, raised where the program is so that cleanups run."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop(signum: int, frame: Any) -> None:
    raise _Stopped(signum)


_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP")
                      if hasattr(signal, name))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``enasa`` command; returns the exit code.

    SIGTERM and SIGHUP end a command like Ctrl-C does: temporary files are removed,
    no output is left half written, and the exit code is 128 + the signal number.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    _Parser.json_requested = "--json" in argv
    stdout = sys.stdout
    sys.stdout = PipeSafeStdout(stdout)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {signum: signal.signal(signum, _stop) for signum in _STOP_SIGNALS}
    try:
        return _run(argv)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sys.stdout.flush()
        sys.stdout = stdout


def _run(argv: list[str]) -> int:
    args = _build_parser().parse_args(argv)
    args.argv = argv
    level = logging.WARNING
    if args.verbose:
        level = logging.INFO
    if args.quiet:
        level = logging.ERROR
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        with warnings.catch_warnings(), budgets.override(max_memory_mb=args.max_memory):
            warnings.showwarning = _log_warning
            return _COMMANDS[args.command](args)
    except EnasaError as exc:
        if args.debug:
            raise
        return _report_error(args, exc.kind, str(exc), exc.exit_code)
    except KeyboardInterrupt:
        remove_pending()
        return _report_error(args, "interrupted", "interrupted", 128 + signal.SIGINT,
                             prefix="")
    except _Stopped as stopped:
        remove_pending()
        name = signal.Signals(stopped.signum).name
        return _report_error(args, "interrupted", f"stopped by {name}",
                             128 + stopped.signum, prefix="")
    except Exception as exc:  # a bug, not bad input: still one line, never half a file
        if args.debug:
            raise
        return _report_error(
            args, "internal", f"{type(exc).__name__}: {exc} (rerun with --debug for the "
            "traceback and report it)", EXIT_INTERNAL_ERROR, prefix="internal error: ")


def _log_warning(message: Warning | str, category: type[Warning], filename: str,
                 lineno: int, file: Any = None, line: str | None = None) -> None:
    """Send a library's warning (onnx, torch, numpy) to the log, shown with --verbose.

    On stderr it would break the promise of one line per error, and it is about the
    library's internals, not about anything the user gave.
    """
    logging.getLogger("py.warnings").info("%s: %s (%s:%d)", category.__name__,
                                          str(message).strip(), filename, lineno)


def _report_error(args: argparse.Namespace, kind: str, message: str, exit_code: int,
                  prefix: str = "error: ") -> int:
    """One line on stderr; with ``--json`` also one JSON object on stdout."""
    print(f"enasa {args.command}: {prefix}{message}", file=sys.stderr)
    if args.json:
        print_json_error(kind, message, exit_code)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
