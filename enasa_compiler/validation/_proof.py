"""The claims a plan makes about the world outside it, re-derived by the validator.

The structural checks prove a plan consistent with itself. Consistency is cheap to
forge: shrink an operator's work, re-price it and re-sum the totals, and every
number agrees again. So, given the models (``--models``), and the target file and the
previous plan where the plan names them (``-t``, ``--initial-state``), the validator
re-derives the rest on its own (docs/validation.md, "Validation as proof"):

* the target: a preset's name must come with the shipped preset's contents, a
  custom target must be the file given;
* the tiling: each weight matrix's tiles follow from its rows and columns, the
  crossbar's size and the columns a weight takes (the rule of docs/plan-format.md);
* the initial state: the tiles an online plan finds in place must be what the
  previous plan's crossbars held at its end;
* the bounds: a claimed lower bound is recomputed (critical path, weight matrix,
  digital units, crossbar capacity, from the re-priced operators), and optimality
  is accepted only when that bound reaches the makespan.

None of this imports the compiler's lowering or mapping (the import contract).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import Any

from enasa_compiler.ir import OpKind, WeightMatrix
from enasa_compiler.plan import Plan
from enasa_compiler.targets.target import Target, list_presets, load_target
from enasa_compiler.validation._checks import (
    NOT_PROGRAMMED,
    TARGET,
    TILE_SIZE,
    TOTALS,
    PlanIndex,
    Violation,
)

logger = logging.getLogger(__name__)

__all__ = [
    "UNCHECKED_INITIAL_STATE",
    "UNCHECKED_TARGET",
    "UNCHECKED_WITHOUT_MODELS",
    "check_bounds_proof",
    "check_initial_state",
    "check_target_identity",
    "check_tiling_rule",
    "recomputed_bound_ns",
    "tile_blocks",
]

UNCHECKED_TARGET = "the target against the shipped preset (or the file given with -t)"
UNCHECKED_INITIAL_STATE = "initial_state against the previous plan (--initial-state)"
UNCHECKED_WITHOUT_MODELS: tuple[str, ...] = (
    "operators' op types, shapes, work and MACs against the models",
    "dependencies against the models' data flow",
    "weights (contents, rows, columns, copies) and their tiling rule",
    "subnet outputs and the input shape",
    UNCHECKED_TARGET,
    UNCHECKED_INITIAL_STATE,
    "optimality claimed by the bounds",
)
"""What ``validate`` cannot prove without the models: a forged plan that lies only
about these, re-priced consistently, passes (docs/validation.md)."""


# ---- target --------------------------------------------------------------------------
def check_target_identity(target: Target | None, given: Target | None) -> Iterator[Violation]:
    """Check the embedded target is the shipped preset it names, or the file given.

    Args:
        target: the plan's embedded target (None: it did not parse, reported already).
        given: the target the user says the plan was made for (``-t``), or None.

    """
    if target is None:
        return
    if given is not None:
        if given.sha256 != target.sha256:
            yield Violation(TARGET, f"the plan's target '{target.name}' ({target.sha256[:12]})"
                                    f" is not the target given, '{given.name}' "
                                    f"({given.sha256[:12]})")
        return
    if target.name not in list_presets():
        yield Violation(TARGET, f"target '{target.name}' is not a shipped preset: give its "
                                "file with -t to prove the plan was made for it")
        return
    shipped = load_target(target.name)
    if shipped.sha256 != target.sha256:
        yield Violation(TARGET, f"the plan's target is named '{target.name}' but differs "
                                f"from the shipped preset ({target.sha256[:12]} vs "
                                f"{shipped.sha256[:12]})")


# ---- tiling --------------------------------------------------------------------------
def tile_blocks(rows: int, cols: int, crossbar_rows: int, crossbar_cols: int,
                columns_per_weight: int) -> list[tuple[int, int, int, int]]:
    """Return the tile spans of a matrix by the conventional mapping (plan-format.md).

    Each span is (row_start, row_stop, col_start, col_stop). Row blocks of
    ``crossbar_rows`` rows; column blocks of ``crossbar_cols // columns_per_weight``
    logical columns; the last block of each is what is left.
    """
    per_crossbar = crossbar_cols // columns_per_weight
    if per_crossbar < 1 or rows < 1 or cols < 1:
        return []
    return [(r, min(rows, r + crossbar_rows), c, min(cols, c + per_crossbar))
            for r in range(0, rows, crossbar_rows) for c in range(0, cols, per_crossbar)]


def _tiling_differs(weight: WeightMatrix, target: Target) -> bool:
    expected = tile_blocks(weight.rows, weight.cols, target.crossbar.rows,
                           target.crossbar.cols, target.columns_per_weight)
    claimed = sorted((t.row_start, t.row_stop, t.col_start, t.col_stop)
                     for t in weight.tiles)
    return claimed != expected


def check_tiling_rule(index: PlanIndex) -> Iterator[Violation]:
    """Check every weight matrix is tiled as the target's geometry dictates."""
    target = index.target
    if target is None:
        return
    for weight in index.plan.weights:
        if _tiling_differs(weight, target):
            expected = len(tile_blocks(weight.rows, weight.cols, target.crossbar.rows,
                                       target.crossbar.cols, target.columns_per_weight))
            yield Violation(TILE_SIZE, f"weight '{weight.id}' ({weight.rows} x {weight.cols})"
                                       f" has {len(weight.tiles)} tiles; a "
                                       f"{target.crossbar.rows} x {target.crossbar.cols} "
                                       f"crossbar at {target.columns_per_weight} columns per "
                                       f"weight tiles it into {expected} others")


