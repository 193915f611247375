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
        alone_plans = [compile_detailed([f], target).plan for f in files]
        alone = [p.totals for p in alone_plans]
    totals = plan.totals
    pipe = plan.pipeline
    piped_alone = [p.pipeline.totals for p in alone_plans if p.pipeline is not None]
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
        "pipeline": None if pipe is None else {
            "images": pipe.images, "ii_ns": pipe.totals.ii_ns,
            "ii_lower_bound_ns": pipe.bounds["ii_lower_bound_ns"],
            "gap": pipe.bounds["gap"], "makespan_ns": pipe.totals.makespan_ns,
            "energy_pj": pipe.totals.energy_pj,
            "allocated_utilization": pipe.totals.allocated_utilization,
            "best_allocated_utilization": pipe.bounds["best_allocated_utilization"],
            "one_at_a_time_makespan_ns": sum(t.makespan_ns for t in piped_alone),
            "one_at_a_time_energy_pj": sum(t.energy_pj for t in piped_alone),
        },
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
        *_pipeline_lines(result.get("pipeline")),
        ("plan valid" if result["valid"]
         else "plan INVALID: " + "; ".join(result["violations"])),
    ]
    return "\n".join(lines)


def _pipeline_lines(pipe: dict[str, Any] | None) -> list[str]:
    if pipe is None:
        return []
    return [
        f"pipelined, {pipe['images']:,} images per subnet: II {pipe['ii_ns'] / 1e3:.2f} us "
        f"(bound {pipe['ii_lower_bound_ns'] / 1e3:.2f} us, gap {pipe['gap']:.1%}), makespan "
        f"{pipe['makespan_ns'] / 1e6:.2f} ms, energy {pipe['energy_pj'] / 1e9:.3f} mJ, "
        f"steady-state utilization {pipe['allocated_utilization']:.1%} of allocated "
        f"crossbars (at most {pipe['best_allocated_utilization']:.1%} with any duplication)",
        f"one subnet at a time, pipelined: makespan "
        f"{pipe['one_at_a_time_makespan_ns'] / 1e6:.2f} ms "
        f"({pipe['one_at_a_time_makespan_ns'] / pipe['makespan_ns']:.2f}x the group's), "
        f"energy {pipe['one_at_a_time_energy_pj'] / 1e9:.3f} mJ "
        f"({pipe['one_at_a_time_energy_pj'] / pipe['energy_pj']:.2f}x)",
    ]
