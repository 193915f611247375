"""OPS list scheduling on hand-made crossbar programs where the right order is known."""

from __future__ import annotations

import pytest

from enasa_compiler.errors import InputError
from enasa_compiler.ir import CrossbarProgram, DigitalOp, MvmOp, SignedScheme, WeightMatrix
from enasa_compiler.passes.lower import tile_matrix
from enasa_compiler.passes.mapping import schedule_ops
from enasa_compiler.passes.price import price
from enasa_compiler.targets import load_target, target_from_dict


def _target(crossbars: int, digital_units: int = 4):
    data = load_target("neurosim-22nm").to_dict()
    data["chip"]["crossbars"] = crossbars
    data["chip"]["digital_units"] = digital_units
    return target_from_dict(data)


def _weight(wid: str, rows: int = 64, cols: int = 16) -> WeightMatrix:
    return WeightMatrix(wid, wid, rows, cols, 4, tile_matrix(wid, rows, cols, 128, 128, 4))


def _mvm(op_id, weight, inputs=("x",), subnets=(0,), layer="", vectors=16):
    return MvmOp(op_id, "Conv", subnets, tuple(inputs), (f"{op_id}_out",), (weight,),
                 vectors, vectors * weight.rows * weight.cols, layer)


def _program(ops, deps=None):
    deps = deps or {}
    return CrossbarProgram(
        ops=tuple(ops), deps={op.id: tuple(deps.get(op.id, ())) for op in ops},
        subnet_outputs=((),), input_name="x", input_shape=(1, 3, 8, 8),
        subnet_names=("s0",), w_bits=8, cell_bits=2, a_bits=8,
        signed_scheme=SignedScheme.OFFSET,
    )


def _events(schedule):
    return {e.op: e for e in schedule.compute}


def _overlap(a, b):
    return a.start_ns < b.end_ns and b.start_ns < a.end_ns


def test_ready_operators_all_start_when_crossbars_suffice():
    ops = [_mvm(f"op{i}", _weight(f"w{i}"), inputs=(f"in{i}",)) for i in range(4)]
    schedule = schedule_ops(_program(ops), _target(8), "resident")
    events = _events(schedule)
    program_end = max(e.end_ns for e in schedule.program)
    assert {e.start_ns for e in events.values()} == {program_end}
    assert len({p.crossbar for e in events.values() for p in e.placements}) == 4


def test_resident_mode_programs_each_tile_once_at_time_zero():
    ops = [_mvm("a", _weight("w0", rows=300, cols=40)), _mvm("b", _weight("w1"))]
    schedule = schedule_ops(_program(ops), _target(16), "resident")
    tiles = [e.tile for e in schedule.program]
    assert len(tiles) == len(set(tiles)) == 3 * 2 + 1
    assert {e.start_ns for e in schedule.program} == {0}


def test_weight_shared_operators_are_time_multiplexed():
    shared = _weight("w0")
    ops = [_mvm("a", shared, inputs=("x0",), subnets=(0,)),
           _mvm("b", shared, inputs=("x1",), subnets=(1,))]
    schedule = schedule_ops(_program(ops), _target(8), "resident")
    events = _events(schedule)
    assert not _overlap(events["a"], events["b"])
    assert [p.crossbar for p in events["a"].placements] == [
        p.crossbar for p in events["b"].placements]


def test_dependencies_are_respected():
    ops = [_mvm("a", _weight("w0")),
           DigitalOp("relu", "Relu", (0,), ("a_out",), ("relu_out",), 64, 64),
           _mvm("b", _weight("w1"), inputs=("relu_out",))]
    schedule = schedule_ops(_program(ops, {"relu": ["a"], "b": ["relu"]}), _target(4))
    events = _events(schedule)
    assert events["relu"].start_ns >= events["a"].end_ns
    assert events["b"].start_ns >= events["relu"].end_ns
    assert events["relu"].unit is not None and events["relu"].placements == ()


def test_dynamic_mode_prefers_operators_reading_the_same_input():
    # Two crossbars, three ready ops of equal cost: a and c read x, b reads y.
    ops = [_mvm("a", _weight("w0"), inputs=("x",)),
           _mvm("b", _weight("w1"), inputs=("y",)),
           _mvm("c", _weight("w2"), inputs=("x",))]
    schedule = schedule_ops(_program(ops), _target(2), "dynamic")
    events = _events(schedule)
    assert events["a"].start_ns == events["c"].start_ns
    assert events["b"].start_ns >= events["a"].end_ns


def test_dynamic_mode_prefers_operators_of_the_same_layer():
    ops = [_mvm("a", _weight("w0"), inputs=("x0",), layer="layer3"),
           _mvm("b", _weight("w1"), inputs=("x1",), layer="layer4"),
           _mvm("c", _weight("w2"), inputs=("x2",), layer="layer3")]
    schedule = schedule_ops(_program(ops), _target(2), "dynamic")
    events = _events(schedule)
    assert events["a"].start_ns == events["c"].start_ns
    assert events["b"].start_ns >= events["a"].end_ns


