"""Helpers shared by the graph-level passes: metadata keys, weight hashing, MAC counting.

The passes talk to each other (and to lowering and mapping) only through ONNX metadata
properties, so the key strings live here, in one place. Weight identity is decided by
content, never by initializer name, because the legacy torch exporter renames
initializers (``onnx::Conv_123``) differently in every subnet it exports.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx_ir as ir

logger = logging.getLogger(__name__)

__all__ = [
    "DEDUP_KEY_PREFIX",
    "DIGEST_META_KEY",
    "GROUP_SIZE_KEY",
    "MAC_OP_TYPES",
    "SUBNETS_KEY",
    "SUBNET_NAMES_KEY",
    "SUBNET_OUTPUTS_KEY",
    "WEIGHT_GROUP_KEY",
    "constant_tensor",
    "count_macs",
    "digest_now",
    "digests_in_background",
    "get_subnets",
    "has_static_mac_shapes",
    "has_subgraphs",
    "set_subnets",
    "sort_graph",
    "tensor_digest",
    "weight_digest",
    "weight_input",
]

SUBNETS_KEY = "enasa.subnets"
"""Node metadata: comma-separated sorted indices of the subnets that compute the node."""

WEIGHT_GROUP_KEY = "enasa.weight_group"
"""Node metadata: id (``wg0``, ``wg1``...) of the set of nodes sharing one weight tensor."""

GROUP_SIZE_KEY = "enasa.group_size"
"""Model metadata: number of subnets G in the group, as a decimal string."""

SUBNET_NAMES_KEY = "enasa.subnet_names"
"""Model metadata: JSON list of the subnets' names, indexed like ``SUBNETS_KEY``."""

SUBNET_OUTPUTS_KEY = "enasa.subnet_outputs"
"""Model metadata: JSON list, per subnet, of the group model's output names."""

DEDUP_KEY_PREFIX = "enasa.dedup."
"""Model metadata prefix of the deduplication statistics (``enasa.dedup.nodes_removed``)."""

MAC_OP_TYPES = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
"""Operators that become matrix-vector products on crossbars."""


def get_subnets(node: ir.Node) -> tuple[int, ...]:
    """Return the subnet indices recorded on a node, sorted; empty when not tagged."""
    text = node.metadata_props.get(SUBNETS_KEY, "")
    return tuple(sorted({int(part) for part in text.split(",") if part.strip()}))


def set_subnets(node: ir.Node, subnets: Iterable[int]) -> None:
    """Record on a node the subnets that compute it (sorted, duplicates dropped)."""
    node.metadata_props[SUBNETS_KEY] = ",".join(str(i) for i in sorted(set(subnets)))


def constant_tensor(value: ir.Value | None) -> ir.TensorProtocol | None:
    """Return the tensor a value always holds, or None when the value can vary.

    An initializer that is also a graph input is *not* constant: a caller may feed it,
    so folding or sharing it would change what the model computes.
    """
    if value is None or value.is_graph_input():
        return None
    try:
        return ir.convenience.get_const_tensor(value)
    except ValueError:
        # A malformed Constant node: treat it as an ordinary value rather than fail.
        return None


DIGEST_META_KEY = "enasa.sha256"
"""Tensor ``meta`` key (never serialized) caching :func:`tensor_digest` on the tensor."""


def tensor_digest(tensor: ir.TensorProtocol) -> str:
    """Return a sha256 hex digest of a tensor's dtype name, shape and raw bytes.

    The digest is computed once per tensor object and cached in its ``meta`` store:
    onnx_ir tensors are immutable, several passes ask for the same weights, and hashing
    every weight of a full-size group is a large part of a compile.
    """
    meta = getattr(tensor, "meta", None)
    if meta is not None:
        cached = meta.get(DIGEST_META_KEY)
        if cached is not None:
            return str(cached)
    digest = _compute_digest(tensor)
    if meta is not None:
        meta[DIGEST_META_KEY] = digest
    return digest


