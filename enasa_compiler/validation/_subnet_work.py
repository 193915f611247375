"""What one subnet computes, derived from its ONNX file alone: the work a plan must cover.

The validator does not ask the compiler what a subnet computes. It walks the subnet's
own graph (batch fixed, shapes inferred by ``onnx``), each subnet on its own, and
lists the nodes that do work, in topological order, with what the plan must claim for
each. It mirrors *what* the compiler may legitimately change, as the explicit rules
below, never *how* (no graph pass, no lowering code is called):

* **No work:** ``Identity``, and a ``Dropout`` in inference mode, are aliases of their
  input. A node whose inputs are all constant (initializers, ``Constant`` nodes,
  results of such nodes, ``Shape`` of a tensor of static shape, ``CastLike`` of a
  constant) is folded by the compiler into a constant. A node none of whose results
  reaches a graph output is dead. None of these becomes a plan operator (a plan may
  still hold ``Identity`` operators: they pass values on and are read through).
* **Crossbar work (``mvm``):** ``Conv`` with a constant 4-D weight, unless depthwise
  (one input channel per group, more than one group); ``Gemm`` and ``MatMul`` whose
  second input is a constant 2-D matrix. Their weights are checked by content (see
  :func:`~._graph_values.weight_sha256`), their rows and columns, MACs and vectors per image.
* **Digital work:** every other node of :data:`DIGITAL_OP_TYPES`: depthwise ``Conv``
  (``ops`` = its MACs), ``Gemm``/``MatMul`` of two activations (``ops`` = output
  elements x the reduced length), the pooling and reductions of
  :data:`WINDOW_OP_TYPES` (``ops`` = input elements) and the rest (``ops`` = output
  elements). Anything else has no plan counterpart, and is reported.
* **BatchNormalization after a Conv** may be folded into the conv's weights (when the
  conv's result feeds only the BN, as ``docs/validation.md`` says) or kept as a
  digital operator: the compiler decides per group. Both are accepted; each node
  carries the folded weights' hash as the alternative.

Counts are per image, from the shapes at the plan's batch (whole-batch count // batch).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import onnx

from enasa_compiler.ir import OpKind
from enasa_compiler.validation._graph_values import GraphValues, attribute, weight_sha256

logger = logging.getLogger(__name__)

__all__ = [
    "DIGITAL_OP_TYPES",
    "MVM_OP_TYPES",
    "WINDOW_OP_TYPES",
    "Matrix",
    "SubnetWork",
    "Work",
    "WorkNode",
    "derive_work",
]

MVM_OP_TYPES = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
"""Node types that run on crossbars when their weight is a constant (depthwise convs not)."""

_ELEMENTWISE = frozenset({
    "Relu", "Clip", "Add", "Sub", "Mul", "Div", "Sigmoid", "HardSigmoid", "HardSwish",
    "LeakyRelu", "Tanh", "Erf", "Gelu", "Sqrt", "Neg", "Abs", "Exp", "Max", "Min", "Sum",
    "BatchNormalization", "Cast", "Dropout", "Softmax", "PRelu", "Pow", "Elu", "Softplus",
    "Mish", "Selu", "Celu", "Softsign", "LogSoftmax", "Log", "Reciprocal", "Floor", "Ceil",
    "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Equal", "Not", "And", "Or", "Where",
})
NORMALIZATION_OP_TYPES = frozenset({
    "LayerNormalization", "InstanceNormalization", "GroupNormalization"})
"""Digital node types priced at four operations per output element (docs/operators.md:
a pass for the mean, one for the variance, normalising, the affine scale and shift)."""
_NORMALIZATION_OPS_PER_ELEMENT = 4
RESAMPLING_OP_TYPES = frozenset({"Resize", "Upsample"})
"""Digital node types priced per output element per interpolation tap."""
_TAPS_PER_RESIZED_AXIS = {"nearest": 1, "linear": 2, "bilinear": 2, "cubic": 4}
_GLOBAL_POOLS = {"ReduceMean": "GlobalAveragePool", "ReduceMax": "GlobalMaxPool"}
_DATA_MOVEMENT = frozenset({
    "Concat", "Split", "Slice", "Transpose", "Reshape", "Flatten", "Gather", "Squeeze",
    "Unsqueeze", "Pad", "Expand", "Tile", "DepthToSpace", "SpaceToDepth", "Shape",
})
WINDOW_OP_TYPES = frozenset({
    "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceSum", "ReduceMax",
    "AveragePool", "MaxPool",
})
"""Digital node types priced by the elements they read, not the ones they write."""

DIGITAL_OP_TYPES = (_ELEMENTWISE | _DATA_MOVEMENT | WINDOW_OP_TYPES | MVM_OP_TYPES
                    | NORMALIZATION_OP_TYPES | RESAMPLING_OP_TYPES)
"""Node types the digital units implement (what a plan's digital operators may be)."""

_NON_DETERMINISTIC = frozenset({"RandomUniform", "RandomNormal", "RandomUniformLike",
                                "RandomNormalLike", "Multinomial"})
_DEFAULT_DOMAINS = ("", "ai.onnx")
_SUBGRAPH_ATTRIBUTES = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)


