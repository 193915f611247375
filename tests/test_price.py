"""Pricing: one cost table per program, and schedulers that read only that table."""

from __future__ import annotations

from dataclasses import replace

from enasa_compiler.ir import (
    CostTable,
    CrossbarProgram,
    EventCost,
    MvmOp,
    SignedScheme,
    WeightMatrix,
)
from enasa_compiler.passes.duplicate import auto_copies
from enasa_compiler.passes.lower import tile_matrix
from enasa_compiler.passes.mapping import schedule_ops
from enasa_compiler.passes.mapping.bounds import makespan_lower_bound
from enasa_compiler.passes.mapping.cpsat import schedule_cpsat
from enasa_compiler.passes.price import price
from enasa_compiler.targets import load_target, target_from_dict
from enasa_compiler.targets.cost import mvm_cost, operator_cost, program_cost


def _target(crossbars: int = 64):
    data = load_target("neurosim-22nm").to_dict()
    data["chip"]["crossbars"] = crossbars
    return target_from_dict(data)


def _weight(wid: str, rows: int = 64, cols: int = 16) -> WeightMatrix:
    return WeightMatrix(wid, wid, rows, cols, 4, tile_matrix(wid, rows, cols, 128, 128, 4))


def _chain(n: int, vectors: int = 16) -> CrossbarProgram:
    ops = [MvmOp(f"op{i}", "Conv", (0,), (f"v{i}",), (f"v{i + 1}",), (_weight(f"w{i}"),),
                 vectors, vectors * 64 * 16) for i in range(n)]
    return CrossbarProgram(
        ops=tuple(ops), deps={f"op{i}": ((f"op{i - 1}",) if i else ()) for i in range(n)},
        subnet_outputs=((f"v{n}",),), input_name="v0", input_shape=(1, 3, 8, 8),
        subnet_names=("s0",), w_bits=8, cell_bits=2, a_bits=8,
        signed_scheme=SignedScheme.OFFSET)


def _made_up(program: CrossbarProgram, latencies: dict[str, int],
             write_ns: int) -> CostTable:
    write = EventCost(write_ns, 1.0, {"write": 1.0}, cell_writes=1)
    return CostTable(
        batch=1,
        operators={op: EventCost(ns, 2.0, {"cells": 2.0}) for op, ns in latencies.items()},
        writes={t.id: write for w in program.weight_matrices() for t in w.tiles})


def test_price_equals_the_cost_model_per_operator_and_tile():
    program, target = _chain(3), _target()
    table = price(program, target)
    for op in program.ops:
        assert table.operators[op.id] == operator_cost(op, target, program.batch)
    for matrix in program.weight_matrices():
        for tile in matrix.tiles:
            assert table.writes[tile.id] == program_cost(tile, target)


def test_latency_with_copies_equals_pricing_the_duplicated_operator():
    target = _target()
    op = _chain(1, vectors=37).ops[0]
    assert isinstance(op, MvmOp)
    entry = mvm_cost(op, target)
    for copies in (1, 2, 3, 5, 37):
        trial = replace(op, weights=op.weights * copies, copies=copies)
        assert entry.latency_with_copies(copies) == mvm_cost(trial, target).latency_ns


def test_ops_schedules_with_the_latencies_of_a_made_up_table():
    program, target = _chain(3), _target()
    table = _made_up(program, {"op0": 7, "op1": 1000, "op2": 3}, write_ns=5)
    schedule = schedule_ops(program, target, "resident", costs=table)
    events = {e.op: e for e in schedule.compute}
    assert {op: e.end_ns - e.start_ns for op, e in events.items()} == {
        "op0": 7, "op1": 1000, "op2": 3}
    # Resident: every write lasts the table's 5 ns at time 0, then the chain runs.
    assert {w.end_ns for w in schedule.program} == {5}
    assert events["op0"].start_ns == 5 and events["op2"].end_ns == 5 + 7 + 1000 + 3


def test_bound_and_cpsat_read_the_same_made_up_table():
    program, target = _chain(3), _target()
    table = _made_up(program, {"op0": 10, "op1": 20, "op2": 30}, write_ns=4)
    bound = makespan_lower_bound(program, target, costs=table)
    assert bound.critical_path_ns == 4 + 10 + 20 + 30
    result = schedule_cpsat(program, target, "resident", costs=table, time_limit_s=5)
    assert result.schedule is not None and result.makespan_ns == 64


def test_auto_duplication_follows_the_table_not_the_cost_model():
    program, target = _chain(2, vectors=8), _target(crossbars=6)
    real = price(program, target)
    # Make op1 look ten times slower than op0: the spare crossbars go to it.
    slow = CostTable(batch=1, writes=real.writes, operators={
        "op0": real.operators["op0"],
        "op1": replace(real.operators["op1"],
                       read_cycle_ns=10 * real.operators["op1"].read_cycle_ns)})
    assert auto_copies(program, target, real) == {"op0": 3, "op1": 3}
    skewed = auto_copies(program, target, slow)
    assert skewed["op1"] > skewed.get("op0", 1)
