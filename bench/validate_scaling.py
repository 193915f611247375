"""Benchmark: ``enasa validate`` on large synthetic plans, against a 5 s budget each.

Two plans, built directly (no compile: the mapper is not what is measured):

* a valid dynamic plan of ``--tiles`` tiles (default 100,000): a chain of crossbar
  operators, each on its own weight matrix of ``--tiles-per-weight`` tiles tiled by
  the conventional rule, every tile written just before its operator runs, crossbars
  reused round-robin on the neurosim-22nm preset's chip; priced with the validator's
  own pricing step, totals and bounds derived as the compiler derives them;
* the same construction with ``--overlapping`` tiles (default 5,000) whose writes all
  land on crossbar 0 at once: thousands of double-booked and not-programmed
  violations, of which the validator lists 20 per kind and counts the rest.

Each is validated through the CLI entry point (``enasa validate PLAN``, in process,
so interpreter start-up is not counted); the figures are the median of
``--repeats`` runs.

Run:  python bench/validate_scaling.py [--tiles 100000] [--overlapping 5000]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _results import command_line, write_results

from enasa_compiler.cli import main
from enasa_compiler.ir import ComputeEvent, OpKind, Placement, ProgramEvent, WeightMatrix
from enasa_compiler.passes.lower import tile_matrix
from enasa_compiler.passes.price import price_operators
from enasa_compiler.plan import Plan, PlanOperator, SubnetInfo
from enasa_compiler.plan.totals import compute_totals
from enasa_compiler.targets import load_target
from enasa_compiler.validation._checks import PlanIndex
from enasa_compiler.validation._proof import recomputed_bound_ns
from enasa_compiler.validation.validator import MAX_PER_KIND, validate

BUDGET_S = 5.0


def _operators(count: int, per_weight: int, target: Any) -> tuple[list[WeightMatrix],
                                                                   list[PlanOperator]]:
    side = max(1, int(per_weight ** 0.5))
    rows = target.crossbar.rows * side
    cols = target.weights_per_crossbar_row * (per_weight // side)
    weights, ops = [], []
    for i in range(count):
        tiles = tile_matrix(f"w{i}", rows, cols, target.crossbar.rows, target.crossbar.cols,
                            target.columns_per_weight)
        weights.append(WeightMatrix(f"w{i}", f"{i:064x}", rows, cols,
                                    target.columns_per_weight, tiles))
        ops.append(PlanOperator(
            id=f"op{i}", kind=OpKind.MVM, op_type="Gemm", subnets=(0,),
            inputs=("x" if i == 0 else f"v{i - 1}",), outputs=(f"v{i}",),
            deps=() if i == 0 else (f"op{i - 1}",), weights=(f"w{i}",), macs=rows * cols,
            vectors_per_image=1, elements=0, ops=0, layer="", latency_ns=0,
            energy_pj=0.0))
    return weights, ops


def synthetic_plan(tiles: int, per_weight: int, *, overlapping: bool = False) -> Plan:
    """A chain of MVM operators over ``tiles`` tiles, scheduled round-robin (see above)."""
    target = load_target("neurosim-22nm")
    weights, ops = _operators(max(1, tiles // per_weight), per_weight, target)
    draft = Plan(target=target.to_dict(), target_sha256=target.sha256, mode="dynamic",
                 solver="synthetic", batch=1, input_name="x", input_shape=(1, 1),
                 subnets=(SubnetInfo(0, "s0", "0" * 64, (ops[-1].outputs[0],)),),
                 weights=tuple(weights), operators=tuple(ops), program=(), compute=(),
                 totals=compute_totals((), {}, (), (), chip_crossbars=1, crossbar_cells=1))
    table = price_operators([draft.to_ir_op(op) for op in ops],
                            [t for w in weights for t in w.tiles], target, 1)
    ops = [PlanOperator(**{**op.__dict__, "latency_ns": table.operators[op.id].latency_ns,
                           "energy_pj": table.operators[op.id].energy_pj}) for op in ops]
    program, compute = [], []
    free = [0] * target.chip.crossbars
    next_crossbar, ready = 0, 0
    for op, weight in zip(ops, weights, strict=True):
        placements = []
        for tile in weight.tiles:
            crossbar = 0 if overlapping else next_crossbar
            next_crossbar = (next_crossbar + 1) % target.chip.crossbars
            cost = table.writes[tile.id]
            start = 0 if overlapping else free[crossbar]
            program.append(ProgramEvent(tile.id, crossbar, start, start + cost.latency_ns,
                                        cost.energy_pj))
            free[crossbar] = start + cost.latency_ns
            placements.append(Placement(tile.id, crossbar))
        start = max([ready] + [free[p.crossbar] for p in placements])
        ready = start + op.latency_ns
        compute.append(ComputeEvent(op.id, start, ready, tuple(placements)))
        for p in placements:
            free[p.crossbar] = ready
    plan = Plan(**{**draft.__dict__, "operators": tuple(ops), "program": tuple(program),
                   "compute": tuple(compute)})
    totals = compute_totals(plan.operators, plan.tiles(), plan.program, plan.compute,
                            chip_crossbars=target.chip.crossbars,
                            crossbar_cells=target.crossbar.rows * target.crossbar.cols)
    plan = Plan(**{**plan.__dict__, "totals": totals})
    bound = recomputed_bound_ns(PlanIndex.build(plan, target)) or 0
    lower = min(bound, totals.makespan_ns)
    bounds = {"analytic_bound_ns": bound, "solver_bound_ns": None, "time_unit_ns": None,
              "solver_status": "not run", "lower_bound_ns": lower,
              "gap": (totals.makespan_ns - lower) / totals.makespan_ns}
    return Plan(**{**plan.__dict__, "bounds": bounds})


def _time_cli(path: Path, repeats: int) -> tuple[float, int, int]:
    """Median seconds of ``enasa validate PATH``, its exit code, lines printed."""
    times, code, lines = [], 0, 0
    for _ in range(repeats):
        out = io.StringIO()
        started = time.perf_counter()
        with contextlib.redirect_stdout(out):
            code = main(["validate", str(path)])
        times.append(time.perf_counter() - started)
        lines = len(out.getvalue().splitlines())
    return statistics.median(times), code, lines


def _row(name: str, plan: Plan, folder: Path, repeats: int) -> dict[str, Any]:
    path = plan.save(folder / f"{name}.plan.json")
    seconds, code, lines = _time_cli(path, repeats)
    uncapped = validate(path, max_per_kind=None)
    by_kind: dict[str, int] = {}
    for violation in uncapped:
        by_kind[violation.kind] = by_kind.get(violation.kind, 0) + 1
    row = {"plan": name, "tiles": len(plan.tiles()), "program_events": len(plan.program),
           "operators": len(plan.operators), "plan_mb": round(path.stat().st_size / 1e6, 1),
           "validate_s": round(seconds, 2), "budget_s": BUDGET_S,
           "within_budget": seconds < BUDGET_S, "exit_code": code, "lines_printed": lines,
           "violations_by_kind": by_kind}
    print(f"{name}: {row['tiles']:,} tiles, {row['plan_mb']} MB, validate "
          f"{seconds:.2f} s (budget {BUDGET_S} s), exit {code}, {lines} lines, "
          f"violations {by_kind}")
    return row


def main_bench() -> None:
    """Build both plans, time ``enasa validate`` on each, write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=100_000)
    parser.add_argument("--tiles-per-weight", type=int, default=100)
    parser.add_argument("--overlapping", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = [
            _row("valid", synthetic_plan(args.tiles, args.tiles_per_weight), folder,
                 args.repeats),
            _row("overlapping-writes", synthetic_plan(
                args.overlapping, args.tiles_per_weight, overlapping=True), folder,
                args.repeats),
        ]
    write_results("validate_scaling.json", {
        "command": command_line(__file__, args),
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
        "max_violations_per_kind": MAX_PER_KIND,
        "rows": rows,
    })


if __name__ == "__main__":
    main_bench()
