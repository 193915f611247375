"""Lower bounds on the makespan of any schedule of a crossbar program.

Every plan reports how far it may be from optimal. The bound here holds for any
schedule the validator accepts (resident or dynamic, OPS, CP-SAT or by hand):

* critical path: the longest chain of operator latencies, where a crossbar operator
  cannot start before its own tiles are written (its slowest tile's programming);
* weight matrix: operators sharing one weight matrix run one at a time on its tiles,
  so the earliest such release plus their summed latencies;
* digital units: the digital work spread perfectly over all units;
* crossbar capacity: crossbar-time needed (computing on every tile, and writing every
  tile at least once) spread perfectly over all crossbars of the chip.

Tiles already in place (online mapping: left in crossbars by the previous group's
plan) need no write: they are released at time 0 and add no write work.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection
from dataclasses import dataclass

from enasa_compiler.ir import CostTable, CrossbarProgram, MvmOp
from enasa_compiler.passes.price import price
from enasa_compiler.targets.target import Target

logger = logging.getLogger(__name__)

__all__ = ["MakespanBound", "makespan_lower_bound"]


@dataclass(frozen=True)
class MakespanBound:
    """The analytic lower bound and the term that set it."""

    bound_ns: int
    critical_path_ns: int
    weight_matrix_ns: int
    digital_ns: int
    capacity_ns: int


def makespan_lower_bound(
    program: CrossbarProgram, target: Target, in_place: Collection[str] = (),
    costs: CostTable | None = None,
) -> MakespanBound:
    """Return a lower bound on the makespan of every valid schedule of ``program``.

    Args:
        program: the lowered group.
        target: the chip.
        in_place: ids of tiles already in crossbars when the plan starts.
        costs: the program priced on the target; priced here when not given.

    """
    costs = costs or price(program, target)
    latency: dict[str, int] = {}
    release: dict[str, int] = {}
    placed = set(in_place)
    program_ns = {t.id: 0 if t.id in placed else costs.write_ns(t.id)
                  for w in program.weight_matrices() for t in w.tiles}
    for op in program.ops:
        latency[op.id] = costs.latency_ns(op.id)
        release[op.id] = (max(program_ns[t.id] for t in op.tiles)
                          if isinstance(op, MvmOp) else 0)

    finish: dict[str, int] = {}
    for op in program.ops:  # topological order
        start = max([release[op.id]] + [finish[d] for d in program.deps[op.id]])
        finish[op.id] = start + latency[op.id]
    critical_path_ns = max(finish.values(), default=0)

    per_weight: dict[str, list[str]] = {}
    for op in program.mvm_ops():
        for matrix in op.weights:
            per_weight.setdefault(matrix.id, []).append(op.id)
    weight_matrix_ns = max(
        (min(release[o] for o in ops) + sum(latency[o] for o in ops)
         for ops in per_weight.values()), default=0)

    digital_work = sum(latency[op.id] for op in program.ops if not isinstance(op, MvmOp))
    digital_ns = math.ceil(digital_work / target.chip.digital_units)

    crossbar_work = sum(len(op.tiles) * latency[op.id] for op in program.mvm_ops())
    crossbar_work += sum(program_ns.values())
    capacity_ns = math.ceil(crossbar_work / target.chip.crossbars)

    bound = max(critical_path_ns, weight_matrix_ns, digital_ns, capacity_ns)
    return MakespanBound(bound, critical_path_ns, weight_matrix_ns, digital_ns, capacity_ns)
