"""The crossbar program and its schedule: the project's typed IR below the ONNX graph.

Lowering turns the deduplicated group model into a :class:`CrossbarProgram`; the
mapping passes (OPS, CP-SAT) take it and produce a schedule of
:class:`ProgramEvent` and :class:`ComputeEvent` records, which the plan format
(:mod:`enasa_compiler.plan`) stores. These types sit at the bottom of the layers so
that mapping never depends on the file format. Everything here is a
frozen dataclass so passes cannot mutate what another pass still reads.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

__all__ = [
    "ComputeEvent",
    "CostTable",
    "CrossbarContents",
    "CrossbarProgram",
    "DigitalOp",
    "MvmOp",
    "MappingMode",
    "OpKind",
    "PeriodicSchedule",
    "PeriodicSlot",
    "PipelineSegment",
    "Placement",
    "ProgramEvent",
    "Schedule",
    "SignedScheme",
    "Tile",
    "TileKey",
    "WeightMatrix",
]


class OpKind(enum.StrEnum):
    """Where an operator runs: on crossbars (MVM) or on digital units."""

    MVM = "mvm"
    DIGITAL = "digital"


class MappingMode(enum.StrEnum):
    """How weights get into crossbars.

    ``RESIDENT``: every tile is programmed once, before anything runs.
    ``DYNAMIC``: a tile is programmed into a free crossbar before the operator that
    needs it, and its crossbar may be reused later (the chip is too small).
    ``AUTO`` is a request only: resident when the weights fit, else dynamic.
    """

    AUTO = "auto"
    RESIDENT = "resident"
    DYNAMIC = "dynamic"


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


# The schedule: what mapping produces and the plan format stores.


@dataclass(frozen=True)
class Placement:
    """Which crossbar holds a tile during a compute event."""

    tile: str
    crossbar: int


@dataclass(frozen=True)
class ProgramEvent:
    """Writing one tile into one crossbar during ``[start_ns, end_ns)``.

    ``row_offset`` and ``col_offset`` (tile packing, both or neither) put the tile's
    cells at that corner of the crossbar, beside other tiles; without them the tile
    takes the crossbar from its corner and replaces whatever it held.

    ``prefetch`` (segmented pipelines only) marks a write of a segment's tile made while
    the previous segment computes, into a crossbar that segment does not use; its times
    are then relative to the previous segment's start (:class:`PipelineSegment`).
    """

    tile: str
    crossbar: int
    start_ns: int
    end_ns: int
    energy_pj: float
    row_offset: int | None = None
    col_offset: int | None = None
    prefetch: bool = False

    @property
    def packed(self) -> bool:
        """Whether the write places the tile at an offset beside others (packing)."""
        return self.row_offset is not None or self.col_offset is not None


@dataclass(frozen=True)
class ComputeEvent:
    """One operator running during ``[start_ns, end_ns)``.

    MVM operators list one placement per tile of their weights; digital operators
    name the digital ``unit`` they run on.
    """

    op: str
    start_ns: int
    end_ns: int
    placements: tuple[Placement, ...] = ()
    unit: int | None = None


@dataclass(frozen=True)
class Schedule:
    """What a mapping pass produces: programming and compute events, and the mode.

    ``initial`` lists the tiles already in place when the schedule starts (online
    mapping); they are not programmed again.
    """

    mode: MappingMode
    program: tuple[ProgramEvent, ...]
    compute: tuple[ComputeEvent, ...]
    initial: tuple[Placement, ...] = ()

    def end_ns(self) -> int:
        """When the last event ends (0 for an empty schedule)."""
        ends = [e.end_ns for e in self.compute] + [e.end_ns for e in self.program]
        return max(ends, default=0)

    def makespan_ns(self) -> int:
        """Time from the first event's start to the last event's end."""
        starts = [e.start_ns for e in self.compute] + [e.start_ns for e in self.program]
        return self.end_ns() - min(starts) if starts else 0


@dataclass(frozen=True)
class PeriodicSlot:
    """One operator of a periodic (pipelined) schedule.

    Image ``i`` of the operator runs during ``[offset_ns + i * ii_ns, offset_ns +
    duration_ns + i * ii_ns)``. An MVM operator occupies the crossbars of its
    ``placements`` (every copy's tiles) for that time; a digital operator occupies the
    digital ``units`` it is spread over (its lanes).
    """

    op: str
    offset_ns: int
    duration_ns: int
    placements: tuple[Placement, ...] = ()
    units: tuple[int, ...] = ()


@dataclass(frozen=True)
class PeriodicSchedule:
    """One image's flow through a set of operators, repeated every ``ii_ns``.

    A pipelined run is made of segments (:class:`PipelineSegment`), each a periodic
    schedule; times are relative to the segment's start. Operators start a new image
    every initiation interval ``ii_ns``; ``slots`` give each operator's offset within
    image 0's flow and its per-image duration.

    Attributes:
        ii_ns: initiation interval: time between two images entering the segment.
        slots: one per operator of the segment, in the program's order.

    """

    ii_ns: int
    slots: tuple[PeriodicSlot, ...]

    def first_start_ns(self) -> int:
        """When image 0's first operator starts (0 for no slots)."""
        return min((s.offset_ns for s in self.slots), default=0)

    def latency_ns(self) -> int:
        """One image's time through the segment: first start to last finish."""
        if not self.slots:
            return 0
        return self.finish_ns(1) - self.first_start_ns()

    def finish_ns(self, images: int) -> int:
        """When the last of ``images`` images finishes its last operator."""
        if not self.slots or images < 1:
            return 0
        last = max(s.offset_ns + s.duration_ns for s in self.slots)
        return last + (images - 1) * self.ii_ns


@dataclass(frozen=True)
class PipelineSegment:
    """Operators that share the crossbars for a while, and the writes that set them up.

    ``writes`` program the segment's tiles (times relative to the segment's start);
    each image then runs through ``schedule``. A resident plan has one segment and no
    writes (its tiles were programmed once, before the pipeline starts); a dynamic
    plan runs its segments one after another for every micro-batch of images.

    Writes marked ``prefetch`` overlap the previous segment (the last one of the
    previous pass for the first segment): they go into crossbars the previous segment
    does not use and are timed from the previous segment's start. Segment ``k`` starts
    when segment ``k - 1``'s last image finishes, or later if its prefetched writes
    would not be done by its first slot: it waits :meth:`wait_ns`. The other writes
    ("in place") start with the segment and the slots after them.
    """

    writes: tuple[ProgramEvent, ...]
    schedule: PeriodicSchedule

    def writes_end_ns(self) -> int:
        """When the segment's last in-place write ends (0 with none)."""
        return max((w.end_ns for w in self.writes if not w.prefetch), default=0)

    def prefetch_end_ns(self) -> int:
        """When the last prefetched write ends, from the previous segment's start."""
        return max((w.end_ns for w in self.writes if w.prefetch), default=0)

    def wait_ns(self, previous_ns: int) -> int:
        """How long the segment's start waits for its prefetched writes.

        ``previous_ns``: the previous segment's length from its start to its last image's
        finish (its ``schedule.finish_ns``), 0 at the run's start (nothing to hide behind).
        """
        if not any(w.prefetch for w in self.writes):
            return 0
        return max(0, self.prefetch_end_ns() - previous_ns - self.schedule.first_start_ns())

    def duration_ns(self, images: int, previous_ns: int = 0) -> int:
        """Return the segment's time for ``images`` images, writes and wait included."""
        return self.wait_ns(previous_ns) + max(self.writes_end_ns(),
                                               self.schedule.finish_ns(images))


TileKey = tuple[str, int, int, int, int, int, int, int]
"""What a tile's cells hold, whatever plan or program it came from: weight hash,
columns per weight, logical rows and columns, physical rows and columns."""


@dataclass(frozen=True)
class CrossbarContents:
    """What each crossbar of a chip holds at some moment (online mapping's start state).

    Attributes:
        target_sha256: the target the contents were written for; cell contents depend
            on its geometry and precisions, so they carry over only to the same target.
        target_name: that target's name, for error messages.
        tiles: crossbar index -> the key of the tile it holds.

    """

    target_sha256: str
    target_name: str
    tiles: dict[int, TileKey]


# Prices: what the pricing step (passes/price.py) makes of a program on a target, and
# what mapping, bounds, duplication, plan assembly, simulate and the validator read.


def ceil_ns(value_ns: float) -> int:
    """Round a duration up to whole nanoseconds (at least 1), as every event is timed."""
    return max(1, math.ceil(value_ns - 1e-9))


@dataclass(frozen=True)
class EventCost:
    """Latency and energy of one scheduled event, with the energy broken down.

    Attributes:
        latency_ns: interval length the schedule must give the event (rounded up).
        energy_pj: total dynamic energy.
        breakdown_pj: energy per component: ``cells``, ``dac``, ``sample_hold``,
            ``adc``, ``shift_add``, ``accumulate``, ``input_register``,
            ``output_register``, ``buffer``, ``tile_output_register``, ``bus``,
            ``router`` for crossbar work; ``digital``, ``buffer`` for digital work;
            ``write``, ``verify``, ``bus``, ``router`` for programming.
        cell_writes: cells programmed (programming events only).
        read_ns: the part of the latency the crossbar read pulses take (MVM only;
            the rest is sensing), unrounded.
        vectors: input vectors over the batch, all copies together (MVM only).
        reads_per_vector: crossbar reads one input vector takes (MVM only).
        read_cycle_ns: one read of the operator's slowest tile, sensing included
            (MVM only); with ``vectors`` and ``reads_per_vector`` it gives the latency
            for any number of weight copies (:meth:`latency_with_copies`).
        fixed_ns: the part of an MVM operator's latency that weight copies do not
            divide (NeuroSim-style targets: buffers, interconnect, tile accumulation).

    """

    latency_ns: int
    energy_pj: float
    breakdown_pj: Mapping[str, float]
    cell_writes: int = 0
    read_ns: float = 0.0
    vectors: int = 0
    reads_per_vector: int = 0
    read_cycle_ns: float = 0.0
    fixed_ns: float = 0.0

    def mvm_time_ns(self, copies: int) -> float:
        """Unrounded time of this MVM operator if its weights had ``copies`` copies.

        Copies split the input vectors evenly; energy does not change with copies.
        """
        reads_per_copy = math.ceil(self.vectors / copies) * self.reads_per_vector
        return reads_per_copy * self.read_cycle_ns + self.fixed_ns

    def latency_with_copies(self, copies: int) -> int:
        """Latency (rounded as scheduled) of this MVM operator with ``copies`` copies."""
        return ceil_ns(self.mvm_time_ns(copies))


@dataclass(frozen=True)
class CostTable:
    """A program priced on a target: every operator over the batch, every tile's write.

    Built once per program by :func:`enasa_compiler.passes.price.price`; schedulers
    and bounds take it instead of calling the cost model, so a test can feed them a
    made-up table.

    Attributes:
        batch: images the operator costs cover.
        operators: operator id -> its cost over the batch.
        writes: tile id -> the cost of programming that tile into a crossbar.

    """

    batch: int
    operators: Mapping[str, EventCost]
    writes: Mapping[str, EventCost]

    def latency_ns(self, op_id: str) -> int:
        """Return the interval an operator needs."""
        return self.operators[op_id].latency_ns

    def write_ns(self, tile_id: str) -> int:
        """Return the interval programming a tile needs."""
        return self.writes[tile_id].latency_ns
