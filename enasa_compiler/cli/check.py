"""``enasa check MODEL.onnx ...``: whether a group compiles, and what the compiler does.

For each file: its operators by where they run (crossbars, digital units, nowhere), its
dynamic dimensions, its MACs and crossbar weights, and what canonicalisation changes
(nodes folded, aliases removed, exporter spellings rewritten). Then the verdict, which is
the compiler's own: the group is compiled (and the plan discarded), so ``check`` and
``compile`` can never disagree.

Exit codes: 0 the group compiles; 1 it would not, one line per reason naming the file
and the node; 2 an input cannot be read (not ONNX, external data outside its folder,
an unreadable target).
"""

from __future__ import annotations

import argparse
import collections
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from enasa_compiler.errors import CheckFailedError, EnasaError

# The compiler (onnx, onnx_ir, numpy) is imported by the functions that use it, so that
# registering this command costs ``enasa --help`` nothing.

logger = logging.getLogger(__name__)

__all__ = ["add_check_parser", "check_models", "format_check", "run_check"]


def add_check_parser(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register ``enasa check``."""
    p = sub.add_parser("check", help="say whether ONNX models compile, and what runs where")
    p.add_argument("models", nargs="+", type=Path, help="ONNX subnet files (one group)")
    p.add_argument("-t", "--target", default="neurosim-22nm",
                   help="target preset name or target file (default: neurosim-22nm)")
    p.add_argument("--batch", type=int, default=1, help="images per run (default 1)")
    p.add_argument("--mode", default="auto", choices=["auto", "resident", "dynamic"],
                   help="the mapping mode compile would use (default auto)")
    p.add_argument("--initial-state", type=Path, default=None, metavar="PREV_PLAN.json",
                   help="the previous plan compile would start from (online mapping)")
    common(p)


def _dynamic_dimensions(path: Path) -> list[str]:
    """Return the graph inputs' symbolic dimensions as ``input[axis]=name``."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - the frontend reports unreadable files
        return []
    found = []
    for value in proto.graph.input:
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if not dim.HasField("dim_value"):
                found.append(f"{value.name}[{axis}]={dim.dim_param or '?'}")
    return found


def _placement(node: Any) -> str:
    """Where lowering will run a (canonical) node: crossbars, digital or unsupported."""
    from enasa_compiler.passes._common import static_dims, weight_input
    from enasa_compiler.passes.operators import OPERATORS, Placement, is_supported

    if not is_supported(node.domain, node.op_type):
        return "unsupported"
    if OPERATORS[node.op_type].placement is Placement.DIGITAL:
        return "digital"
    weight = weight_input(node)
    dims = static_dims(weight)
    if weight is None or dims is None:
        return "digital"
    depthwise = (node.op_type == "Conv" and dims[1] == 1
                 and node.attributes.get_int("group", 1) > 1) or (
        node.op_type == "ConvTranspose" and node.attributes.get_int("group", 1) == dims[0]
        and dims[0] > 1)
    return "digital" if depthwise else "crossbars"


def _inspect(path: Path, batch: int) -> dict[str, Any]:
    """Load and canonicalise one file; describe it. Raises what the frontend raises."""
    from enasa_compiler.frontend import load_subnet
    from enasa_compiler.passes import CanonicalizePass
    from enasa_compiler.passes._common import count_macs, static_dims, weight_input

    subnet = load_subnet(path, batch=batch)
    model = subnet.model
    before = collections.Counter(node.op_type for node in model.graph)
    CanonicalizePass()(model)
    after = collections.Counter(node.op_type for node in model.graph)
    by_place: dict[str, collections.Counter[str]] = collections.defaultdict(
        collections.Counter)
    reasons, macs, weights = [], 0, 0
    for node in model.graph:
        place = _placement(node)
        by_place[place][node.op_type] += 1
        if place == "unsupported":
            domain = f"{node.domain}::" if node.domain else ""
            reasons.append(f"{path}: node '{node.name}': unsupported operator "
                           f"{domain}{node.op_type}")
        for value in node.outputs:
            if static_dims(value) is None:
                reasons.append(f"{path}: node '{node.name}' ({node.op_type}): value "
                               f"'{value.name}' has no static shape")
        try:
            macs += count_macs(node)
        except ValueError:
            pass
        weight = weight_input(node)
        if place == "crossbars" and weight is not None and (dims := static_dims(weight)):
            weights += math.prod(dims)
    changes = {op: after[op] - before[op] for op in sorted(before | after)
               if after[op] != before[op]}
    return {
        "file": str(path),
        "operators": {place: dict(sorted(ops.items())) for place, ops in
                      sorted(by_place.items())},
        "dynamic_dimensions": _dynamic_dimensions(path),
        "macs_per_batch": macs,
        "crossbar_weights": weights,
        "canonicalisation": {"nodes_before": sum(before.values()),
                             "nodes_after": sum(after.values()), "op_count_changes": changes},
        "reasons": reasons,
    }


def check_models(models: list[Path], target: str, batch: int, mode: str = "auto",
                 initial_state: Path | None = None) -> dict[str, Any]:
    """Describe every model and compile the group; return the report.

    Raises:
        InputError: a model or the target cannot be read (exit 2).

    """
    from enasa_compiler.pipeline import compile_detailed
    from enasa_compiler.targets import load_target

    load_target(target)  # an unreadable target is unreadable input, before anything
    files = [_inspect(path, batch) for path in models]
    reasons = [reason for entry in files for reason in entry["reasons"]]
    if not reasons:
        try:
            compile_detailed(models, target, batch=batch, mode=mode,
                             initial_state=initial_state)
        except EnasaError as exc:
            reasons.append(str(exc))
    return {"compiles": not reasons, "reasons": reasons, "files": files}


def format_check(report: dict[str, Any]) -> str:
    """Render :func:`check_models` for a terminal."""
    lines = []
    for entry in report["files"]:
        lines.append(entry["file"])
        for place, ops in entry["operators"].items():
            listed = ", ".join(f"{op} x{count}" for op, count in ops.items())
            lines.append(f"  {place:<12} {listed}")
        canon = entry["canonicalisation"]
        changed = ", ".join(f"{op} {delta:+d}" for op, delta in
                            canon["op_count_changes"].items()) or "nothing"
        lines.append(f"  canonicalisation: {canon['nodes_before']} -> "
                     f"{canon['nodes_after']} nodes ({changed})")
        dynamic = ", ".join(entry["dynamic_dimensions"]) or "none"
        lines.append(f"  dynamic dimensions: {dynamic} (the batch is fixed at compile)")
        lines.append(f"  {entry['macs_per_batch']} MACs per batch, "
                     f"{entry['crossbar_weights']} crossbar weights")
    lines.append("compiles" if report["compiles"] else "does not compile:")
    lines.extend(report["reasons"])
    return "\n".join(lines)


def run_check(args: argparse.Namespace) -> int:
    """Run ``enasa check``; exit 0 compiles, 1 would not, 2 unreadable input."""
    from enasa_compiler.cli._output import emit

    report = check_models(list(args.models), args.target, args.batch, args.mode,
                          args.initial_state)
    if getattr(args, "quiet", False) and not report["compiles"]:
        # --quiet prints only errors: the reasons, one line each.
        raise CheckFailedError("; ".join(report["reasons"]))
    emit(args, report, format_check(report))
    return 0 if report["compiles"] else 1