def _compute_digest(tensor: ir.TensorProtocol) -> str:
    hasher = hashlib.sha256()
    hasher.update(tensor.dtype.name.encode())
    hasher.update(repr(tuple(tensor.shape.numpy())).encode())
    if tensor.dtype == ir.DataType.STRING:
        # String tensors have no fixed-width buffer; join their elements unambiguously.
        for item in np.asarray(tensor.numpy()).reshape(-1):
            data = item if isinstance(item, bytes) else str(item).encode()
            hasher.update(len(data).to_bytes(8, "little"))
            hasher.update(data)
    else:
        hasher.update(tensor.tobytes())
    return hasher.hexdigest()


# Below this size hashing is dominated by Python overhead, which would hold the GIL the
# foreground thread needs; such tensors are hashed when a pass asks for them.
_BACKGROUND_MIN_BYTES = 64 * 1024


@contextlib.contextmanager
def digests_in_background(models: Iterable[ir.Model]) -> Iterator[None]:
    """Hash the large initializers of ``models`` on a worker thread during the block.

    sha256 releases the GIL, so the weights are hashed on another core while the block
    runs passes; :func:`tensor_digest` then finds the digests cached. The block must not
    replace the tensors' contents (onnx_ir tensors are immutable, so passes do not). On
    exit it waits for the worker.
    """
    tensors = [
        value.const_value
        for model in models
        for value in model.graph.initializers.values()
        if value.const_value is not None and _is_large(value.const_value)
    ]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="enasa-digest") as pool:
        pool.submit(_digest_all, tensors)
        yield


def digest_now(models: Iterable[ir.Model], *, workers: int = 2) -> None:
    """Hash every large initializer of ``models`` not hashed yet, on ``workers`` threads.

    For weights made by a pass (BatchNorm folding writes lazy tensors, computed when
    read): computing and hashing them is numpy and sha256 work that releases the GIL,
    so two threads do it in about half the time the pass reading them next would.
    """
    tensors = [
        value.const_value
        for model in models
        for value in model.graph.initializers.values()
        if value.const_value is not None and _is_large(value.const_value)
        and DIGEST_META_KEY not in value.const_value.meta
    ]
    if len(tensors) < 2 or workers < 2:
        _digest_all(tensors)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="enasa-digest") as pool:
        list(pool.map(_digest_all, [tensors[i::workers] for i in range(workers)]))


def _is_large(tensor: ir.TensorProtocol) -> bool:
    try:
        return tensor.nbytes >= _BACKGROUND_MIN_BYTES
    except TypeError:  # a dtype without a fixed width (STRING, UNDEFINED)
        return False


def _digest_all(tensors: list[ir.TensorProtocol]) -> None:
    for tensor in tensors:
        try:
            tensor_digest(tensor)
        except Exception:  # noqa: BLE001 - hashed again, and reported, when a pass needs it
            logger.debug("Digest of %s deferred", tensor.name, exc_info=True)


def weight_digest(value: ir.Value | None) -> str | None:
    """Return the content digest of a constant value, or None when it is not constant.

    Two values with the same digest hold the same numbers whatever they are called, which
    is what decides compute and weight sharing across subnets.
    """
    tensor = constant_tensor(value)
    if tensor is None:
        return None
    return tensor_digest(tensor)


def weight_input(node: ir.Node) -> ir.Value | None:
    """Return the constant weight operand of a Conv, ConvTranspose, Gemm or MatMul, if any.

    Conv, ConvTranspose and Gemm keep their weight at input 1. MatMul may multiply a
    constant from either side, so input 1 is preferred and input 0 tried next.
    """
    if node.domain != "" or node.op_type not in MAC_OP_TYPES:
        return None
    candidates = (1, 0) if node.op_type == "MatMul" else (1,)
    for index in candidates:
        if index < len(node.inputs) and constant_tensor(node.inputs[index]) is not None:
            return node.inputs[index]
    return None


