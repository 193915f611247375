"""Weight duplication: copies of an operator's weights split its vectors, priced honestly."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

import enasa_compiler
from enasa_compiler.cli import main
from enasa_compiler.errors import InputError
from enasa_compiler.ir import MvmOp
from enasa_compiler.passes.duplicate import (
    apply_duplication,
    auto_copies,
    duplicate,
    parse_duplicate,
)
from enasa_compiler.pipeline import compile_detailed
from enasa_compiler.targets import execute_plan, load_target
from enasa_compiler.targets.cost import mvm_cost, program_cost
from enasa_compiler.validation.validator import PLACEMENT, validate

TARGET = load_target("neurosim-22nm")


def _widest(program) -> MvmOp:
    """The MVM operator with the most vectors (a stem conv: the one duplication helps)."""
    return max(program.mvm_ops(), key=lambda op: (op.vectors_per_image, op.id))


def test_copies_multiply_tiles_and_divide_vectors(group4_result):
    program = group4_result.program
    op = _widest(program)
    copied = duplicate(program, {op.id: 3})
    new = copied.op(op.id)
    assert isinstance(new, MvmOp) and new.copies == 3
    assert len(new.weights) == 3 * len(op.weights) and new.base_weights == op.weights
    assert len({t.id for t in new.tiles}) == 3 * len(op.tiles)
    assert {w.sha256 for w in new.weights} == {w.sha256 for w in op.weights}
    before, after = mvm_cost(op, TARGET), mvm_cost(new, TARGET)
    # neurosim-22nm: copies divide the sensing and in-PE accumulation (read_cycle_ns per
    # read), not the buffer and interconnect time (fixed_ns).
    assert after.fixed_ns == pytest.approx(before.fixed_ns)
    assert after.latency_ns == math.ceil(
        math.ceil(op.vectors_per_image / 3) * TARGET.input_cycles * before.read_cycle_ns
        + before.fixed_ns)
    assert after.latency_ns < before.latency_ns
    # The same reads happen, on three crossbar sets instead of one.
    assert after.energy_pj == pytest.approx(before.energy_pj)
    writes = sum(program_cost(t, TARGET).energy_pj for t in new.tiles)
    assert writes == pytest.approx(3 * sum(program_cost(t, TARGET).energy_pj
                                           for t in op.tiles))
    # Nothing else changes.
    others = [o for o in copied.ops if o.id != op.id]
    assert others == [o for o in program.ops if o.id != op.id]


def test_copies_are_capped_at_the_vectors_and_shared_with_weight_sharers(group4_result):
    program = group4_result.program
    gemm = next(op for op in program.mvm_ops() if op.vectors_per_image == 1)
    assert duplicate(program, {gemm.id: 4}).op(gemm.id).copies == 1  # one vector
    by_weights: dict[tuple[str, ...], list[MvmOp]] = {}
    for op in program.mvm_ops():
        by_weights.setdefault(tuple(w.id for w in op.weights), []).append(op)
    sharers = next(ops for ops in by_weights.values()
                   if len(ops) > 1 and ops[0].vectors_per_image > 1)
    copied = duplicate(program, {op.id: 2 for op in sharers})
    copies = [copied.op(op.id).weights for op in sharers]
    assert all(w == copies[0] for w in copies)
    assert len(copied.weight_matrices()) == len(program.weight_matrices()) + len(
        sharers[0].weights)


def test_auto_spends_only_spare_crossbars_on_the_slowest_operators(group4_result):
    program = group4_result.program
    copies = auto_copies(program, TARGET)
    assert copies, "a 4096-crossbar chip has spare crossbars for this group"
    copied = duplicate(program, copies)
    assert sum(len(w.tiles) for w in copied.weight_matrices()) <= TARGET.chip.crossbars
    slowest = max(program.mvm_ops(), key=lambda op: mvm_cost(op, TARGET).latency_ns)
    assert copies.get(slowest.id, 1) > 1
    # No spare crossbars, no copies.
    data = TARGET.to_dict()
    data["chip"]["crossbars"] = sum(len(w.tiles) for w in program.weight_matrices())
    full = enasa_compiler.targets.target_from_dict(data)
    assert auto_copies(program, full) == {}
    assert apply_duplication(program, TARGET, "auto", mode="dynamic") is program


def test_duplicated_plan_is_faster_still_resident_and_valid(group4_files, group4_result):
    off = group4_result.plan
    auto = compile_detailed(group4_files, "neurosim-22nm", duplicate="auto")
    plan = auto.plan
    assert plan.mode == "resident"
    assert plan.totals.makespan_ns < off.totals.makespan_ns
    assert plan.totals.crossbars_used > off.totals.crossbars_used
    assert plan.totals.cell_writes > off.totals.cell_writes
    assert plan.totals.compute_energy_pj == pytest.approx(off.totals.compute_energy_pj,
                                                          rel=1e-6)
    assert any(op.copies > 1 for op in plan.operators)
    assert validate(plan, models=group4_files) == []


def test_duplicated_operators_compute_the_same_values(group4_files, group4_result):
    copied = compile_detailed(group4_files, "neurosim-22nm", duplicate=3)
    assert all(op.copies == min(3, op.vectors_per_image) for op in copied.plan.operators
               if op.kind.value == "mvm")
    images = np.random.default_rng(0).standard_normal(
        (2, *group4_result.plan.input_shape[1:])).astype(np.float32)
    plain = execute_plan(group4_result.plan, group4_result.group_model, images)
    tripled = execute_plan(copied.plan, copied.group_model, images)
    for a, b in zip(plain.outputs, tripled.outputs, strict=True):
        for name in a:
            np.testing.assert_allclose(b[name], a[name], rtol=0, atol=1e-9)


def test_validator_rejects_a_copy_that_is_not_a_copy(group4_files):
    plan = compile_detailed(group4_files[:1], "neurosim-22nm", duplicate=2).plan
    data = plan.to_dict()
    op = next(o for o in data["operators"] if o["copies"] == 2)
    copy_id = op["weights"][-1]
    matrix = next(w for w in data["weights"] if w["id"] == copy_id)
    matrix["sha256"] = "f" * 64
    assert any(v.kind == PLACEMENT and "is not a copy" in v.message
               for v in validate(data))
    data = plan.to_dict()
    op = next(o for o in data["operators"] if o["copies"] == 2)
    op["copies"] = 3
    assert any(v.kind == PLACEMENT and "copies 3" in v.message for v in validate(data))


def test_off_is_byte_identical_and_the_default_balances_throughput(group4_files,
                                                                     group4_result,
                                                                     group4_default):
    assert parse_duplicate(None) == "off" and parse_duplicate("1") == "off"
    plain = compile_detailed(group4_files, "neurosim-22nm", duplicate="off").plan
    assert plain.to_json() == group4_result.plan.to_json()
    assert all(op.copies == 1 for op in plain.operators)
    # The default gives the pipeline's bottleneck copies: a shorter II than without.
    default = group4_default.plan
    assert any(op.copies > 1 for op in default.operators)
    assert default.pipeline is not None and plain.pipeline is not None
    assert default.pipeline.totals.ii_ns < plain.pipeline.totals.ii_ns


@pytest.mark.parametrize("bad", ["x", "0", "-2", "2.5"])
def test_bad_duplicate_option_is_bad_input(bad, group4_files, tmp_path, capsys):
    with pytest.raises(InputError):
        parse_duplicate(bad)
    out = tmp_path / "p.json"
    assert main(["compile", str(group4_files[0]), "-o", str(out), "--duplicate", bad]) == 2
    assert "duplicate" in capsys.readouterr().err and not out.exists()


def test_cli_duplicate_auto_shows_in_the_report(group4_files, tmp_path, capsys):
    out = tmp_path / "p.json"
    assert main(["compile", *map(str, group4_files), "-o", str(out), "--duplicate",
                 "auto", "-q"]) == 0
    assert main(["simulate", str(out), "--json", "--breakdown"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["duplicated_operators"] > 0
    rows = [r for r in report["operators"] if r["copies"] > 1]
    assert rows and all(r["crossbars"] % r["copies"] == 0 for r in rows)


def test_a_copy_matrix_keeps_the_tiling():
    from enasa_compiler.ir import WeightMatrix
    from enasa_compiler.passes.lower import tile_matrix

    matrix = WeightMatrix("w0", "a" * 64, 300, 40, 4, tile_matrix("w0", 300, 40, 128, 128, 4))
    op = MvmOp("conv", "Conv", (0,), ("x",), ("y",), (matrix,), 10, 10 * 300 * 40)
    from enasa_compiler.ir import CrossbarProgram, SignedScheme

    program = CrossbarProgram((op,), {"conv": ()}, (("y",),), "x", (1, 3, 8, 8), ("s",),
                              8, 2, 8, SignedScheme.OFFSET)
    new = duplicate(program, {"conv": 4}).op("conv")
    assert isinstance(new, MvmOp)
    for k, copy in enumerate(new.weights[1:], start=1):
        assert copy.id == f"w0c{k}"
        assert [dataclasses.replace(t, id="") for t in copy.tiles] == [
            dataclasses.replace(t, id="") for t in matrix.tiles]
    with pytest.raises(InputError, match="copies must be at least 1"):
        duplicate(program, {"conv": 0})
