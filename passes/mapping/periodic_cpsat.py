"""The minimal II bound as an exact CP-SAT model: an independent check of the bisection.

:func:`~enasa_compiler.passes.mapping.periodic.balance_throughput` finds the lowest
resource bound on II over whole-copy duplication and digital lanes by bisection, which
relies on feasibility being monotone in II. This model states the same optimisation
directly: one Boolean per (weight group, useful copy count) and per (digital operator,
lane count), exactly one chosen in each, the chosen copies' crossbars within the chip,
and II at least every group's summed durations, every digital operator's duration and
the digital lane-time over the units. CP-SAT's optimum (with its proof) is a lower
bound on the II of any periodic schedule on the chip under the cost model; a schedule
whose II meets it is optimal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ortools.sat.python import cp_model

from enasa_compiler.ir import CostTable, CrossbarProgram, DigitalOp
from enasa_compiler.passes.mapping.periodic import _Group, _weight_groups
from enasa_compiler.targets.cost import digital_lanes_ns
from enasa_compiler.targets.target import Target

logger = logging.getLogger(__name__)

__all__ = ["IIProof", "minimal_ii_cpsat"]


@dataclass(frozen=True)
class IIProof:
    """CP-SAT's answer: the best II found, its proven lower bound, and the status."""

    ii_ns: int | None
    bound_ns: int
    status: str


def minimal_ii_cpsat(program: CrossbarProgram, target: Target, costs: CostTable, *,
                     time_limit_s: float = 30.0) -> IIProof:
    """Minimise the II resource bound over copies and lanes with CP-SAT.

    ``program`` is the lowered program without duplication, ``costs`` its per-image
    prices (:func:`~enasa_compiler.passes.mapping.periodic.image_costs`).
    """
    model = cp_model.CpModel()
    groups = [_Group(ops, costs) for ops in _weight_groups(program.mvm_ops())]
    digital = [op for op in program.ops if isinstance(op, DigitalOp)]
    horizon = max([1, *(g.time_ns(1) for g in groups),
                   *(digital_lanes_ns(op, target, 1) for op in digital)])
    horizon += sum(digital_lanes_ns(op, target, 1) for op in digital)
    ii = model.new_int_var(1, horizon, "ii")
    used = []
    for index, group in enumerate(groups):
        counts = group.useful_copies()
        times = group.times_ns(counts)
        picks = [model.new_bool_var(f"g{index}c{c}") for c in counts]
        model.add_exactly_one(picks)
        model.add(ii >= sum(int(t) * p for t, p in zip(times, picks, strict=True)))
        used.append(sum(int(group.tiles * c) * p for c, p in zip(counts, picks, strict=True)))
    model.add(sum(used) <= target.chip.crossbars)
    lane_time = []
    for index, op in enumerate(digital):
        options = range(1, target.chip.digital_lanes_per_op + 1)
        times = [digital_lanes_ns(op, target, lanes) for lanes in options]
        picks = [model.new_bool_var(f"d{index}l{lanes}") for lanes in options]
        model.add_exactly_one(picks)
        model.add(ii >= sum(t * p for t, p in zip(times, picks, strict=True)))
        lane_time.append(sum(lanes * t * p for lanes, t, p
                             in zip(options, times, picks, strict=True)))
    model.add(sum(lane_time) <= target.chip.digital_units * ii)
    model.minimize(ii)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit_s
    solver.parameters.num_workers = 1
    status = solver.solve(model)
    name = solver.status_name(status)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return IIProof(None, int(solver.best_objective_bound), name)
    return IIProof(int(solver.value(ii)), int(solver.best_objective_bound), name)
