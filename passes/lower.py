"""Lowering: the deduplicated group model becomes a crossbar program.

Every Conv/ConvTranspose/Gemm/MatMul with a constant weight becomes an
:class:`~enasa_compiler.ir.MvmOp` whose unrolled weight matrix is tiled onto
``rows x cols`` crossbars (NeuroSim's conventional mapping); every other supported op
(``passes/operators.py``) becomes a :class:`~enasa_compiler.ir.DigitalOp`.

Choices this module makes, and why:

* Unrolled matrix: a conv weight ``(Cout, Cin/g, Kh, Kw)`` gives ``rows = Cin/g*Kh*Kw``
  and ``cols = Cout/g`` per group; a ConvTranspose weight ``(Cin, Cout/g, Kh, Kw)``
  gives ``rows = Cin/g`` and ``cols = Cout/g*Kh*Kw`` (one vector per *input* pixel,
  its products scattered onto the output and overlaps added digitally); Gemm/MatMul
  give ``rows = K``, ``cols = N``.
* Bit slicing: a ``w_bits`` weight spans ``ceil(w_bits/cell_bits)`` adjacent columns,
  doubled for the differential signed scheme. A logical column's slices never split
  across crossbars, so a crossbar holds ``cols // columns_per_weight`` logical
  columns; when that divides ``cols`` the crossbar count equals NeuroSim's
  ``ceil(rows/R) * ceil(cols_physical/C)``.
* Depthwise convs (one input channel per group) run on the digital units: a
  diagonal packing would leave all but one cell of each ``Kh*Kw`` row block empty,
  and this keeps spatial utilization honest. Grouped convs with more than one
  channel per group map each group as its own matrix on its own crossbars.
* A MatMul or Gemm whose second operand is an activation has no weights to store,
  so it runs digitally.
* Layer keys (``layer`` of every op, OPS's "same supernet layer" criterion) come from
  node metadata, never from node names, which differ between exporters and mean
  nothing in a user's model. A node tagged ``enasa.layer`` (as
  :mod:`enasa_compiler.models.export` writes) with a decimal index ``N`` gets
  ``layer{N}``; ``stem`` and ``head`` (and an empty tag) get no key, because no other
  choice competes with those parts of a supernet; any other tag is the key itself.
  An untagged node gets ``depth{k}``: ``k`` is the largest number of weighted
  operators (Conv/Gemm/MatMul with a constant weight, depthwise included) on a path
  from the graph input to the node, the node included. So the k-th conv of a chain
  CNN has the same key in every subnet of the same structure, and the activations
  and BN that follow it share its key. Depth in the group graph equals depth in the
  subnet: an operator deduplicated across subnets has the same ancestors in each, so
  its key is the one every one of them would give it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math

import onnx_ir as ir

from enasa_compiler.errors import InputError, UnsupportedModelError
from enasa_compiler.ir import (
    CrossbarProgram,
    DigitalOp,
    MvmOp,
    Op,
    SignedScheme,
    Tile,
    WeightMatrix,
)
from enasa_compiler.passes import _common
from enasa_compiler.passes.operators import (
    NORMALIZATION_OPS_PER_ELEMENT,
    OPERATORS,
    Pricing,
    is_supported,
)
from enasa_compiler.targets.target import Target

logger = logging.getLogger(__name__)

__all__ = ["DIGITAL_OP_TYPES", "LAYER_METADATA_KEY", "layer_keys", "lower", "tile_matrix"]

# Ops the digital units implement and how each is priced: passes/operators.py.
DIGITAL_OP_TYPES = frozenset(OPERATORS)
_REDUCTIONS = frozenset(op for op, row in OPERATORS.items() if row.pricing is Pricing.INPUT)
# Interpolation taps per resized axis, by Resize/Upsample mode.
_TAPS_PER_AXIS = {"nearest": 1, "linear": 2, "bilinear": 2, "cubic": 4}
LAYER_METADATA_KEY = "enasa.layer"
"""Node metadata naming the supernet layer of a node (see the module docstring)."""
_LAYERLESS_TAGS = frozenset({"", "stem", "head"})


def tile_matrix(
    weight_id: str, rows: int, cols: int, crossbar_rows: int, crossbar_cols: int,
    columns_per_weight: int,
) -> tuple[Tile, ...]:
    """Split a ``rows x cols`` logical weight matrix into crossbar tiles.

    Row blocks of ``crossbar_rows``; column blocks of ``crossbar_cols //
    columns_per_weight`` logical columns. Tiles are listed row block outer.
    """
    cols_per_crossbar = crossbar_cols // columns_per_weight
    if cols_per_crossbar < 1:
        raise InputError(
            f"a weight needs {columns_per_weight} columns but a crossbar has {crossbar_cols}"
        )
    tiles: list[Tile] = []
    for row_start in range(0, rows, crossbar_rows):
        row_stop = min(rows, row_start + crossbar_rows)
        for col_start in range(0, cols, cols_per_crossbar):
            col_stop = min(cols, col_start + cols_per_crossbar)
            tiles.append(Tile(
                id=f"{weight_id}.t{len(tiles)}",
                row_start=row_start, row_stop=row_stop,
                col_start=col_start, col_stop=col_stop,
                phys_rows=row_stop - row_start,
                phys_cols=(col_stop - col_start) * columns_per_weight,
            ))
    return tuple(tiles)


def _static_shape(value: ir.Value, node: ir.Node) -> tuple[int, ...]:
    dims = _common.static_dims(value)
    if dims is None:
        raise InputError(
            f"node '{node.name}' ({node.op_type}): value '{value.name}' has no static shape "
            f"({value.shape}); dynamic shapes cannot be mapped"
        )
    return dims


def _elements(value: ir.Value, node: ir.Node, batch: int) -> int:
    return math.prod(_static_shape(value, node)) // batch


def _is_constant(value: ir.Value | None) -> bool:
    return _common.constant_tensor(value) is not None


def _is_weighted(node: ir.Node) -> bool:
    return _common.weight_input(node) is not None


def _weighted_depths(graph: ir.Graph) -> dict[ir.Node, int]:
    """Return, per node, the most weighted operators on a path from the input to it."""
    depths: dict[ir.Node, int] = {}
    for node in graph:
        producers = (value.producer() for value in node.inputs if value is not None)
        before = max((depths.get(p, 0) for p in producers if p is not None), default=0)
        depths[node] = before + int(_is_weighted(node))
    return depths


def _tag_key(tag: str) -> str:
    if tag in _LAYERLESS_TAGS:
        return ""
    return f"layer{int(tag)}" if tag.isascii() and tag.isdigit() else tag


def layer_keys(graph: ir.Graph) -> dict[ir.Node, str]:
    """Return the layer key of every node of a topologically sorted graph.

    From the node's ``enasa.layer`` metadata when it has one, else from its depth in
    weighted operators; the module docstring gives the rule.
    """
    depths = _weighted_depths(graph)
    keys: dict[ir.Node, str] = {}
    for node in graph:
        tag = node.metadata_props.get(LAYER_METADATA_KEY)
        keys[node] = f"depth{depths[node]}" if tag is None else _tag_key(tag)
    return keys


class _Lowerer:
    """Walks the group graph once, building ops and shared weight matrices."""

    def __init__(self, target: Target, batch: int, layers: dict[ir.Node, str],
                 subnet_names: tuple[str, ...] = ()) -> None:
        self.target = target
        self.batch = batch
        self.layers = layers
        self.subnet_names = subnet_names
        self.weights: dict[str, WeightMatrix] = {}

    def where(self, node: ir.Node) -> str:
        """Return ``"<subnet>: "`` for the first subnet computing ``node``, for messages.

        The group model's node names carry a subnet prefix (``s0/``) but not the file;
        the subnet's name (its file's stem) says which input to look at.
        """
        subnets = _common.get_subnets(node)
        if subnets and subnets[0] < len(self.subnet_names):
            return f"{self.subnet_names[subnets[0]]}: "
        return ""

    def weight_matrix(
        self, digest: str, rows: int, cols: int, layout: str
    ) -> WeightMatrix:
        """Return the (shared) matrix for these weight contents, tiling it on first use.

        ``layout`` says how the tensor unrolls (``conv``, ``gemm``, ``gemm-t``): equal
        numbers read the other way round are a different crossbar matrix.
        """
        key = f"{digest}/{layout}"
        existing = self.weights.get(key)
        if existing is not None:
            return existing
        weight_id = f"w{len(self.weights)}"
        xbar = self.target.crossbar
        matrix = WeightMatrix(
            id=weight_id, rows=rows, cols=cols,
            # The same numbers unrolled another way are another crossbar matrix.
            sha256=digest if layout in ("conv", "gemm") else hashlib.sha256(
                f"{digest}/{layout}".encode()).hexdigest(),
            columns_per_weight=self.target.columns_per_weight,
            tiles=tile_matrix(weight_id, rows, cols, xbar.rows, xbar.cols,
                              self.target.columns_per_weight),
        )
        self.weights[key] = matrix
        return matrix

    def lower_node(self, node: ir.Node) -> Op:
        if not is_supported(node.domain, node.op_type):
            raise UnsupportedModelError(
                f"{self.where(node)}unsupported operator "
                f"{node.domain + '::' if node.domain else ''}{node.op_type} "
                f"(node '{node.name}')"
            )
        if node.op_type == "Conv":
            return self.lower_conv(node)
        if node.op_type == "ConvTranspose":
            return self.lower_conv_transpose(node)
        if node.op_type in ("Gemm", "MatMul") and _is_constant(_weight_input(node)):
            return self.lower_matmul(node)
        return self.lower_digital(node)

    def lower_conv(self, node: ir.Node) -> Op:
        weight = node.inputs[1]
        if weight is None or not _is_constant(weight):
            raise UnsupportedModelError(
                f"Conv node '{node.name}' has a weight that is not constant"
            )
        w_shape = _static_shape(weight, node)
        if len(w_shape) != 4:
            raise UnsupportedModelError(
                f"Conv node '{node.name}' is {len(w_shape) - 2}-D; only 2-D convs are mapped"
            )
        cout, cin_per_group, kh, kw = w_shape
        groups = node.attributes.get_int("group", 1)
        out_shape = _static_shape(node.outputs[0], node)
        vectors = math.prod(out_shape[2:])
        macs = cout * cin_per_group * kh * kw * vectors
        if cin_per_group == 1 and groups > 1:
            return self.lower_digital(node, ops_per_image=macs)
        digest = _common.weight_digest(weight)
        assert digest is not None
        matrices = tuple(
            self.weight_matrix(_group_digest(digest, g, groups), cin_per_group * kh * kw,
                               cout // groups, "conv")
            for g in range(groups)
        )
        return MvmOp(
            id=node.name or "", op_type=node.op_type, subnets=_common.get_subnets(node),
            inputs=_activation_inputs(node), outputs=tuple(v.name or "" for v in node.outputs),
            weights=matrices, vectors_per_image=vectors, macs=macs, layer=self.layers[node],
        )

    def lower_conv_transpose(self, node: ir.Node) -> Op:
        """Map a ConvTranspose: one MVM per input pixel, its products scattered (col2im).

        Its weight ``(Cin, Cout/g, Kh, Kw)`` unrolls per group into a
        ``Cin/g x (Cout/g*Kh*Kw)`` matrix: each input pixel's channel vector is read
        once and yields every output it contributes to; the overlapping contributions
        are added digitally, like a conv's row-block partial sums.
        """
        weight = node.inputs[1]
        if weight is None or not _is_constant(weight):
            raise UnsupportedModelError(
                f"ConvTranspose node '{node.name}' has a weight that is not constant")
        w_shape = _static_shape(weight, node)
        if len(w_shape) != 4:
            raise UnsupportedModelError(
                f"ConvTranspose node '{node.name}' is {len(w_shape) - 2}-D; only 2-D "
                "transposed convs are mapped")
        attrs = node.attributes
        if (attrs.get_string("auto_pad", "NOTSET") or "NOTSET") != "NOTSET" or (
                "output_shape" in attrs):
            raise UnsupportedModelError(
                f"ConvTranspose node '{node.name}' uses auto_pad or output_shape; export "
                "it with explicit pads")
        cin, cout_per_group, kh, kw = w_shape
        groups = attrs.get_int("group", 1)
        cin_per_group = cin // groups
        in_shape = _static_shape(node.inputs[0], node)  # type: ignore[arg-type]
        vectors = math.prod(in_shape[2:])
        macs = cin * cout_per_group * kh * kw * vectors
        if cin_per_group == 1 and groups > 1:
            return self.lower_digital(node, ops_per_image=macs)
        digest = _common.weight_digest(weight)
        assert digest is not None
        matrices = tuple(
            self.weight_matrix(_group_digest(digest, g, groups), cin_per_group,
                               cout_per_group * kh * kw, "conv-t")
            for g in range(groups))
        return MvmOp(
            id=node.name or "", op_type=node.op_type, subnets=_common.get_subnets(node),
            inputs=_activation_inputs(node), outputs=tuple(v.name or "" for v in node.outputs),
            weights=matrices, vectors_per_image=vectors, macs=macs, layer=self.layers[node],
        )

    def lower_matmul(self, node: ir.Node) -> Op:
        weight = _weight_input(node)
        assert weight is not None
        w_shape = _static_shape(weight, node)
        if len(w_shape) != 2:
            raise UnsupportedModelError(
                f"{node.op_type} node '{node.name}' has a {len(w_shape)}-D weight; "
                "only 2-D weights are mapped"
            )
        trans_b = node.op_type == "Gemm" and node.attributes.get_int("transB", 0) == 1
        rows, cols = (w_shape[1], w_shape[0]) if trans_b else w_shape
        out_shape = _static_shape(node.outputs[0], node)
        vectors = math.prod(out_shape[:-1]) // self.batch
        digest = _common.weight_digest(weight)
        assert digest is not None
        matrix = self.weight_matrix(digest, rows, cols, "gemm-t" if trans_b else "gemm")
        return MvmOp(
            id=node.name or "", op_type=node.op_type, subnets=_common.get_subnets(node),
            inputs=_activation_inputs(node), outputs=tuple(v.name or "" for v in node.outputs),
            weights=(matrix,), vectors_per_image=max(1, vectors), macs=rows * cols * vectors,
            layer=self.layers[node],
        )

    def lower_digital(self, node: ir.Node, ops_per_image: int | None = None) -> DigitalOp:
        elements = sum(_elements(v, node, self.batch) for v in node.outputs)
        if ops_per_image is None:
            if node.op_type in _REDUCTIONS:
                ops_per_image = sum(_elements(v, node, self.batch) for v in node.inputs
                                    if v is not None and not _is_constant(v))
            elif node.op_type in ("MatMul", "Gemm"):
                a_shape = _static_shape(node.inputs[0], node)  # type: ignore[arg-type]
                ops_per_image = elements * a_shape[-1]
            elif OPERATORS[node.op_type].pricing is Pricing.NORMALIZATION:
                ops_per_image = elements * NORMALIZATION_OPS_PER_ELEMENT
            elif OPERATORS[node.op_type].pricing is Pricing.RESAMPLING:
                ops_per_image = elements * _interpolation_taps(node)
            else:
                ops_per_image = elements
        return DigitalOp(
            id=node.name or "", op_type=node.op_type, subnets=_common.get_subnets(node),
            inputs=_activation_inputs(node), outputs=tuple(v.name or "" for v in node.outputs),
            elements=elements, ops=max(1, ops_per_image), layer=self.layers[node],
            macs=ops_per_image if node.op_type in _common.MAC_OP_TYPES else 0,
        )


def _interpolation_taps(node: ir.Node) -> int:
    """Return the input elements a Resize/Upsample reads per output element."""
    mode = (node.attributes.get_string("mode", "nearest") or "nearest").lower()
    if mode not in _TAPS_PER_AXIS:
        raise UnsupportedModelError(
            f"{node.op_type} node '{node.name}' has mode '{mode}'; nearest, linear and "
            "cubic are mapped")
    in_shape = _static_shape(node.inputs[0], node)  # type: ignore[arg-type]
    out_shape = _static_shape(node.outputs[0], node)
    resized = sum(1 for a, b in zip(in_shape, out_shape, strict=True) if a != b)
    return int(_TAPS_PER_AXIS[mode] ** resized)


def _weight_input(node: ir.Node) -> ir.Value | None:
    return node.inputs[1] if len(node.inputs) > 1 else None


def _group_digest(digest: str, group_index: int, groups: int) -> str:
    if groups == 1:
        return digest
    return hashlib.sha256(f"{digest}/{group_index}/{groups}".encode()).hexdigest()


def _activation_inputs(node: ir.Node) -> tuple[str, ...]:
    return tuple(v.name for v in node.inputs if v is not None and not _is_constant(v)
                 and v.name is not None)


def lower(model: ir.Model, target: Target) -> CrossbarProgram:
    """Lower a (merged, deduplicated) group model onto the target's crossbars.

    Args:
        model: a group model from :func:`~enasa_compiler.passes.merge_group` with static
            shapes (batch fixed, shapes inferred).
        target: the crossbar geometry and precisions to tile for.

    Raises:
        UnsupportedModelError: an operator the digital units do not implement.
        InputError: a value without a static shape.

    """
    graph = model.graph
    if len(graph.inputs) != 1:
        raise InputError(f"a group model has one input, this one has {len(graph.inputs)}")
    input_value = graph.inputs[0]
    if input_value.shape is None or not all(isinstance(d, int) for d in input_value.shape):
        raise InputError(f"the group input has no static shape ({input_value.shape})")
    input_shape = tuple(int(d) for d in input_value.shape)  # type: ignore[arg-type]
    batch = input_shape[0]
    props = model.metadata_props
    subnet_outputs = _subnet_outputs(props, graph)
    names = _json_list(props.get(_common.SUBNET_NAMES_KEY)) or [
        f"subnet{i}" for i in range(len(subnet_outputs))]
    lowerer = _Lowerer(target, batch, layer_keys(graph), tuple(str(n) for n in names))
    ops: list[Op] = []
    producer: dict[str, str] = {}
    deps: dict[str, tuple[str, ...]] = {}
    for node in graph:
        if not node.name:
            raise InputError(f"a {node.op_type} node has no name; run the merge pass first")
        if all(_is_constant(v) for v in node.inputs if v is not None) and node.inputs:
            raise InputError(
                f"node '{node.name}' has only constant inputs; canonicalize first")
        op = lowerer.lower_node(node)
        deps[op.id] = tuple(dict.fromkeys(producer[name] for name in op.inputs
                                          if name in producer))
        for name in op.outputs:
            producer[name] = op.id
        ops.append(op)
    return CrossbarProgram(
        ops=tuple(ops), deps=deps, subnet_outputs=subnet_outputs,
        input_name=input_value.name or "input", input_shape=input_shape,
        subnet_names=tuple(str(n) for n in names), w_bits=target.precision.w_bits,
        cell_bits=target.crossbar.cell_bits, a_bits=target.precision.a_bits,
        signed_scheme=SignedScheme(target.precision.signed_scheme), batch=batch,
    )


def _json_list(text: str | None) -> list[object]:
    if not text:
        return []
    value = json.loads(text)
    return value if isinstance(value, list) else []


def _subnet_outputs(props: dict[str, str], graph: ir.Graph) -> tuple[tuple[str, ...], ...]:
    outputs = _json_list(props.get(_common.SUBNET_OUTPUTS_KEY))
    if outputs:
        return tuple(tuple(str(n) for n in group) for group in outputs)  # type: ignore[attr-defined]
    return (tuple(v.name or "" for v in graph.outputs),)