# ---- initial state -------------------------------------------------------------------
def check_initial_state(index: PlanIndex, previous: Plan | None) -> Iterator[Violation]:
    """Check the tiles an online plan starts from are what ``previous`` left behind.

    Without a previous plan, an initial state cannot be proven: each claimed tile is
    reported once, in one violation.
    """
    plan = index.plan
    if not plan.initial:
        return
    if previous is None:
        yield Violation(NOT_PROGRAMMED, f"initial_state claims {len(plan.initial)} tiles "
                                        "already in place; give the previous plan with "
                                        "--initial-state to prove it")
        return
    left = previous.final_contents()
    if left.target_sha256 != plan.target_sha256:
        yield Violation(NOT_PROGRAMMED, f"initial_state comes from a plan for another target "
                                        f"({left.target_sha256[:12]})")
    owners = {t.id: w for w in plan.weights for t in w.tiles}
    for held in plan.initial:
        matrix = owners.get(held.tile)
        if matrix is None:
            continue  # an unknown tile is reported by the reference check
        tile = index.tiles[held.tile]
        key = (matrix.sha256, matrix.columns_per_weight, tile.row_start, tile.row_stop,
               tile.col_start, tile.col_stop, tile.phys_rows, tile.phys_cols)
        there = left.tiles.get(held.crossbar)
        if there != key:
            what = "nothing" if there is None else f"another tile ({there[0][:12]} rows " \
                                                   f"[{there[2]}, {there[3]}) cols " \
                                                   f"[{there[4]}, {there[5]}))"
            yield Violation(NOT_PROGRAMMED, f"initial_state puts tile '{held.tile}' on "
                                            f"crossbar {held.crossbar}, where the previous "
                                            f"plan left {what}")


# ---- bounds --------------------------------------------------------------------------
def _topological(index: PlanIndex) -> list[str] | None:
    """Operator ids in dependency order, or None on a cycle (reported elsewhere)."""
    ops = index.ops
    waiting = {op_id: {d for d in op.deps if d in ops and d != op_id}
               for op_id, op in ops.items()}
    users: dict[str, list[str]] = {}
    for op_id, deps in waiting.items():
        for dep in deps:
            users.setdefault(dep, []).append(op_id)
    ready = [op_id for op_id, deps in waiting.items() if not deps]
    order: list[str] = []
    while ready:
        op_id = ready.pop()
        order.append(op_id)
        for user in users.get(op_id, ()):
            waiting[user].discard(op_id)
            if not waiting[user]:
                ready.append(user)
    return order if len(order) == len(ops) else None


