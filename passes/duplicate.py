"""Weight duplication: spare crossbars hold extra copies of an operator's weights.

An MVM operator reads one input vector per output pixel, one after another, so its
latency grows with the pixels. With ``k`` copies of its weights on ``k`` sets of
crossbars, ``k`` pixels are processed at once: the vectors split evenly over the
copies (``ceil(vectors / k)`` each), latency drops by about ``k``, the reads and their
energy stay the same, and programming (and crossbars) grows ``k``-fold. NeuroSim and
ISAAC call this weight duplication; it is the main lever for throughput.

This pass runs on the crossbar program after lowering. A copy of weight matrix ``w3``
is a new matrix ``w3c1`` with the same contents hash and tiling (tiles ``w3c1.t0``,
...); operators that share ``w3`` share its copies too. The operator lists its
matrices copy after copy (:attr:`enasa_compiler.ir.MvmOp.copies`), so the schedulers
place every copy's tiles like any other tiles.

Policies (:func:`apply_duplication`): ``off``; a number ``N`` (every MVM operator gets
``N`` copies, or as many as it has vectors); ``auto``: spare crossbars of a resident
mapping go greedily to the operator with the longest latency, one copy at a time,
while every tile still fits the chip at once; ``throughput`` (the default of
``enasa compile``): copies that minimise the pipelined schedule's initiation interval
(:func:`enasa_compiler.passes.mapping.periodic.balance_throughput`: the bottleneck
gets copies, not the slowest operator), applied by the compile driver.
"""

from __future__ import annotations

import enum
import heapq
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from enasa_compiler._text import plural
from enasa_compiler.errors import InputError
from enasa_compiler.ir import (
    CostTable,
    CrossbarProgram,
    MappingMode,
    MvmOp,
    Tile,
    WeightMatrix,
)
from enasa_compiler.passes.price import price
from enasa_compiler.targets.target import Target

logger = logging.getLogger(__name__)

__all__ = ["DUPLICATE_POLICIES", "Duplication", "DuplicationPolicy", "apply_duplication",
           "auto_copies", "duplicate", "parse_duplicate"]


class DuplicationPolicy(enum.StrEnum):
    """Which operators get copies of their weights (see the module docstring)."""

    OFF = "off"
    AUTO = "auto"
    FIXED = "fixed"
    THROUGHPUT = "throughput"


DUPLICATE_POLICIES = (DuplicationPolicy.OFF.value, DuplicationPolicy.AUTO.value,
                      DuplicationPolicy.THROUGHPUT.value)


@dataclass(frozen=True)
class Duplication:
    """A duplication option: a policy, and the copies when the policy is ``FIXED``.

    ``str()`` gives the command-line spelling (``off``, ``auto`` or the number).
    """

    policy: DuplicationPolicy = DuplicationPolicy.OFF
    copies: int = 1

    @classmethod
    def parse(cls, value: Duplication | str | int | None) -> Duplication:
        """Read ``off``, ``auto``, a positive number of copies, or a ``Duplication``.

        Raises:
            InputError: anything else.

        """
        if isinstance(value, Duplication):
            return value
        chosen = parse_duplicate(value)
        if isinstance(chosen, int):
            return cls(DuplicationPolicy.FIXED, chosen)
        return cls(DuplicationPolicy(chosen))

    def __str__(self) -> str:
        return str(self.copies) if self.policy is DuplicationPolicy.FIXED else self.policy


def _copy_matrix(matrix: WeightMatrix, index: int) -> WeightMatrix:
    copy_id = f"{matrix.id}c{index}"
    # Tile's constructor, not dataclasses.replace: replace inspects the fields on every
    # call, and a throughput compile copies thousands of tiles.
    tiles = tuple(Tile(f"{copy_id}.t{n}", t.row_start, t.row_stop, t.col_start, t.col_stop,
                       t.phys_rows, t.phys_cols) for n, t in enumerate(matrix.tiles))
    return replace(matrix, id=copy_id, tiles=tiles)


def _vectors(op: MvmOp, batch: int) -> int:
    return batch * op.vectors_per_image


