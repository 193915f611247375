"""Property: OPS plans for random operator graphs on random chips always validate.

Hypothesis draws a DAG of crossbar and digital operators, weight matrices shared
between some of them (time-multiplexed), a chip from just big enough for the largest
operator to roomy, and a mapping mode; the plan must pass the independent validator.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enasa_compiler.frontend import SubnetModel
from enasa_compiler.ir import CrossbarProgram, DigitalOp, MvmOp, Op, SignedScheme, WeightMatrix
from enasa_compiler.passes.lower import tile_matrix
from enasa_compiler.passes.mapping import crossbars_needed, schedule_ops
from enasa_compiler.passes.price import price
from enasa_compiler.pipeline import assemble_plan
from enasa_compiler.targets import load_target, target_from_dict
from enasa_compiler.validation.validator import validate

BASE = load_target("neurosim-22nm").to_dict()


@st.composite
def programs(draw):
    weights = [
        WeightMatrix(f"w{k}", f"{k:064x}", rows, cols, 4,
                     tile_matrix(f"w{k}", rows, cols, 128, 128, 4))
        for k, (rows, cols) in enumerate(draw(st.lists(
            st.tuples(st.integers(1, 300), st.integers(1, 80)), min_size=1, max_size=5)))
    ]
    ops: list[Op] = []
    deps: dict[str, tuple[str, ...]] = {}
    for i in range(draw(st.integers(1, 14))):
        sources = draw(st.lists(st.integers(-1, i - 1), min_size=1, max_size=2, unique=True))
        inputs = tuple("x" if s < 0 else f"v{s}" for s in sources)
        deps[f"op{i}"] = tuple(f"op{s}" for s in sources if s >= 0)
        if draw(st.booleans()):
            weight = weights[draw(st.integers(0, len(weights) - 1))]
            ops.append(MvmOp(f"op{i}", "Conv", (0,), inputs, (f"v{i}",), (weight,),
                             draw(st.integers(1, 64)), weight.rows * weight.cols,
                             draw(st.sampled_from(["", "layer1", "layer2"]))))
        else:
            ops.append(DigitalOp(f"op{i}", "Relu", (0,), inputs, (f"v{i}",),
                                 draw(st.integers(1, 5000)), draw(st.integers(1, 5000))))
    consumed = {name for op in ops for name in op.inputs}
    outputs = tuple(v for op in ops for v in op.outputs if v not in consumed)
    program = CrossbarProgram(
        ops=tuple(ops), deps=deps, subnet_outputs=(outputs,), input_name="x",
        input_shape=(1, 3, 8, 8), subnet_names=("s0",), w_bits=8, cell_bits=2, a_bits=8,
        signed_scheme=SignedScheme.OFFSET,
    )
    largest = max((len(op.tiles) for op in program.mvm_ops()), default=1)
    crossbars = draw(st.integers(largest, max(largest, crossbars_needed(program)) + 2))
    units = draw(st.integers(1, 3))
    return program, crossbars, units, draw(st.sampled_from(["auto", "dynamic"]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=programs())
def test_every_ops_plan_validates(case):
    program, crossbars, units, mode = case
    data = {**BASE, "chip": {**BASE["chip"], "crossbars": crossbars, "digital_units": units}}
    target = target_from_dict(data)
    schedule = schedule_ops(program, target, mode)
    subnet = SubnetModel(name="s0", sha256="0" * 64, model=None, arch=None)  # type: ignore[arg-type]
    plan = assemble_plan(program, price(program, target), schedule, target, [subnet],
                         {}, "ops")
    assert validate(plan) == []
    assert plan.totals.crossbars_used <= crossbars
    # resident when the weights fit (auto), and then every tile is written exactly once
    if mode == "auto" and crossbars_needed(program) <= crossbars:
        assert plan.mode == "resident"
        assert len(plan.program) == crossbars_needed(program)
