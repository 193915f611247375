"""Random lowered programs for the mapping and validator tests."""

from __future__ import annotations

import random

from enasa_compiler.ir import CrossbarProgram, DigitalOp, MvmOp, Op, SignedScheme, WeightMatrix
from enasa_compiler.passes.lower import tile_matrix


def random_program(rng: random.Random) -> CrossbarProgram:
    """A random group: MVM operators on three shared matrices, digital ones between."""
    shapes = [(rng.randint(8, 300), rng.randint(4, 60)) for _ in range(3)]
    weights = [WeightMatrix(f"w{k}", f"{k:064x}", rows, cols, 4,
                            tile_matrix(f"w{k}", rows, cols, 128, 128, 4))
               for k, (rows, cols) in enumerate(shapes)]
    ops: list[Op] = []
    deps: dict[str, tuple[str, ...]] = {}
    for i in range(rng.randint(6, 10)):
        src = -1 if i == 0 else rng.randrange(i)
        inputs = ("x",) if src < 0 else (f"v{src}",)
        deps[f"op{i}"] = () if src < 0 else (f"op{src}",)
        if i % 2 == 0:
            weight = rng.choice(weights)
            ops.append(MvmOp(f"op{i}", "Conv", (0,), inputs, (f"v{i}",), (weight,), 16,
                             weight.rows * weight.cols))
        else:
            ops.append(DigitalOp(f"op{i}", "Relu", (0,), inputs, (f"v{i}",), 500, 500))
    consumed = {n for op in ops for n in op.inputs}
    outputs = tuple(v for op in ops for v in op.outputs if v not in consumed)
    return CrossbarProgram(ops=tuple(ops), deps=deps, subnet_outputs=(outputs,),
                           input_name="x", input_shape=(1, 3, 8, 8), subnet_names=("s0",),
                           w_bits=8, cell_bits=2, a_bits=8, signed_scheme=SignedScheme.OFFSET)