def has_subgraphs(graph: ir.Graph) -> bool:
    """Tell whether any node of ``graph`` holds a subgraph (If, Loop, Scan...)."""
    return any(attr.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS)
               for node in graph for attr in node.attributes.values())


def sort_graph(graph: ir.Graph) -> None:
    """Sort a graph's nodes topologically (``Graph.sort``), unless they already are.

    ``Graph.sort`` is stable: on a graph already in topological order it keeps the order,
    so it can be skipped there, and the graph passes mostly see sorted graphs. The check
    is a fraction of the sort's cost. Graphs with subgraphs are always sorted.
    """
    placed: set[ir.Node] = set()
    for node in graph:
        for attr in node.attributes.values():
            if attr.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS):
                graph.sort()
                return
        for value in node.inputs:
            producer = value.producer() if value is not None else None
            if producer is not None and producer not in placed:
                graph.sort()
                return
        placed.add(node)


def static_dims(value: ir.Value | None) -> tuple[int, ...] | None:
    """Return a value's shape as ints, or None when it is unknown or symbolic."""
    if value is None or value.shape is None or not value.shape.is_static():
        return None
    return tuple(int(d) for d in value.shape.numpy())


def has_static_mac_shapes(node: ir.Node) -> bool:
    """Tell whether :func:`count_macs` has the static shapes it needs for this node."""
    if node.domain != "" or node.op_type not in MAC_OP_TYPES:
        return True
    needed: tuple[ir.Value | None, ...]
    if node.op_type == "Conv":
        needed = (node.inputs[1], node.outputs[0])
    elif node.op_type == "ConvTranspose":
        needed = (node.inputs[0], node.inputs[1])
    else:
        needed = (node.inputs[0], node.outputs[0])
    return all(static_dims(value) is not None for value in needed)


def count_macs(node: ir.Node) -> int:
    """Count the multiply-accumulates a node performs for the whole (static) batch.

    Conv: ``N * Cout * (Cin/g) * prod(kernel) * prod(output spatial)``. ConvTranspose:
    every input element is multiplied into ``(Cout/g) * prod(kernel)`` outputs, so
    ``N * Cin * prod(input spatial) * (Cout/g) * prod(kernel)``. Gemm and MatMul:
    output elements times the reduced dimension K (``M*K*N`` for a plain matrix product,
    batch dimensions multiply). Every other operator runs on digital units and counts 0.

    Raises:
        ValueError: When the shapes the count needs are unknown or symbolic; run
            ``onnx_ir.passes.common.ShapeInferencePass`` first.

    """
    if node.domain != "" or node.op_type not in MAC_OP_TYPES:
        return 0
    output_dims = static_dims(node.outputs[0])
    if node.op_type == "Conv":
        weight_dims = static_dims(node.inputs[1])
        if output_dims is None or weight_dims is None:
            raise ValueError(f"Conv '{node.name}' needs static weight and output shapes")
        # Output (N, Cout, *spatial) times the (Cin/g, *kernel) each output element reads.
        return math.prod(output_dims) * math.prod(weight_dims[1:])
    if node.op_type == "ConvTranspose":
        input_dims, weight_dims = static_dims(node.inputs[0]), static_dims(node.inputs[1])
        if input_dims is None or weight_dims is None:
            raise ValueError(f"ConvTranspose '{node.name}' needs static input and weight "
                             "shapes")
        # Weight (Cin, Cout/g, *kernel): each input element feeds Cout/g * kernel outputs.
        return math.prod(input_dims) * math.prod(weight_dims[1:])
    input_dims = static_dims(node.inputs[0])
    if output_dims is None or input_dims is None:
        raise ValueError(f"{node.op_type} '{node.name}' needs static input and output shapes")
    if node.op_type == "Gemm":
        trans_a = node.attributes.get_int("transA", 0)
        reduced = input_dims[0] if trans_a else input_dims[1]
    else:
        reduced = input_dims[-1]
    return math.prod(output_dims) * reduced
