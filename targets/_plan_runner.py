"""Walks a plan's schedule over simulated crossbars: the executor's engine.

Program events write tiles into crossbars; compute events run operators in schedule
order (program events count from their end, compute events from their start, ties by
operator index), an MVM operator reading each tile from the crossbar its placement
names. A crossbar that does not hold the tile a placement expects is an error, so a
plan whose placements or programming are wrong cannot pass unnoticed. A packed write
(with row and column offsets) puts its tile's cells at that corner, beside the tiles
already there, and evicts only those whose cells it overlaps; a plain write replaces
everything its crossbar held.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping

import numpy as np
import onnx_ir as ir

from enasa_compiler._text import plural
from enasa_compiler.errors import InputError
from enasa_compiler.ir import OpKind, Tile, WeightMatrix
from enasa_compiler.plan import ComputeEvent, Plan, PlanOperator, ProgramEvent
from enasa_compiler.targets import _node_math as nm
from enasa_compiler.targets._numerics import Numerics

logger = logging.getLogger(__name__)

__all__ = ["ExecutionError", "PlanRun", "PlanStructure", "batch_agnostic", "run_chunks"]

# Ops that tie the batch size when they act on axis 0 (their default axis given), take
# axes from an input (its index given; no axes means all, axis 0 included), or carry a
# constant output shape.
_AXIS_OPS = {"Concat": 1, "Split": 0, "Gather": 0, "Flatten": 1, "Softmax": -1,
             "LogSoftmax": -1}
_AXES_INPUT_OPS = {"Slice": 3, "Squeeze": 1, "Unsqueeze": 1, "ReduceMean": 1,
                   "ReduceSum": 1, "ReduceMax": 1}
_SHAPE_OPS = frozenset({"Expand", "Tile", "ConstantOfShape"})
# Ops whose input at this index, when given, is a whole output shape (batch included).
_SIZES_INPUT_OPS = {"Resize": 3}
# Kinds of crossbar writes, keeping their noise seeds apart.
_PROGRAM_WRITE = 2
_INITIAL_WRITE = 3


class ExecutionError(InputError):
    """The plan cannot be executed as written (a tile missing from its crossbar, ...)."""


class PlanStructure:
    """The chunk-independent view of a plan and its group model."""

    def __init__(self, plan: Plan, model: ir.Model, crossbar_shape: tuple[int, int],
                 *, pipelined: bool = False) -> None:
        self.plan = plan
        self.pipelined = pipelined and plan.pipeline is not None
        self.crossbar_shape = crossbar_shape
        self.nodes = {node.name or "": node for node in model.graph}
        self.operators = {op.id: op for op in plan.operators}
        self.matrices = {w.id: w for w in plan.weights}
        self.tile_owner = {t.id: (w, t) for w in plan.weights for t in w.tiles}
        self.weight_source: dict[str, tuple[str, int]] = {}
        for op in plan.operators:
            if op.id not in self.nodes:
                raise ExecutionError(f"operator '{op.id}' has no node of that name in the "
                                     "group model")
            groups = len(_copy_sets(op)[0]) if op.weights else 1
            for position, weight_id in enumerate(op.weights):
                self.weight_source.setdefault(weight_id, (op.id, position % groups))
        order = {op.id: i for i, op in enumerate(plan.operators)}
        unknown = [e.op for e in plan.compute if e.op not in order]
        if unknown:
            raise ExecutionError(f"compute event for unknown operator '{unknown[0]}'")
        self.writes: list[ProgramEvent] = list(plan.program)
        keyed: list[tuple[tuple[int, int, int], int, ComputeEvent | None]] = []
        # A tile is readable once its programming has ended: the validator's rule.
        keyed += [((e.end_ns, 0, i), i, None) for i, e in enumerate(plan.program)]
        if not self.pipelined:
            keyed += [((e.start_ns, 1, order[e.op]), -1, e) for e in plan.compute]
            self.events = [(i, e) for _, i, e in sorted(keyed, key=lambda k: k[0])]
        else:
            self.events = self._pipeline_events(sorted(keyed, key=lambda k: k[0]), order)
        self.batch_agnostic = batch_agnostic(model)
        self._unrolled: dict[str, np.ndarray] = {}

    def _pipeline_events(
        self, programming: list[tuple[tuple[int, int, int], int, ComputeEvent | None]],
        order: dict[str, int],
    ) -> list[tuple[int, ComputeEvent | None]]:
        """One image's events through the pipelined schedule, segment after segment.

        The one-time programming comes first; then each segment's writes (its tiles
        in place) and its slots in the order image 0 runs them: their offsets. A
        segment's prefetched writes run while the previous segment computes: they are
        applied when that segment's writes are (the first segment's before the pass),
        so that one that clobbered a tile the previous segment reads changes the
        outputs.
        """
        assert self.plan.pipeline is not None
        events: list[tuple[int, ComputeEvent | None]] = [(i, None) for _, i, _ in programming]
        segments = self.plan.pipeline.segments
        for position, segment in enumerate(segments):
            ahead = segments[position + 1] if position + 1 < len(segments) else None
            writes = [w for w in segment.writes if not w.prefetch or position == 0]
            writes += [w for w in (ahead.writes if ahead else ()) if w.prefetch]
            for write in sorted(writes, key=lambda w: (w.prefetch, w.end_ns)):
                self.writes.append(write)
                events.append((len(self.writes) - 1, None))
            for slot in sorted(segment.schedule.slots,
                               key=lambda s: (s.offset_ns, order.get(s.op, -1))):
                if slot.op not in order:
                    raise ExecutionError(f"pipeline slot for unknown operator '{slot.op}'")
                events.append((-1, ComputeEvent(
                    op=slot.op, start_ns=slot.offset_ns,
                    end_ns=slot.offset_ns + slot.duration_ns, placements=slot.placements,
                    unit=slot.units[0] if slot.units else None)))
        return events

    def unrolled(self, weight_id: str) -> np.ndarray:
        """Return the float64 matrix of a weight id, unrolled as lowering did."""
        if weight_id not in self._unrolled:
            source = self.weight_source.get(weight_id)
            if source is None:
                raise ExecutionError(f"weight '{weight_id}' is used by no MVM operator")
            op_id, group = source
            self._unrolled[weight_id] = nm.unrolled_weights(self.nodes[op_id])[group]
        return self._unrolled[weight_id]


class PlanRun:
    """One pass of the plan over one chunk of images."""

    def __init__(self, structure: PlanStructure, numerics: Numerics,
                 digital: nm.DigitalNodeRunner) -> None:
        self.structure = structure
        self.numerics = numerics
        self.digital = digital
        # crossbar -> tile id -> (its cell region, or None for the whole crossbar; cells)
        self.crossbars: dict[int, dict[str, tuple[tuple[int, int, int, int] | None,
                                                  np.ndarray]]] = {}

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Run every event in order on ``images``; return all values by name."""
        plan = self.structure.plan
        values: dict[str, np.ndarray] = {plan.input_name: images}
        # Tiles a previous plan left in crossbars (online mapping) are there from the start.
        for k, held in enumerate(getattr(plan, "initial", ())):
            self.write(held.tile, held.crossbar, (_INITIAL_WRITE, k))
        for program_index, event in self.structure.events:
            if event is None:
                self.program(program_index)
                continue
            op = self.structure.operators[event.op]
            node = self.structure.nodes[op.id]
            missing = [v.name for v in node.inputs if v is not None and v.name in op.inputs
                       and v.name not in values]
            if missing:
                raise ExecutionError(f"operator '{op.id}' runs before its input "
                                     f"'{missing[0]}' is produced")
            if op.kind is OpKind.MVM:
                results = [self.mvm(op, node, event, values)]
            else:
                results = self.digital.run(node, [
                    values[v.name] if v is not None and v.name in values else None
                    for v in node.inputs])
            for out_value, result in zip(node.outputs, results, strict=False):
                values[out_value.name or ""] = result
        return values

    def program(self, index: int) -> None:
        """Carry out programming event ``index``: the crossbar now holds its tile."""
        event = self.structure.writes[index]
        offset = ((event.row_offset or 0, event.col_offset or 0) if event.packed else None)
        self.write(event.tile, event.crossbar, (_PROGRAM_WRITE, index), offset)

    def write(self, tile_id: str, crossbar: int, key: tuple[int, int],
              offset: tuple[int, int] | None = None) -> None:
        """Put a tile into a crossbar (``key`` tells the write apart, seeding its noise).

        ``offset`` (tile packing) is the corner of its cells in the crossbar.
        """
        owner = self.structure.tile_owner.get(tile_id)
        if owner is None:
            raise ExecutionError(f"crossbar {crossbar} is given unknown tile '{tile_id}'")
        matrix, tile = owner
        if not (0 <= tile.row_start < tile.row_stop <= matrix.rows
                and 0 <= tile.col_start < tile.col_stop <= matrix.cols):
            raise ExecutionError(f"tile '{tile.id}' lies outside weight '{matrix.id}'")
        rows, cols = self.structure.crossbar_shape
        if tile.phys_rows > rows or tile.phys_cols > cols:
            raise ExecutionError(f"tile '{tile.id}' ({tile.phys_rows}x{tile.phys_cols} "
                                 f"cells) does not fit a {rows}x{cols} crossbar")
        if offset is None:
            self.crossbars[crossbar] = {tile.id: (None, self.numerics.program(
                matrix, tile, key, crossbar))}
            return
        region = (offset[0], offset[1], offset[0] + tile.phys_rows,
                  offset[1] + tile.phys_cols)
        if region[2] > rows or region[3] > cols:
            raise ExecutionError(f"tile '{tile.id}' at row {offset[0]}, column {offset[1]} "
                                 f"does not fit a {rows}x{cols} crossbar")
        cells = self.numerics.program(matrix, tile, key, crossbar, offset)
        held = self.crossbars.setdefault(crossbar, {})
        for other_id, (other, _) in list(held.items()):
            if other is None or (region[0] < other[2] and other[0] < region[2]
                                 and region[1] < other[3] and other[1] < region[3]):
                del held[other_id]  # its cells are overwritten
        held[tile.id] = (region, cells)

    def stored_tiles(self, op: PlanOperator, event: ComputeEvent, matrix: WeightMatrix
                     ) -> list[tuple[Tile, np.ndarray]]:
        """Return each tile of ``matrix`` with what its placed crossbar holds."""
        placed = {p.tile: p.crossbar for p in event.placements}
        stored = []
        for tile in matrix.tiles:
            if tile.id not in placed:
                raise ExecutionError(f"operator '{op.id}' has no placement for tile "
                                     f"'{tile.id}'")
            crossbar = placed[tile.id]
            held = self.crossbars.get(crossbar, {})
            if tile.id not in held:
                holder = (", ".join(f"tile '{t}'" for t in held) if held else "nothing")
                raise ExecutionError(f"operator '{op.id}' reads tile '{tile.id}' from "
                                     f"crossbar {crossbar}, which holds {holder}")
            stored.append((tile, held[tile.id][1]))
        return stored

    def mvm(self, op: PlanOperator, node: ir.Node, event: ComputeEvent,
            values: Mapping[str, np.ndarray]) -> np.ndarray:
        """Run a Conv/Gemm/MatMul through its tiles; bias and scaling added digitally."""
        copy_sets = [[self.structure.matrices[w] for w in ids] for ids in _copy_sets(op)]
        matrices = copy_sets[0]
        x_value = node.inputs[0]
        assert x_value is not None
        x = values[x_value.name or ""]
        name = x_value.name or ""
        bias_value = node.inputs[2] if len(node.inputs) > 2 else None
        bias = None
        if bias_value is not None:
            bias = nm.constant_array(bias_value)
            if bias is None:
                bias = values[bias_value.name or ""]

        def multiply(vectors: np.ndarray, matrix: WeightMatrix) -> np.ndarray:
            # Weight duplication: copy c of the matrix takes the c-th contiguous share
            # of the vectors, as the cost model splits them.
            group = matrices.index(matrix)
            share = max(1, math.ceil(len(vectors) / len(copy_sets)))
            parts = []
            for c, copy_matrices in enumerate(copy_sets):
                chunk = vectors[c * share:(c + 1) * share]
                if len(chunk):
                    copy = copy_matrices[group]
                    parts.append(self.numerics.multiply(name, copy, chunk,
                                                        self.stored_tiles(op, event, copy)))
            return np.concatenate(parts, axis=0)

        if node.op_type == "Conv":
            weight = nm.constant_array(node.inputs[1])
            assert weight is not None
            geometry = nm.conv_geometry(node, weight.shape, x.shape[2:])
            if geometry.groups != len(matrices):
                raise ExecutionError(
                    f"operator '{op.id}' has "
                    f"{plural(len(matrices), 'weight matrix', 'weight matrices')} for a conv "
                    f"of {plural(geometry.groups, 'group')}")
            cin = weight.shape[1]
            parts = []
            for g, matrix in enumerate(matrices):
                vectors, (out_h, out_w) = nm.im2col(
                    x[:, g * cin:(g + 1) * cin].astype(np.float64), geometry)
                parts.append(multiply(vectors, matrix))
            y = np.concatenate(parts, axis=1).reshape(x.shape[0], out_h, out_w, -1)
            y = y.transpose(0, 3, 1, 2)
            if bias is not None:
                y = y + bias.astype(np.float64)[None, :, None, None]
        elif node.op_type == "ConvTranspose":
            y = self.conv_transpose(op, node, x, multiply, matrices, bias)
        elif node.op_type == "Gemm":
            attrs = node.attributes
            a = x.T if attrs.get_int("transA", 0) else x
            y = attrs.get_float("alpha", 1.0) * multiply(a.astype(np.float64), matrices[0])
            if bias is not None:
                y = y + attrs.get_float("beta", 1.0) * bias.astype(np.float64)
        else:
            lead = x.shape[:-1]
            y = multiply(x.reshape(-1, x.shape[-1]).astype(np.float64), matrices[0])
            y = y.reshape(*lead, matrices[0].cols)
        return np.asarray(y, dtype=np.float64)


    @staticmethod
    def conv_transpose(op: PlanOperator, node: ir.Node, x: np.ndarray,
                       multiply: Callable[[np.ndarray, WeightMatrix], np.ndarray],
                       matrices: list[WeightMatrix], bias: np.ndarray | None) -> np.ndarray:
        """Run a ConvTranspose: each input pixel through the tiles, then col2im adds."""
        weight = nm.constant_array(node.inputs[1])
        assert weight is not None
        geometry, output_padding = nm.conv_transpose_geometry(node, weight.shape)
        if geometry.groups != len(matrices):
            raise ExecutionError(
                f"operator '{op.id}' has "
                f"{plural(len(matrices), 'weight matrix', 'weight matrices')} for a "
                f"transposed conv of {plural(geometry.groups, 'group')}")
        n, _, h, w = x.shape
        cin = weight.shape[0] // geometry.groups
        parts = []
        for g, matrix in enumerate(matrices):
            vectors = x[:, g * cin:(g + 1) * cin].astype(np.float64).transpose(0, 2, 3, 1)
            products = multiply(vectors.reshape(n * h * w, cin), matrix)
            parts.append(nm.col2im(products, n, (h, w), weight.shape[1], geometry,
                                   output_padding))
        y = np.concatenate(parts, axis=1)
        if bias is not None:
            y = y + bias.astype(np.float64)[None, :, None, None]
        return y