def test_critical_path_goes_first():
    # c heads a longer chain than a, so with one crossbar c runs first.
    ops = [_mvm("a", _weight("w0"), inputs=("x0",)),
           _mvm("c", _weight("w1"), inputs=("x1",)),
           _mvm("d", _weight("w2"), inputs=("c_out",))]
    schedule = schedule_ops(_program(ops, {"d": ["c"]}), _target(1), "dynamic")
    events = _events(schedule)
    assert events["c"].start_ns < events["a"].start_ns


def test_fcfs_policy_ignores_the_ranking_and_keeps_topological_order():
    # The same graph as the data-reuse test: OPS pairs a with c; FCFS takes a, b.
    ops = [_mvm("a", _weight("w0"), inputs=("x",)),
           _mvm("b", _weight("w1"), inputs=("y",)),
           _mvm("c", _weight("w2"), inputs=("x",))]
    events = _events(schedule_ops(_program(ops), _target(2), "dynamic", policy="fcfs"))
    assert events["a"].start_ns == events["b"].start_ns
    assert events["c"].start_ns >= events["a"].end_ns
    with pytest.raises(ValueError, match="unknown OPS policy"):
        schedule_ops(_program(ops), _target(2), "dynamic", policy="random")


def test_dynamic_mode_reuses_cached_weights_without_rewriting():
    shared = _weight("w0")
    ops = [_mvm("a", shared, inputs=("x0",)), _mvm("b", _weight("w1"), inputs=("x1",)),
           _mvm("c", shared, inputs=("b_out",))]
    schedule = schedule_ops(_program(ops, {"c": ["b"]}), _target(2), "dynamic")
    assert sorted(e.tile for e in schedule.program) == ["w0.t0", "w1.t0"]


def test_dynamic_mode_evicts_and_programs_before_use():
    ops = [_mvm(f"op{i}", _weight(f"w{i}"), inputs=(f"x{i}",)) for i in range(5)]
    schedule = schedule_ops(_program(ops), _target(2), "dynamic")
    events = _events(schedule)
    assert len(schedule.program) == 5
    for program_event in schedule.program:
        user = next(e for e in events.values()
                    if any(p.tile == program_event.tile for p in e.placements))
        assert user.start_ns >= program_event.end_ns
    by_crossbar: dict[int, list] = {}
    for e in list(events.values()) + list(schedule.program):
        crossbars = [p.crossbar for p in e.placements] if hasattr(e, "placements") else [
            e.crossbar]
        for c in crossbars:
            by_crossbar.setdefault(c, []).append(e)
    for items in by_crossbar.values():
        for i, x in enumerate(items):
            for y in items[i + 1:]:
                assert not _overlap(x, y)


def test_resident_mode_refuses_a_group_that_does_not_fit():
    ops = [_mvm(f"op{i}", _weight(f"w{i}")) for i in range(3)]
    with pytest.raises(InputError, match="need 3 crossbars but target"):
        schedule_ops(_program(ops), _target(2), "resident")
    assert schedule_ops(_program(ops), _target(2), "auto").mode == "dynamic"


def test_operator_larger_than_the_chip_is_refused():
    ops = [_mvm("big", _weight("w0", rows=1000))]
    with pytest.raises(InputError, match="does not fit the chip"):
        schedule_ops(_program(ops), _target(4), "dynamic")


@pytest.mark.parametrize("seed", range(30))
def test_incremental_admission_order_equals_rank_key_order(seed):
    import random

    from enasa_compiler.passes.mapping import rank_key
    from enasa_compiler.passes.mapping.ops import _Scheduler

    rng = random.Random(seed)
    ops = [_mvm(f"op{i}", _weight(f"w{i}", rows=rng.choice([16, 64, 200])),
                inputs=tuple(rng.sample(["x0", "x1", "x2", "x3"], rng.choice([1, 2]))),
                layer=rng.choice(["", "l1", "l2", "l3"]), vectors=rng.choice([4, 16, 64]))
           for i in range(rng.randint(2, 12))]
    program, target = _program(ops), _target(64)
    scheduler = _Scheduler(program, target, price(program, target), "resident", {})
    order: list[str] = []

    def record(op, now_ns):
        order.append(op.id)
        return True

    scheduler.try_start_mvm = record  # every candidate starts: only the order matters
    scheduler.admit(list(ops), 0)
    expected, admitted, left = [], [], list(ops)
    while left:
        best = max(left, key=lambda op: rank_key(op, admitted, scheduler.critical[op.id],
                                                 scheduler.index[op.id]))
        left.remove(best)
        admitted.append(best)
        expected.append(best.id)
    assert order == expected
