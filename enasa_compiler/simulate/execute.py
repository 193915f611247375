"""``enasa simulate --execute``: prove numerically that a plan computes its models.

The plan is first validated against the models (hashes, and every node of every
subnet covered, by the validator's own route); then the group model is rebuilt with
the compiler's front half, the plan is run through its tiles by
:func:`~enasa_compiler.targets.executor.execute_plan`, and each subnet's outputs are
compared with onnxruntime on the original files: the largest absolute difference in
ideal mode, top-1 agreement in quantized mode, and accuracy when the inputs carry
labels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from enasa_compiler._text import column_width, plural
from enasa_compiler.errors import InputError
from enasa_compiler.frontend import load_group
from enasa_compiler.pipeline import build_group_model
from enasa_compiler.plan import Plan
from enasa_compiler.simulate._inputs import read_model_inputs
from enasa_compiler.targets.executor import (
    accuracy,
    compare_with_onnxruntime,
    execute_plan,
    onnxruntime_outputs,
    top1_agreement,
)
from enasa_compiler.validation.validator import describe_violations, validate

logger = logging.getLogger(__name__)

__all__ = ["PlanInvalidError", "execute_and_compare", "format_execution"]


class PlanInvalidError(Exception):
    """The plan does not validate against the models; carries the violations."""

    def __init__(self, violations: list[Any]) -> None:
        super().__init__(describe_violations(violations))
        self.violations = violations


def execute_and_compare(
    plan_path: Path,
    models: Sequence[Path],
    inputs: Path,
    *,
    quantized: bool = False,
    limit: int | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    pipelined: bool = False,
) -> dict[str, Any]:
    """Run the plan on the inputs and compare every subnet with onnxruntime.

    ``pipelined`` follows the plan's pipelined schedule (one image at a time, segment
    by segment, the crossbars its slots name) instead of the batch schedule.

    The inputs are an array named like the models' graph input (any rank, the input's
    own dtype) or the old ``images`` array (:mod:`._inputs`). With ``atol`` or ``rtol``
    each subnet is also checked as ``numpy.allclose`` does (``|plan - onnxruntime| <=
    atol + rtol * |onnxruntime|``, element by element; a missing one counts 0); the
    report's ``passed`` says whether every subnet is within.

    Raises:
        PlanInvalidError: the plan does not validate against the models.
        InputError: unreadable plan, models or inputs, or inputs of the wrong shape.

    """
    # The run needs the plan to cover the models; its target, initial state and
    # bounds are figures the run does not use, so they are not proven here.
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1 image, got {limit}")
    violations = validate(plan_path, models=list(models), prove=False)
    if violations:
        raise PlanInvalidError(violations)
    plan = Plan.load(plan_path)
    subnets = load_group(list(models), batch=plan.batch)
    graph_input = subnets[0].model.graph.inputs[0]
    dtype = np.dtype(np.float32 if graph_input.dtype is None else graph_input.dtype.numpy())
    images, labels = read_model_inputs(inputs, graph_input.name or "",
                                       tuple(plan.input_shape[1:]), dtype)
    if limit is not None:
        images = images[:limit]
        labels = None if labels is None else labels[:limit]
    group, _ = build_group_model(subnets)
    ideal = execute_plan(plan, group, images, mode="ideal", pipelined=pipelined)
    errors = compare_with_onnxruntime(ideal, list(models), images)
    rows: list[dict[str, Any]] = [
        {"index": s.index, "name": s.name, "ideal_max_abs_error": err}
        for s, err in zip(plan.subnets, errors, strict=True)
    ]
    if quantized:
        result = execute_plan(plan, group, images, mode="quantized", pipelined=pipelined)
        references = [onnxruntime_outputs(m, images) for m in models]
        for row, agree in zip(rows, top1_agreement(result, references), strict=True):
            row["quantized_top1_agreement"] = agree
        scored = result
    else:
        scored = ideal
    if labels is not None:
        for row, acc in zip(rows, accuracy(scored, labels), strict=True):
            row["accuracy"] = acc
    report: dict[str, Any] = {
        "images": int(images.shape[0]), "mode": "quantized" if quantized else "ideal",
        "schedule": "pipelined" if pipelined else "batch",
        "max_abs_error": float(np.max(errors)), "subnets": rows}
    if atol is not None or rtol is not None:
        tolerance = {"atol": 0.0 if atol is None else atol,
                     "rtol": 0.0 if rtol is None else rtol}
        if tolerance["atol"] < 0 or tolerance["rtol"] < 0:
            raise InputError("--atol and --rtol must be >= 0")
        for row, outputs, model in zip(rows, ideal.outputs, models, strict=True):
            row["within_tolerance"] = _within(outputs, onnxruntime_outputs(model, images),
                                              **tolerance)
        report["tolerance"] = tolerance
        report["passed"] = all(row["within_tolerance"] for row in rows)
    return report


def _within(got: dict[str, np.ndarray], want: dict[str, np.ndarray], *, atol: float,
            rtol: float) -> bool:
    """Tell whether every output is within ``atol + rtol * |onnxruntime|`` of it."""
    return all(
        bool(np.allclose(g.astype(np.float64), np.asarray(w, dtype=np.float64),
                         atol=atol, rtol=rtol))
        for g, w in zip(got.values(), want.values(), strict=True))


def format_execution(report: dict[str, Any]) -> str:
    """Render :func:`execute_and_compare` as a table."""
    lines = [f"executed {plural(report['images'], 'image')} through the plan's tiles "
             f"({report['mode']} mode); compared with onnxruntime per subnet", ""]
    name_width = column_width(["subnet", *(row["name"] for row in report["subnets"])], 16)
    header = f"{'subnet':<{name_width}}{'max abs err (ideal)':>20}"
    quantized = any("quantized_top1_agreement" in r for r in report["subnets"])
    labelled = any("accuracy" in r for r in report["subnets"])
    header += f"{'top-1 agreement':>17}" if quantized else ""
    header += f"{'accuracy':>10}" if labelled else ""
    checked = "tolerance" in report
    header += f"{'within tolerance':>18}" if checked else ""
    lines.append(header)
    for row in report["subnets"]:
        line = f"{row['name']:<{name_width}}{row['ideal_max_abs_error']:>20.2e}"
        if quantized:
            line += f"{row['quantized_top1_agreement']:>17.1%}"
        if labelled:
            line += f"{row['accuracy']:>10.1%}"
        if checked:
            line += f"{'yes' if row['within_tolerance'] else 'NO':>18}"
        lines.append(line)
    if checked:
        tolerance = report["tolerance"]
        lines.append(f"\n{'every subnet' if report['passed'] else 'NOT every subnet'} "
                     f"within atol {tolerance['atol']:g} + rtol {tolerance['rtol']:g} "
                     "x |onnxruntime|")
    return "\n".join(lines)