def duplicate(program: CrossbarProgram, copies: Mapping[str, int]) -> CrossbarProgram:
    """Give the named MVM operators that many copies of their weights.

    Copies beyond an operator's vectors per run would have nothing to do and are not
    made; operators not named (or named with 1) are left as they are.

    Raises:
        InputError: a copy count below 1, or a name that is no MVM operator.

    """
    mvm_ids = {op.id for op in program.mvm_ops()}
    for op_id, count in copies.items():
        if count < 1:
            raise InputError(f"operator '{op_id}': copies must be at least 1, not {count}")
        if op_id not in mvm_ids:
            raise InputError(f"cannot duplicate '{op_id}': not a crossbar operator")
    made: dict[tuple[str, int], WeightMatrix] = {}
    ops = []
    for op in program.ops:
        wanted = copies.get(op.id, 1) if isinstance(op, MvmOp) else 1
        if not isinstance(op, MvmOp) or wanted <= 1:
            ops.append(op)
            continue
        count = min(wanted, _vectors(op, program.batch))
        base = op.base_weights
        extra = tuple(made.setdefault((w.id, k), _copy_matrix(w, k))
                      for k in range(1, count) for w in base)
        ops.append(replace(op, weights=base + extra, copies=count))
    logger.info("weight duplication: %s copied",
                plural(sum(1 for o in ops if isinstance(o, MvmOp) and o.copies > 1),
                       "operator"))
    return replace(program, ops=tuple(ops))


def _next_useful(vectors: int, copies: int) -> int:
    """Return the fewest copies above ``copies`` that shorten ``ceil(vectors / copies)``."""
    per_copy = math.ceil(vectors / copies)
    return vectors + 1 if per_copy <= 1 else math.ceil(vectors / (per_copy - 1))


def auto_copies(program: CrossbarProgram, target: Target,
                costs: CostTable | None = None) -> dict[str, int]:
    """Spend spare crossbars of a resident mapping on the slowest operators.

    Greedy: take the MVM operator with the longest latency, give it the fewest more
    copies that shorten it, if the new tiles fit in the crossbars still free; repeat
    until nothing more fits. Operators sharing a weight matrix share its copies, so a
    second one gets a copy already made for free.

    Returns:
        Operator id -> copies (only operators given more than one); empty when the
        weights do not fit the chip at once (dynamic mapping has no spare crossbars).

    """
    tiles_per_matrix = {w.id: len(w.tiles) for w in program.weight_matrices()}
    spare = target.chip.crossbars - sum(tiles_per_matrix.values())
    if spare <= 0:
        return {}
    ops = {op.id: op for op in program.mvm_ops()}
    made: dict[str, int] = {}  # weight id -> copies that exist
    copies: dict[str, int] = {}
    costs = costs or price(program, target)
    heap = [(-costs.operators[op.id].latency_with_copies(1), op.id) for op in ops.values()]
    heapq.heapify(heap)
    while heap:
        _, op_id = heapq.heappop(heap)
        op = ops[op_id]
        vectors = _vectors(op, program.batch)
        current = copies.get(op_id, 1)
        wanted = _next_useful(vectors, current)
        if wanted > vectors:
            continue
        cost = sum(tiles_per_matrix[w.id] * max(0, wanted - made.get(w.id, 1))
                   for w in op.base_weights)
        if cost > spare:
            continue
        spare -= cost
        for w in op.base_weights:
            made[w.id] = max(made.get(w.id, 1), wanted)
        copies[op_id] = wanted
        latency = costs.operators[op_id].latency_with_copies(wanted)
        heapq.heappush(heap, (-latency, op_id))
    return copies


def parse_duplicate(value: str | int | None) -> str | int:
    """Read a duplication option: ``off``, ``auto`` or a positive number of copies.

    Raises:
        InputError: anything else.

    """
    if value is None:
        return "off"
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        text = str(value).strip().lower()
        if text in DUPLICATE_POLICIES:
            return text
        try:
            number = int(text)
        except ValueError:
            raise InputError("duplicate must be 'off', 'auto', 'throughput' or a number of "
                             f"copies, not "
                             f"'{value}'") from None
    if number < 1:
        raise InputError(f"duplicate must be at least 1 copy, not {number}")
    return "off" if number == 1 else number


def apply_duplication(program: CrossbarProgram, target: Target,
                      policy: Duplication | str | int | None,
                      mode: MappingMode | str = MappingMode.AUTO,
                      costs: CostTable | None = None) -> CrossbarProgram:
    """Duplicate weights as the policy says (see the module docstring).

    ``auto`` does nothing when ``mode`` is ``dynamic``: there are no spare crossbars
    to give, only more writes. ``costs`` is ``program`` priced on ``target`` (priced
    here when ``auto`` needs it and it is not given).
    """
    chosen = Duplication.parse(policy)
    if chosen.policy in (DuplicationPolicy.OFF, DuplicationPolicy.THROUGHPUT):
        # ``throughput`` balances the pipeline's II; the compile driver applies it with
        # enasa_compiler.passes.mapping.periodic.balance_throughput.
        return program
    if chosen.policy is DuplicationPolicy.AUTO:
        if mode == MappingMode.DYNAMIC:
            return program
        return duplicate(program, auto_copies(program, target, costs))
    return duplicate(program, {op.id: chosen.copies for op in program.mvm_ops()})
