"""``enasa report``: a plan as a self-contained HTML page (and, on request, PNG charts).

Kept apart from :mod:`enasa_compiler.cli` so the command's parser and behaviour can
be tested alone; ``cli`` registers it with :func:`add_report_parser` and dispatches
to :func:`run_report`. Like ``enasa simulate``, the command refuses to draw a plan
that does not validate (exit 1): a chart of a broken schedule would look as
trustworthy as a chart of a good one.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from enasa_compiler.cli._output import emit

logger = logging.getLogger(__name__)

__all__ = ["add_report_parser", "run_report"]

_EXIT_OK = 0


def add_report_parser(
    subparsers: argparse._SubParsersAction[Any],
    common: Callable[[argparse.ArgumentParser], None],
) -> argparse.ArgumentParser:
    """Register the ``report`` command.

    Args:
        subparsers: the ``enasa`` command's subparsers.
        common: adds the options every command has (``--json``, ``--quiet``...).

    Returns:
        The new subparser.

    """
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "report", help="HTML report of a plan: simulate's costs by component, chip area "
                       "and power, Gantt chart, per-operator table",
        description="Write a self-contained HTML page (inline SVG charts and script, no "
                    "network) describing a plan with enasa simulate's numbers; refuses an "
                    "invalid plan (exit 1).")
    parser.add_argument("plan", type=Path, help="plan file (JSON)")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="HTML file to write")
    parser.add_argument("--force", action="store_true",
                        help="replace a read-only output file (never the plan, a device "
                             "or a FIFO)")
    parser.add_argument("--png", type=Path, default=None, metavar="DIR",
                        help="also write the charts as gantt.png, utilization.png and "
                             "subnets.png into DIR")
    common(parser)
    return parser



def run_report(args: argparse.Namespace) -> int:
    """Validate the plan, then write the HTML report (and the PNG charts if asked).

    Returns:
        0 when written.

    Raises:
        InputError: the plan cannot be read or is not JSON, or an output cannot be
            written.
        CheckFailedError: the plan is invalid (nothing is written; exit code 1).

    """
    from enasa_compiler.atomic import check_output_path, write_atomic
    from enasa_compiler.errors import CheckFailedError
    from enasa_compiler.plan import Plan, read_plan_json
    from enasa_compiler.report.html import render_report_and_charts, write_charts_png
    from enasa_compiler.validation.validator import describe_violations, validate

    check_output_path(args.output, [args.plan], force=getattr(args, "force", False))
    if args.png is not None:
        check_output_path(args.png, [args.plan], folder=True)
    data = read_plan_json(args.plan)
    violations = validate(data)
    if violations:
        raise CheckFailedError(f"{args.plan} is not a valid plan "
                               f"({describe_violations(violations)}); see enasa validate")
    plan = Plan.from_dict(data)
    start = time.perf_counter()
    page, images = render_report_and_charts(plan, png=args.png is not None)
    # Charts first, page last: a --png folder that cannot be written leaves no page.
    pngs = write_charts_png(images, args.png) if args.png is not None else []
    write_atomic(args.output, page)
    seconds = time.perf_counter() - start
    logger.info("rendered %s in %.2f s", args.output, seconds)
    size = len(page.encode("utf-8"))
    charts = f"; charts in {args.png}" if pngs else ""
    emit(args, {"report": str(args.output), "png": [str(p) for p in pngs], "bytes": size,
                 "render_s": round(seconds, 3)},
          f"wrote {args.output} ({size / 1024:,.0f} KiB){charts}")
    return _EXIT_OK
