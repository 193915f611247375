"""``enasa demo``: the whole flow on a built-in small SPOS supernet, offline.

Builds a small SPOS-space supernet with seeded random weights, samples a group of
subnets that share their bottom half (as ENASA's stage-wise search produces),
exports them with ``torch.onnx.export``, compiles the group, validates the plan,
checks the deduplicated group model against each subnet in onnxruntime, and
reports dedup, makespan, energy and utilization.
"""

from __future__ import annotations

import logging
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir
import onnxruntime as ort

logger = logging.getLogger(__name__)

__all__ = ["format_demo", "group_model_max_error", "run_demo"]


def group_model_max_error(
    group: ir.Model, subnets: Sequence[Path | ir.Model], seed: int = 0
) -> float:
    """Largest output difference between the group model and each subnet, in onnxruntime.

    ``subnets`` are ONNX files or ``onnx_ir`` models, in group order.
    """
    proto = ir.serde.serialize_model(group)
    session = ort.InferenceSession(proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    shape = [d if isinstance(d, int) else 1 for d in group.graph.inputs[0].shape or ()]
    images = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    group_outputs = dict(zip([o.name for o in session.get_outputs()],
                             session.run(None, {session.get_inputs()[0].name: images}),
                             strict=True))
    worst = 0.0
    for index, subnet in enumerate(subnets):
        source = (ir.serde.serialize_model(subnet).SerializeToString()
                  if isinstance(subnet, ir.Model) else str(subnet))
        reference = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
        expected = reference.run(None, {reference.get_inputs()[0].name: images})
        names = [n for n in group_outputs if n.startswith(f"s{index}/")]
        for name, value in zip(names, expected, strict=True):
            worst = max(worst, float(np.max(np.abs(group_outputs[name] - value))))
    return worst


def run_demo(
    group_size: int = 8,
    seed: int = 0,
    target: str = "neurosim-22nm",
    output_dir: Path | None = None,
) -> dict[str, Any]:
    """Run the demo flow and return its figures (JSON-ready)."""
    from enasa_compiler.models.export import build_demo_supernet, export_group
    from enasa_compiler.models.sampling import sample_shared_group
    from enasa_compiler.pipeline import compile_detailed
    from enasa_compiler.validation.validator import validate

    started = time.perf_counter()
    supernet = build_demo_supernet(seed=seed)
    layers = supernet.num_layers
    archs = sample_shared_group(layers, supernet.num_choices, group_size, random.Random(seed),
                                shared_prefix_layers=layers // 2)
    with tempfile.TemporaryDirectory(prefix="enasa-demo-") as scratch:
        folder = Path(output_dir) if output_dir is not None else Path(scratch)
        files = export_group(supernet, archs, folder)
        export_s = time.perf_counter() - started
        result = compile_detailed(files, target)
        plan = result.plan
        if output_dir is not None:
            plan.save(folder / "plan.json")
        violations = validate(plan)
        max_error = group_model_max_error(result.group_model, files, seed)
        # The same subnets compiled one at a time, run one after another: what a
        # compiler that maps one network at a time gives on the same chip.
        alone = [compile_detailed([f], target).plan.totals for f in files]
    totals = plan.totals
    dedup = plan.dedup
    compile_s = time.perf_counter() - started - export_s
    return {
        "subnets": group_size,
        "archs": [list(a) for a in archs],
        "target": target,
        "mode": plan.mode,
        "nodes_before": dedup["nodes_before"],
        "nodes_after": dedup["nodes_after"],
        "macs_before": dedup["macs_before"],
        "macs_after": dedup["macs_after"],
        "dedup_node_ratio": dedup["nodes_before"] / max(1, dedup["nodes_after"]),
        "dedup_mac_ratio": dedup["macs_before"] / max(1, dedup["macs_after"]),
        "makespan_ns": totals.makespan_ns,
        "energy_pj": totals.energy_pj,
        "utilization": totals.utilization,
        "allocated_utilization": totals.allocated_utilization,
        "spatial_utilization": totals.spatial_utilization,
        "crossbars_used": totals.crossbars_used,
        "one_at_a_time_makespan_ns": sum(t.makespan_ns for t in alone),
        "one_at_a_time_energy_pj": sum(t.energy_pj for t in alone),
        "valid": not violations,
        "violations": [str(v) for v in violations],
        "group_model_max_abs_error": max_error,
        "export_s": round(export_s, 2),
        "compile_s": round(compile_s, 2),
    }


def format_demo(result: dict[str, Any]) -> str:
    """Render the demo figures for a terminal."""
    lines = [
        f"exported {result['subnets']} SPOS-space subnets sharing their bottom half "
        f"({result['export_s']:.1f} s); compiled for {result['target']} "
        f"({result['mode']} mapping; compile, validate and checks "
        f"{result['compile_s']:.1f} s)",
        f"dedup: {result['nodes_before']} -> {result['nodes_after']} nodes "
        f"({result['dedup_node_ratio']:.2f}x), {result['macs_before'] / 1e6:.2f} -> "
        f"{result['macs_after'] / 1e6:.2f} MMACs ({result['dedup_mac_ratio']:.2f}x)",
        f"group model vs subnets in onnxruntime: max abs error "
        f"{result['group_model_max_abs_error']:.2e}",
        f"makespan {result['makespan_ns'] / 1e3:.1f} us, energy "
        f"{result['energy_pj'] / 1e6:.3f} uJ, {result['crossbars_used']} crossbars",
        f"one subnet at a time (each compiled and programmed alone): makespan "
        f"{result['one_at_a_time_makespan_ns'] / 1e3:.1f} us "
        f"({result['one_at_a_time_makespan_ns'] / result['makespan_ns']:.2f}x the group's), "
        f"energy {result['one_at_a_time_energy_pj'] / 1e6:.3f} uJ "
        f"({result['one_at_a_time_energy_pj'] / result['energy_pj']:.2f}x)",
        f"utilization {result['utilization']:.2%} of the chip, "
        f"{result['allocated_utilization']:.2%} of allocated crossbars, spatial "
        f"{result['spatial_utilization']:.2%}",
        ("plan valid" if result["valid"]
         else "plan INVALID: " + "; ".join(result["violations"])),
    ]
    return "\n".join(lines)