def batch_agnostic(model: ir.Model) -> bool:
    """Tell whether the group model's nodes run unchanged on any batch size.

    Conservative: a constant shape whose first entry is fixed, or any op acting on
    axis 0, makes the executor run images in chunks of the plan's batch instead.
    """
    for node in model.graph:
        op_type = node.op_type
        if op_type in _SHAPE_OPS:
            return False
        if op_type in _SIZES_INPUT_OPS and _constant_input(node, _SIZES_INPUT_OPS[op_type]
                                                           ) is not None:
            return False
        if op_type == "Reshape":
            shape = _constant_input(node, 1)
            if shape is not None and shape.size and int(shape.reshape(-1)[0]) not in (0, -1):
                return False
        elif op_type in _AXES_INPUT_OPS:
            axes = _constant_input(node, _AXES_INPUT_OPS[op_type])
            if axes is None:
                axes = np.asarray(node.attributes.get_ints("axes", ()) or ())
            if axes.size == 0 or 0 in axes.reshape(-1).tolist():
                return False
        elif op_type in _AXIS_OPS and node.attributes.get_int("axis", _AXIS_OPS[op_type]) == 0:
            return False
    return True


def _constant_input(node: ir.Node, index: int) -> np.ndarray | None:
    return nm.constant_array(node.inputs[index]) if len(node.inputs) > index else None


