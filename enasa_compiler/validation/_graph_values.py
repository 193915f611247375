"""The values of one subnet graph: shapes, aliases, constants, and the weight hash.

Read from the ONNX proto with ``onnx`` alone (shapes from ``onnx.shape_inference``,
constant values from the initializers or ``onnx.reference``), for the validator's own
walk of a subnet (:mod:`._subnet_work`). Constant values are evaluated only when asked
for, and kept.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable

import numpy as np
import onnx
import onnx.reference
from onnx import helper, numpy_helper

from enasa_compiler.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["GraphValues", "attribute", "weight_sha256"]


def weight_sha256(dtype: int, dims: Iterable[int], data: bytes) -> str:
    """Hash a weight tensor as ``weights[].sha256`` defines it (docs/validation.md).

    sha256 over the ONNX data type's name (``FLOAT``), the Python ``repr`` of the shape
    as a tuple of ints (``(16, 3, 3, 3)``) and the little-endian element bytes.
    """
    hasher = hashlib.sha256()
    hasher.update(onnx.TensorProto.DataType.Name(dtype).encode())
    hasher.update(repr(tuple(int(d) for d in dims)).encode())
    hasher.update(data)
    return hasher.hexdigest()


def attribute(node: onnx.NodeProto, name: str, default: object) -> object:
    """Return a node attribute's value, or ``default`` when the node does not set it."""
    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


class GraphValues:
    """Shapes, types, aliases and constants of the values of one graph.

    The walk that classifies nodes records aliases (:meth:`add_alias`) and values known
    at compile time (:meth:`add_constants`); initializers are constant from the start
    (a weight listed among the graph inputs too is still a weight).
    """

    def __init__(self, proto: onnx.ModelProto) -> None:
        graph = proto.graph
        self.initializers = {t.name: t for t in graph.initializer}
        self._dims: dict[str, tuple[int | None, ...]] = {}
        self._elem_type: dict[str, int] = {}
        for value in (*graph.input, *graph.value_info, *graph.output):
            if not value.type.HasField("tensor_type"):
                continue
            tensor_type = value.type.tensor_type
            self._elem_type.setdefault(value.name, tensor_type.elem_type)
            if tensor_type.HasField("shape") and value.name not in self._dims:
                self._dims[value.name] = tuple(d.dim_value if d.HasField("dim_value") else None
                                               for d in tensor_type.shape.dim)
        for tensor in graph.initializer:
            self._dims[tensor.name] = tuple(tensor.dims)
            self._elem_type[tensor.name] = tensor.data_type
        opsets = {o.domain: o.version for o in proto.opset_import}
        self.opset = opsets.get("", opsets.get("ai.onnx", 1))
        self._producer = {out: node for node in graph.node for out in node.output if out}
        self._alias: dict[str, str] = {}
        self._constant: set[str] = set(self.initializers)
        self._values: dict[str, tuple[np.ndarray, int]] = {}

    # ---- aliases and constants -------------------------------------------------------
    def add_alias(self, alias: str, source: str) -> None:
        """Record that ``alias`` always holds what ``source`` holds."""
        self._alias[alias] = self.resolve(source)

    def add_constants(self, names: Iterable[str]) -> None:
        """Record values known when compiling."""
        self._constant.update(name for name in names if name)

    def resolve(self, name: str) -> str:
        """Return the value ``name`` is an alias of, or ``name``."""
        seen = set()
        while name in self._alias and name not in seen:
            seen.add(name)
            name = self._alias[name]
        return name

    def is_constant(self, name: str) -> bool:
        """Tell whether a value is known when compiling (the compiler folds it)."""
        return self.resolve(name) in self._constant

    def static_dims(self, name: str) -> tuple[int, ...] | None:
        """Return a value's shape, or None when it is not fully known."""
        dims = self._dims.get(self.resolve(name), self._dims.get(name))
        if dims is None or any(d is None for d in dims):
            return None
        return tuple(int(d) for d in dims if d is not None)

    def has_type(self, name: str) -> bool:
        """Tell whether a value's element type is known."""
        return self.resolve(name) in self._elem_type

    # ---- constant values -------------------------------------------------------------
    def sha256(self, name: str) -> str:
        """Hash a constant value as ``weights[].sha256`` defines it."""
        tensor = self.initializers.get(self.resolve(name))
        if tensor is not None and tensor.HasField("raw_data"):
            return weight_sha256(tensor.data_type, tensor.dims, tensor.raw_data)
        array, dtype = self.value(name)
        return weight_sha256(dtype, array.shape, np.ascontiguousarray(array).tobytes())

    def value(self, name: str) -> tuple[np.ndarray, int]:
        """Return a constant value and its ONNX data type."""
        name = self.resolve(name)
        cached = self._values.get(name)
        if cached is None:
            cached = self._values[name] = self._evaluate(name)
        return cached

    def _evaluate(self, name: str) -> tuple[np.ndarray, int]:
        tensor = self.initializers.get(name)
        if tensor is not None:
            return numpy_helper.to_array(tensor), tensor.data_type
        node = self._producer[name]
        if node.op_type == "Constant" and len(node.attribute) == 1:
            attr = node.attribute[0]
            if attr.name == "value":
                return numpy_helper.to_array(attr.t), attr.t.data_type
            if attr.name in ("value_float", "value_floats"):
                array = np.asarray(helper.get_attribute_value(attr), dtype=np.float32)
                return array, onnx.TensorProto.FLOAT
            if attr.name in ("value_int", "value_ints"):
                array = np.asarray(helper.get_attribute_value(attr), dtype=np.int64)
                return array, onnx.TensorProto.INT64
        if node.op_type == "Shape" and (dims := self.static_dims(node.input[0])) is not None:
            start = int(attribute(node, "start", 0))  # type: ignore[call-overload]
            end = int(attribute(node, "end", len(dims)))  # type: ignore[call-overload]
            return np.array(dims[start:end], dtype=np.int64), onnx.TensorProto.INT64
        if node.op_type == "CastLike":
            source = self.value(node.input[0])[0]
            elem_type = self._elem_type[self.resolve(node.input[1])]
            return source.astype(helper.tensor_dtype_to_np_dtype(elem_type)), elem_type
        array = self._run(node)[list(node.output).index(name)]
        return array, helper.np_dtype_to_tensor_dtype(array.dtype)

    def _run(self, node: onnx.NodeProto) -> list[np.ndarray]:
        """Evaluate one node on constant inputs with the ONNX reference evaluator."""
        feeds = {f"i{k}": self.value(v)[0] for k, v in enumerate(node.input) if v}
        single = onnx.NodeProto()
        single.CopyFrom(node)
        del single.input[:]
        del single.output[:]
        single.input.extend(f"i{k}" if v else "" for k, v in enumerate(node.input))
        single.output.extend(f"o{k}" for k in range(len(node.output)))
        graph = helper.make_graph(
            [single], "constant",
            [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(a.dtype),
                                           a.shape) for k, a in feeds.items()],
            [helper.make_empty_tensor_value_info(f"o{k}") for k in range(len(node.output))])
        try:
            evaluator = onnx.reference.ReferenceEvaluator(graph, opsets={"": self.opset})
            return [np.asarray(a) for a in evaluator.run(None, feeds)]
        except Exception as exc:  # the evaluator raises many types for what it cannot run
            raise InputError(f"constant node '{node.name}' ({node.op_type}) cannot be "
                             f"evaluated: {exc}") from exc
