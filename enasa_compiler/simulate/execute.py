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
from enasa_compiler.inputs import read_npz
from enasa_compiler.pipeline import build_group_model
from enasa_compiler.plan import Plan
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
) -> dict[str, Any]:
    """Run the plan on the inputs and compare every subnet with onnxruntime.

    Raises:
        PlanInvalidError: the plan does not validate against the models.
        InputError: unreadable plan, models or inputs, or inputs of the wrong shape.

    """
    # The run needs the plan to cover the models; its target, initial state and
    # bounds are figures the run does not use, so they are not proven here.
    violations = validate(plan_path, models=list(models), prove=False)
    if violations:
        raise PlanInvalidError(violations)
    plan = Plan.load(plan_path)
    images, labels = read_npz(inputs, require_labels=False)
    if limit is not None:
        images = images[:limit]
        labels = None if labels is None else labels[:limit]
    expected = tuple(plan.input_shape[1:])
    if tuple(images.shape[1:]) != expected:
        raise InputError(f"{inputs}: images are {images.shape[1:]} per image but the "
                         f"plan's input is {expected}")
    group, _ = build_group_model(load_group(list(models), batch=plan.batch))
    ideal = execute_plan(plan, group, images, mode="ideal")
    errors = compare_with_onnxruntime(ideal, list(models), images)
    rows: list[dict[str, Any]] = [
        {"index": s.index, "name": s.name, "ideal_max_abs_error": err}
        for s, err in zip(plan.subnets, errors, strict=True)
    ]
    if quantized:
        result = execute_plan(plan, group, images, mode="quantized")
        references = [onnxruntime_outputs(m, images) for m in models]
        for row, agree in zip(rows, top1_agreement(result, references), strict=True):
            row["quantized_top1_agreement"] = agree
        scored = result
    else:
        scored = ideal
    if labels is not None:
        for row, acc in zip(rows, accuracy(scored, labels), strict=True):
            row["accuracy"] = acc
    return {"images": int(images.shape[0]), "mode": "quantized" if quantized else "ideal",
            "max_abs_error": float(np.max(errors)), "subnets": rows}


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
    lines.append(header)
    for row in report["subnets"]:
        line = f"{row['name']:<{name_width}}{row['ideal_max_abs_error']:>20.2e}"
        if quantized:
            line += f"{row['quantized_top1_agreement']:>17.1%}"
        if labelled:
            line += f"{row['accuracy']:>10.1%}"
        lines.append(line)
    return "\n".join(lines)