@dataclass(frozen=True)
class Matrix:
    """A crossbar weight matrix as the plan must record it: content hash and size."""

    sha256: str
    rows: int
    cols: int

    def __str__(self) -> str:
        return f"{self.sha256[:12]} ({self.rows}x{self.cols})"


@dataclass(frozen=True)
class Work:
    """What a plan operator computing one node must claim (None: shape not known).

    MVM operators claim ``elements`` and ``ops`` 0; digital ones ``vectors_per_image`` 0
    and no matrices.
    """

    kind: OpKind
    macs: int | None
    vectors_per_image: int | None
    elements: int | None
    ops: int | None
    matrices: tuple[Matrix, ...] = ()


@dataclass(frozen=True)
class WorkNode:
    """One node of a subnet that a plan operator must compute.

    Attributes:
        index: the node's position in the subnet's graph.
        name: its name (``<op_type>_<position>`` when it has none).
        op_type: its ONNX op type.
        inputs: the values it reads that are not constant (aliases resolved).
        outputs: the values it writes.
        work: what the plan must claim for it; None when the compiler cannot map it.
        problem: why it cannot be mapped, when ``work`` is None.
        folds: the index of the BatchNormalization node the compiler may fold into
            this conv.
        folded: the work with that BN folded in (other weights, same counts).

    """

    index: int
    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    work: Work | None
    problem: str | None = None
    folds: int | None = None
    folded: Work | None = None


def _derived_sha256(digest: str, suffix: str) -> str:
    return hashlib.sha256(f"{digest}/{suffix}".encode()).hexdigest()


def _topological(nodes: list[onnx.NodeProto], available: set[str]) -> list[int]:
    """Return the indices of ``nodes`` in a stable topological order."""
    producer = {out: i for i, node in enumerate(nodes) for out in node.output if out}
    waiting = [{producer[v] for v in node.input if v in producer and v not in available}
               for node in nodes]
    users: dict[int, list[int]] = {}
    for i, before in enumerate(waiting):
        for p in before:
            users.setdefault(p, []).append(i)
    order, placed = [], set()
    ready = [i for i, before in enumerate(waiting) if not before]
    while ready:
        ready.sort(reverse=True)  # graph order among the ready nodes
        i = ready.pop()
        order.append(i)
        placed.add(i)
        for user in users.get(i, ()):
            waiting[user].discard(i)
            if not waiting[user] and user not in placed:
                ready.append(user)
    # Nodes on a cycle (not a valid ONNX graph) keep their place after the others.
    return order + [i for i in range(len(nodes)) if i not in placed]