def recomputed_bound_ns(index: PlanIndex) -> int | None:
    """Recompute the analytic makespan lower bound from the plan's re-priced operators.

    The largest of: the critical path (an MVM starts after its slowest tile is
    written, unless the tile is in place); per weight matrix, the earliest release
    plus the latencies of the operators sharing it; the digital work over all
    digital units; the crossbar-time (computing on every tile, writing every tile not
    in place) over all crossbars. None when the target or a price is missing, or the
    dependencies form a cycle.
    """
    target, plan = index.target, index.plan
    order = _topological(index)
    if target is None or order is None or any(o not in index.costs for o in index.ops):
        return None
    in_place = {p.tile for p in plan.initial}
    write_ns = {t: 0 if t in in_place else index.write_costs[t].latency_ns
                for t in index.tiles}
    latency = {o: index.costs[o].latency_ns for o in index.ops}
    tiles_of = {o: index.expected_tiles(op) for o, op in index.ops.items()}
    release = {o: max((write_ns[t] for t in tiles_of[o]), default=0)
               if index.ops[o].kind is OpKind.MVM else 0 for o in index.ops}
    finish: dict[str, int] = {}
    for op_id in order:
        start = max([release[op_id]] + [finish[d] for d in index.ops[op_id].deps
                                         if d in finish])
        finish[op_id] = start + latency[op_id]
    per_weight: dict[str, list[str]] = {}
    for op_id, op in index.ops.items():
        if op.kind is OpKind.MVM:
            for weight in op.weights:
                per_weight.setdefault(weight, []).append(op_id)
    weight_ns = max((min(release[o] for o in ops) + sum(latency[o] for o in ops)
                     for ops in per_weight.values()), default=0)
    digital_work = sum(latency[o] for o, op in index.ops.items() if op.kind is OpKind.DIGITAL)
    crossbar_work = sum(len(tiles_of[o]) * latency[o] for o, op in index.ops.items()
                        if op.kind is OpKind.MVM) + sum(write_ns.values())
    return max(max(finish.values(), default=0), weight_ns,
               math.ceil(digital_work / target.chip.digital_units),
               math.ceil(crossbar_work / target.chip.crossbars))


def _solver_proved(solver: str, bounds: dict[str, Any], makespan: int) -> bool:
    """Return whether the plan says CP-SAT proved its makespan optimal."""
    return (solver == "cpsat" and bounds.get("solver_status") == "OPTIMAL"
            and bounds.get("time_unit_ns") == 1 and bounds.get("solver_bound_ns") == makespan)


def check_bounds_proof(index: PlanIndex) -> Iterator[Violation]:
    """Check the bounds' claims against the bound the validator recomputes.

    Every bound recorded must be at most the makespan; the analytic bound must be the
    recomputed one; a lower bound equal to the makespan (gap 0: "optimal") needs the
    recomputed bound to reach the makespan, since no other proof can be re-checked.
    """
    bounds: dict[str, Any] = index.plan.bounds
    makespan = index.plan.totals.makespan_ns
    for key in ("analytic_bound_ns", "solver_bound_ns"):
        value = bounds.get(key)
        if isinstance(value, int | float) and value > makespan:
            yield Violation(TOTALS, f"bounds.{key} {value} exceeds the makespan {makespan}")
    mine = recomputed_bound_ns(index)
    if mine is None:
        return
    analytic = bounds.get("analytic_bound_ns")
    if isinstance(analytic, int | float) and analytic != mine:
        yield Violation(TOTALS, f"bounds.analytic_bound_ns is {analytic}, the re-priced "
                                f"operators give {mine}")
    claimed = bounds.get("lower_bound_ns")
    gap = bounds.get("gap")
    optimal = claimed == makespan or (isinstance(gap, int | float) and gap <= 0)
    if optimal and makespan > mine and _solver_proved(index.plan.solver, bounds, makespan):
        # CP-SAT's proof cannot be re-run here: the claim is accepted as the solver's,
        # for a plan CP-SAT made with an unscaled (1 ns) model (docs/validation.md).
        return
    if optimal and makespan > mine:
        yield Violation(TOTALS, f"the bounds claim the makespan {makespan} ns is optimal, "
                                f"but the bound the validator can prove is {mine} ns")
