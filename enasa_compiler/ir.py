"""The crossbar program: the project's typed IR below the ONNX graph level.

Lowering turns the deduplicated group model into a :class:`CrossbarProgram`; the
mapping passes (OPS, CP-SAT) take it and produce a plan. Everything here is a
frozen dataclass so passes cannot mutate what another pass still reads.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

__all__ = [
    "CrossbarProgram",
    "DigitalOp",
    "MvmOp",
    "OpKind",
    "SignedScheme",
    "Tile",
    "WeightMatrix",
]


class OpKind(enum.StrEnum):
    """Where an operator runs: on crossbars (MVM) or on digital units."""

    MVM = "mvm"
    DIGITAL = "digital"


class SignedScheme(enum.StrEnum):
    """How signed weights are stored in cells that only hold non-negative conductances.

    ``DIFFERENTIAL``: a positive and a negative column per bit slice; the periphery
    subtracts the two currents. Doubles the columns.
    ``OFFSET``: weights stored biased by ``2**(w_bits-1)``; the periphery subtracts
    ``offset * sum(inputs)`` digitally (ISAAC's scheme). No extra cells.
    """

    DIFFERENTIAL = "differential"
    OFFSET = "offset"


@dataclass(frozen=True)
class Tile:
    """One crossbar's share of a weight matrix.

    Logical rows ``[row_start, row_stop)`` and logical output columns
    ``[col_start, col_stop)`` of the unrolled weight matrix. Every bit slice (and
    both columns of a differential pair) of a logical column stays in the same
    crossbar, so ``phys_cols = (col_stop - col_start) * columns_per_weight``.
    """

    id: str
    row_start: int
    row_stop: int
    col_start: int
    col_stop: int
    phys_rows: int
    phys_cols: int

    @property
    def cells(self) -> int:
        """Cells that hold weight bits in this tile."""
        return self.phys_rows * self.phys_cols


@dataclass(frozen=True)
class WeightMatrix:
    """An unrolled weight matrix and its tiles.

    Operators that share weights (same op type, same weight contents) point to the
    same ``WeightMatrix``; its tiles are programmed once and time-multiplexed.

    Attributes:
        id: stable id, ``w<k>`` in order of first use.
        sha256: hash of the weight contents (dtype, shape, bytes) and group index.
        rows: logical rows (``Cin/g * Kh * Kw`` for a conv, ``K`` for Gemm/MatMul).
        cols: logical columns (output channels of this group).
        columns_per_weight: physical columns one logical column needs
            (bit slices times 2 for differential).
        tiles: row-major list of tiles (row block outer, column block inner).

    """

    id: str
    sha256: str
    rows: int
    cols: int
    columns_per_weight: int
    tiles: tuple[Tile, ...]

    @property
    def cells(self) -> int:
        """Cells that hold weight bits across all tiles."""
        return sum(t.cells for t in self.tiles)


@dataclass(frozen=True)
class MvmOp:
    """A Conv/Gemm/MatMul lowered to matrix-vector products on crossbars.

    Attributes:
        id: the ONNX node name in the group model (unique).
        op_type: ONNX op type it came from.
        subnets: indices of the subnets that use this operator (compute-shared
            operators list several).
        inputs: activation value names read (weights excluded).
        outputs: value names produced.
        weights: the weight matrices, one per conv group (usually one).
        vectors_per_image: input vectors applied per image (``Hout*Wout`` for a conv).
        macs: multiply-accumulates per image.
        layer: a layer key shared by operators of the same layer in different
            subnets (used by OPS to batch them).
        copies: weight duplication: ``weights`` holds this many copies of the
            operator's matrices, copy after copy (``copies * groups`` entries, equal
            contents per copy); the input vectors are split evenly over the copies.

    """

    id: str
    op_type: str
    subnets: tuple[int, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    weights: tuple[WeightMatrix, ...]
    vectors_per_image: int
    macs: int
    layer: str = ""
    copies: int = 1

    kind: OpKind = field(default=OpKind.MVM, init=False)

    @property
    def tiles(self) -> tuple[Tile, ...]:
        """All tiles this operator needs at once (every copy's)."""
        return tuple(t for w in self.weights for t in w.tiles)

    @property
    def base_weights(self) -> tuple[WeightMatrix, ...]:
        """The matrices of one copy (one per conv group): what the operator computes.

        A record whose weights do not split into ``copies`` equal parts (a corrupted
        plan) is treated as one copy of all of them; the validator reports it.
        """
        if self.copies > 1 and len(self.weights) % self.copies == 0:
            return self.weights[: len(self.weights) // self.copies]
        return self.weights


@dataclass(frozen=True)
class DigitalOp:
    """An operator run by digital units next to the crossbars.

    Attributes:
        id: the ONNX node name in the group model.
        op_type: ONNX op type.
        subnets: indices of the subnets that use it.
        inputs: activation value names read (constants excluded).
        outputs: value names produced.
        elements: output elements per image.
        ops: digital operations per image (MACs for a depthwise conv run digitally,
            one per output element for element-wise ops, window size for pooling).
        layer: layer key, as for :class:`MvmOp`.
        macs: multiply-accumulates per image when the op is a Conv/Gemm/MatMul run
            digitally (a depthwise conv), else 0; so MAC totals cover every conv.

    """

    id: str
    op_type: str
    subnets: tuple[int, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    elements: int
    ops: int
    layer: str = ""
    macs: int = 0

    kind: OpKind = field(default=OpKind.DIGITAL, init=False)


Op = MvmOp | DigitalOp


@dataclass(frozen=True)
class CrossbarProgram:
    """The lowered group: operators in topological order and their dependencies.

    Attributes:
        ops: operators, topologically sorted.
        deps: for each operator id, the ids of the operators whose outputs it reads.
        subnet_outputs: for each subnet, the value names it outputs.
        input_name: the group's shared input value name.
        input_shape: its static shape (batch fixed).
        subnet_names: display names of the subnets.
        w_bits, cell_bits, a_bits: the precisions the tiling used.
        signed_scheme: how signed weights were laid out.
        batch: images per run (the fixed batch dimension of the input).

    """

    ops: tuple[Op, ...]
    deps: dict[str, tuple[str, ...]]
    subnet_outputs: tuple[tuple[str, ...], ...]
    input_name: str
    input_shape: tuple[int, ...]
    subnet_names: tuple[str, ...]
    w_bits: int
    cell_bits: int
    a_bits: int
    signed_scheme: SignedScheme
    batch: int = 1

    def op(self, op_id: str) -> Op:
        """Return the operator with this id."""
        for candidate in self.ops:
            if candidate.id == op_id:
                return candidate
        raise KeyError(op_id)

    def mvm_ops(self) -> Iterator[MvmOp]:
        """Iterate over the crossbar operators."""
        return (o for o in self.ops if isinstance(o, MvmOp))

    def weight_matrices(self) -> tuple[WeightMatrix, ...]:
        """Distinct weight matrices, in order of first use."""
        seen: dict[str, WeightMatrix] = {}
        for mvm in self.mvm_ops():
            for w in mvm.weights:
                seen.setdefault(w.id, w)
        return tuple(seen.values())