def chunks(images: np.ndarray, size: int) -> list[tuple[np.ndarray, int]]:
    """Split images into chunks of ``size``, zero-padding the last; (chunk, real count)."""
    out = []
    for start in range(0, images.shape[0], size):
        chunk = images[start:start + size]
        real = chunk.shape[0]
        if real < size:
            pad = np.zeros((size - real, *images.shape[1:]), dtype=images.dtype)
            chunk = np.concatenate([chunk, pad])
        out.append((chunk, real))
    return out


def run_chunks(structure: PlanStructure, numerics: Numerics, digital: nm.DigitalNodeRunner,
               images: np.ndarray) -> list[dict[str, np.ndarray]]:
    """Run the plan on all images, chunked when the model fixes its batch size.

    Returns:
        Per subnet, its outputs by name over all images.

    """
    plan = structure.plan
    size = images.shape[0] if structure.batch_agnostic else plan.batch
    if structure.pipelined and structure.batch_agnostic:
        size = 1  # the pipeline runs one image after another through its segments
    names = [name for s in plan.subnets for name in s.outputs]
    collected: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for chunk, real in chunks(images, size):
        # Activations stay float64 between operators: the executor is the reference.
        # Integer inputs (token ids, indices) keep their type.
        fed = chunk.astype(np.float64) if chunk.dtype.kind == "f" else chunk
        values = PlanRun(structure, numerics, digital)(fed)
        for name in names:
            if name not in values:
                raise ExecutionError(f"subnet output '{name}' is produced by no operator")
            collected[name].append(values[name][:real])
    return [{name: np.concatenate(collected[name]) for name in s.outputs}
            for s in plan.subnets]


def _copy_sets(op: PlanOperator) -> list[tuple[str, ...]]:
    """Split an operator's weight ids into its copies (one set when not duplicated)."""
    copies = op.copies if op.copies > 1 and len(op.weights) % op.copies == 0 else 1
    size = len(op.weights) // copies
    return [op.weights[c * size:(c + 1) * size] for c in range(copies)]