class SubnetWork:
    """The work of one subnet: its input, its work nodes in order, its outputs.

    Attributes:
        input_name: the subnet's one input.
        input_shape: its shape at the plan's batch (None if not static).
        outputs: the graph outputs, aliases resolved.
        nodes: the work nodes, in topological order.

    """

    def __init__(self, proto: onnx.ModelProto, batch: int) -> None:
        graph = proto.graph
        self.batch = batch
        self.values = GraphValues(proto)
        self.input_name = next(v.name for v in graph.input
                               if v.name not in self.values.initializers)
        self.input_shape = self.values.static_dims(self.input_name)
        self._nodes = list(graph.node)
        referenced = {v for node in self._nodes for v in node.input} | {
            v.name for v in graph.output}
        order = _topological(self._nodes, {self.input_name, *self.values.initializers})
        candidates = [i for i in order if self._classify(self._nodes[i], referenced)]
        self.outputs = tuple(self.values.resolve(v.name) for v in graph.output)
        self._uses: dict[str, list[int]] = {}
        self.nodes = self._live_work(candidates)

    @cached_property
    def by_index(self) -> dict[int, WorkNode]:
        """The work nodes by their position in the graph."""
        return {node.index: node for node in self.nodes}

    def _per_image(self, names: Iterable[str]) -> int | None:
        total = 0
        for name in names:
            dims = self.values.static_dims(name)
            if dims is None:
                return None
            total += math.prod(dims) // self.batch
        return total

    def _name(self, index: int) -> str:
        node = self._nodes[index]
        return node.name or f"{node.op_type}_{index}"

    # ---- what does no work -----------------------------------------------------------
    def _classify(self, node: onnx.NodeProto, referenced: set[str]) -> bool:
        """Record the node's aliases or constants; return whether it may be work."""
        if node.domain not in _DEFAULT_DOMAINS:
            return True
        values = self.values
        inputs = [values.resolve(v) for v in node.input if v]
        outputs = list(node.output)
        if node.op_type == "Identity" and len(node.input) == 1 and outputs:
            values.add_alias(outputs[0], inputs[0])
            return False
        if (node.op_type == "Dropout" and inputs and self._is_inference_dropout(node)
                and not any(v in referenced for v in outputs[1:])):
            values.add_alias(outputs[0], inputs[0])
            return False
        if self._folds_to_constant(node, inputs):
            values.add_constants(outputs)
            return False
        return True

    def _folds_to_constant(self, node: onnx.NodeProto, inputs: list[str]) -> bool:
        values = self.values
        if node.op_type == "Constant":
            return True
        if node.op_type in _NON_DETERMINISTIC or any(
                a.type in _SUBGRAPH_ATTRIBUTES for a in node.attribute):
            return False
        if node.op_type == "Shape" and inputs and values.static_dims(inputs[0]) is not None:
            return True
        if node.op_type == "CastLike" and len(inputs) == 2 and values.is_constant(inputs[0]):
            return values.has_type(inputs[1])
        return bool(inputs) and all(values.is_constant(v) for v in inputs)

    def _is_inference_dropout(self, node: onnx.NodeProto) -> bool:
        if self.values.opset < 12 or len(node.input) < 3 or not node.input[2]:
            return True
        if not self.values.is_constant(node.input[2]):
            return False
        return not bool(np.asarray(self.values.value(node.input[2])[0]).any())

    def _live_work(self, candidates: list[int]) -> tuple[WorkNode, ...]:
        """Return the work nodes whose results reach an output, in order, with their work."""
        resolve = self.values.resolve
        live = set(self.outputs)
        kept: list[int] = []
        for i in reversed(candidates):
            node = self._nodes[i]
            if any(v in live for v in node.output):
                kept.append(i)
                live.update(resolve(v) for v in node.input if v)
        kept.reverse()
        for i in kept:
            for v in self._nodes[i].input:
                if v and not self.values.is_constant(v):
                    self._uses.setdefault(resolve(v), []).append(i)
        return tuple(self._work_node(i) for i in kept)

    # ---- the work of a node ----------------------------------------------------------
    def _work_node(self, index: int) -> WorkNode:
        node, values = self._nodes[index], self.values
        work, problem = self._work(node)
        inputs = tuple(values.resolve(v) for v in node.input
                       if v and not values.is_constant(v))
        folds = folded = None
        norm = self._foldable_batch_norm(node) if node.op_type == "Conv" and work else None
        if norm is not None and work is not None:
            folds, folded = norm, work
            if work.kind is OpKind.MVM:
                groups = int(attribute(node, "group", 1))  # type: ignore[call-overload]
                digest = self._folded_weight_sha256(node, self._nodes[norm])
                folded = Work(work.kind, work.macs, work.vectors_per_image, work.elements,
                              work.ops, self._conv_matrices(digest, node.input[1], groups))
        return WorkNode(index, self._name(index), self._canonical_op_type(node), inputs,
                        tuple(node.output), work, problem, folds, folded)

    def _canonical_op_type(self, node: onnx.NodeProto) -> str:
        """Return the op type the compiler may give the node's operator.

        The exporters spell two operators two ways, and the compiler writes each one way
        (docs/operators.md): ``ReduceMean``/``ReduceMax`` over every spatial axis,
        dims kept, is ``GlobalAveragePool``/``GlobalMaxPool``; a ``Reshape`` of an
        ``(N, ...)`` tensor of rank 3 or more to ``(N, rest)`` is ``Flatten``. The work
        is the same either way (input elements; output elements).
        """
        values = self.values
        source = values.static_dims(node.input[0]) if node.input else None
        if node.domain not in _DEFAULT_DOMAINS or source is None or len(source) < 3:
            return node.op_type
        if node.op_type == "Reshape":
            result = values.static_dims(node.output[0])
            if result == (source[0], math.prod(source[1:])):
                return "Flatten"
        elif node.op_type in _GLOBAL_POOLS and attribute(node, "keepdims", 1) == 1:
            axes = attribute(node, "axes", None)
            if axes is None and len(node.input) > 1 and values.is_constant(node.input[1]):
                axes = np.asarray(values.value(node.input[1])[0]).reshape(-1).tolist()
            if axes is not None and sorted(int(a) % len(source) for a in axes  # type: ignore[attr-defined]
                                           ) == list(range(2, len(source))):
                return _GLOBAL_POOLS[node.op_type]
        return node.op_type

    def _work(self, node: onnx.NodeProto) -> tuple[Work | None, str | None]:
        op_type = node.op_type
        if node.domain not in _DEFAULT_DOMAINS or op_type not in DIGITAL_OP_TYPES:
            domain = f"{node.domain}::" if node.domain else ""
            return None, f"the digital units do not implement {domain}{op_type}"
        if op_type == "Conv":
            return self._conv(node)
        if op_type == "ConvTranspose":
            return self._conv_transpose(node)
        if op_type in ("Gemm", "MatMul") and len(node.input) > 1 and self.values.is_constant(
                node.input[1]):
            return self._matmul(node)
        elements = self._per_image(v for v in node.output if v)
        ops: int | None = elements
        macs: int | None = 0
        if op_type in WINDOW_OP_TYPES:
            ops = self._per_image(v for v in node.input
                                  if v and not self.values.is_constant(v))
        elif op_type in ("Gemm", "MatMul"):  # of two activations
            first = self.values.static_dims(node.input[0]) if node.input else None
            ops = macs = None if elements is None or not first else elements * first[-1]
        elif op_type in NORMALIZATION_OP_TYPES:
            ops = None if elements is None else elements * _NORMALIZATION_OPS_PER_ELEMENT
        elif op_type in RESAMPLING_OP_TYPES:
            taps = self._interpolation_taps(node)
            if taps is None:
                return None, f"{op_type} mode '{attribute(node, 'mode', b'nearest')!r}' " \
                    "is not mapped"
            ops = None if elements is None else elements * taps
        return Work(OpKind.DIGITAL, macs, 0, elements,
                    None if ops is None else max(1, ops)), None

    def _conv(self, node: onnx.NodeProto) -> tuple[Work | None, str | None]:
        if len(node.input) < 2 or not self.values.is_constant(node.input[1]):
            return None, "its weight is not constant"
        dims = self.values.static_dims(node.input[1])
        if dims is None or len(dims) != 4:
            return None, "only 2-D convolutions (4-D weights) are mapped"
        cout, cin_per_group, kh, kw = dims
        groups = int(attribute(node, "group", 1))  # type: ignore[call-overload]
        out = self.values.static_dims(node.output[0])
        vectors = None if out is None else math.prod(out[2:])
        macs = None if vectors is None else cout * cin_per_group * kh * kw * vectors
        if cin_per_group == 1 and groups > 1:  # depthwise: digital
            elements = self._per_image(v for v in node.output if v)
            return Work(OpKind.DIGITAL, macs, 0, elements,
                        None if macs is None else max(1, macs)), None
        digest = self.values.sha256(node.input[1])
        return Work(OpKind.MVM, macs, vectors, 0, 0,
                    self._conv_matrices(digest, node.input[1], groups)), None

    def _interpolation_taps(self, node: onnx.NodeProto) -> int | None:
        """Input elements a Resize/Upsample reads per output element (None: bad mode)."""
        mode = attribute(node, "mode", b"nearest")
        text = (mode.decode() if isinstance(mode, bytes) else str(mode)).lower()
        if text not in _TAPS_PER_RESIZED_AXIS:
            return None
        source = self.values.static_dims(node.input[0]) if node.input else None
        result = self.values.static_dims(node.output[0])
        if source is None or result is None or len(source) != len(result):
            return _TAPS_PER_RESIZED_AXIS[text]
        changed = sum(1 for a, b in zip(source, result, strict=True) if a != b)
        return _TAPS_PER_RESIZED_AXIS[text] ** changed

    def _conv_transpose(self, node: onnx.NodeProto) -> tuple[Work | None, str | None]:
        """Derive a ConvTranspose's work: per group a ``Cin/g x (Cout/g*Kh*Kw)`` matrix.

        One vector per *input* pixel (docs/operators.md); a depthwise one (one input
        channel per group) runs digitally, priced by its MACs.
        """
        if len(node.input) < 2 or not self.values.is_constant(node.input[1]):
            return None, "its weight is not constant"
        dims = self.values.static_dims(node.input[1])
        if dims is None or len(dims) != 4:
            return None, "only 2-D transposed convolutions (4-D weights) are mapped"
        if attribute(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or (
                attribute(node, "output_shape", None)):
            return None, "auto_pad and output_shape are not mapped"
        cin, cout_per_group, kh, kw = dims
        groups = int(attribute(node, "group", 1))  # type: ignore[call-overload]
        cin_per_group = cin // groups
        source = self.values.static_dims(node.input[0])
        vectors = None if source is None else math.prod(source[2:])
        macs = None if vectors is None else cin * cout_per_group * kh * kw * vectors
        if cin_per_group == 1 and groups > 1:
            elements = self._per_image(v for v in node.output if v)
            return Work(OpKind.DIGITAL, macs, 0, elements,
                        None if macs is None else max(1, macs)), None
        digest = self.values.sha256(node.input[1])
        matrices = tuple(
            Matrix(_derived_sha256(digest if groups == 1
                                   else _derived_sha256(digest, f"{g}/{groups}"), "conv-t"),
                   cin_per_group, cout_per_group * kh * kw)
            for g in range(groups))
        return Work(OpKind.MVM, macs, vectors, 0, 0, matrices), None

    def _conv_matrices(self, digest: str, weight: str, groups: int) -> tuple[Matrix, ...]:
        dims = self.values.static_dims(weight)
        assert dims is not None
        cout, cin_per_group, kh, kw = dims
        return tuple(
            Matrix(digest if groups == 1 else _derived_sha256(digest, f"{g}/{groups}"),
                   cin_per_group * kh * kw, cout // groups)
            for g in range(groups))

    def _matmul(self, node: onnx.NodeProto) -> tuple[Work | None, str | None]:
        dims = self.values.static_dims(node.input[1])
        if dims is None or len(dims) != 2:
            return None, "only 2-D weight matrices are mapped"
        transposed = node.op_type == "Gemm" and attribute(node, "transB", 0) == 1
        rows, cols = (dims[1], dims[0]) if transposed else dims
        out = self.values.static_dims(node.output[0])
        vectors = None if out is None else math.prod(out[:-1]) // self.batch
        digest = self.values.sha256(node.input[1])
        matrix = Matrix(_derived_sha256(digest, "gemm-t") if transposed else digest, rows,
                        cols)
        return Work(OpKind.MVM, None if vectors is None else rows * cols * vectors,
                    None if vectors is None else max(1, vectors), 0, 0, (matrix,)), None

    # ---- BatchNormalization folding --------------------------------------------------
    def _foldable_batch_norm(self, conv: onnx.NodeProto) -> int | None:
        """Return the BN the compiler may fold into ``conv``: the one node reading it."""
        result = conv.output[0]
        users = self._uses.get(result, [])
        if result in self.outputs or len(users) != 1:
            return None
        norm = self._nodes[users[0]]
        if (norm.op_type != "BatchNormalization" or norm.domain not in _DEFAULT_DOMAINS
                or len(norm.input) != 5 or attribute(norm, "training_mode", 0) != 0):
            return None
        if any(v in self.outputs or v in self._uses for v in norm.output[1:] if v):
            return None
        needed = [*norm.input[1:5], conv.input[1]]
        if len(conv.input) > 2 and conv.input[2]:
            needed.append(conv.input[2])
        return users[0] if all(v and self.values.is_constant(v) for v in needed) else None

    def _folded_weight_sha256(self, conv: onnx.NodeProto, norm: onnx.NodeProto) -> str:
        """Hash the conv weight times ``gamma / sqrt(var + eps)`` per output channel.

        Computed in float64 and cast back to the weight's type: the folding rule of
        docs/validation.md.
        """
        weight, dtype = self.values.value(conv.input[1])
        gamma, _beta, _mean, variance = (
            np.asarray(self.values.value(v)[0]).astype(np.float64) for v in norm.input[1:5])
        epsilon = float(attribute(norm, "epsilon", 1e-5))  # type: ignore[arg-type]
        factor = gamma / np.sqrt(variance + epsilon)
        shape = (weight.shape[0],) + (1,) * (weight.ndim - 1)
        folded = (weight.astype(np.float64) * factor.reshape(shape)).astype(weight.dtype)
        return weight_sha256(dtype, folded.shape, folded.tobytes())

    # ---- identity of a computation ---------------------------------------------------
    def constant_key(self, node: WorkNode) -> Hashable:
        """Return what, besides its activation inputs, makes a node one computation.

        Two nodes of one subnet with equal keys and equal inputs compute the same
        values; the compiler may compute them once.
        """
        proto, values = self._nodes[node.index], self.values
        constants = tuple(values.sha256(v) if v and values.is_constant(v) else None
                          for v in proto.input)
        attributes = tuple(sorted((a.name, a.SerializeToString(deterministic=True))
                                  for a in proto.attribute))
        return (proto.domain, proto.op_type, attributes, constants)


def derive_work(proto: onnx.ModelProto, batch: int) -> SubnetWork:
    """List the work of a subnet (batch fixed and shapes inferred, as ``parse_model``)."""
    return SubnetWork(proto, batch)
