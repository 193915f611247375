"""Frontend: load ONNX subnets, check them, fix the batch size and infer shapes.

Everything the compiler does later needs static shapes and a model that onnx's
checker accepts, so this is where bad input is caught and turned into one clear
:class:`~enasa_compiler.errors.InputError`. Files are parsed from bytes (never with
a loader that follows paths on its own); tensors stored as external data are only
read from inside the model's folder.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError, Message
from onnx import external_data_helper, numpy_helper

from enasa_compiler import budgets
from enasa_compiler._gc import collector_paused
from enasa_compiler.errors import InputError, UnsupportedModelError

logger = logging.getLogger(__name__)

__all__ = ["MIN_OPSET", "ModelSource", "SubnetModel", "load_group", "load_subnet"]

MIN_OPSET = 13
_MAX_MODEL_BYTES = 2 << 30
_MAX_DIM = 1 << 24
ModelSource = str | Path | onnx.ModelProto | ir.Model


@dataclass(frozen=True)
class SubnetModel:
    """One subnet, checked, batch fixed and shapes inferred.

    Attributes:
        name: display name (file stem, or ``subnet<i>``).
        sha256: hash of the source file bytes (or of the serialized proto).
        model: the subnet as an ``onnx_ir`` model.
        arch: the architecture recorded in its metadata (``enasa.arch``), if any.

    """

    name: str
    sha256: str
    model: ir.Model
    arch: tuple[int, ...] | None


def _read_proto(path: Path) -> tuple[onnx.ModelProto, bytes, bool]:
    """Parse a model file; also return its bytes and whether external data was loaded."""
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such file") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    if size == 0:
        raise InputError(f"{path}: empty file, not an ONNX model")
    if size > _MAX_MODEL_BYTES:
        raise InputError(f"{path}: larger than 2 GiB; store weights as external data")
    data = path.read_bytes()
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise InputError(f"{path}: not an ONNX model (protobuf does not parse)") from exc
    if not proto.HasField("graph"):
        raise InputError(f"{path}: not an ONNX model (no graph)")
    loaded = _load_external_data(proto, path.parent, str(path))
    return proto, data, loaded


def _load_external_data(proto: onnx.ModelProto, folder: Path, origin: str) -> bool:
    """Read external tensors, refusing any location that leaves the model's folder.

    Each tensor's size comes from its dims and data type; only that many bytes are
    read, at the declared offset, after checking the memory budget and the file's
    length, so a small tensor pointing into a huge (or sparse) file reads its own
    bytes and nothing else. onnx's loader is not used: it reads to the end of the file
    when no length is given and raises bare exceptions on malformed entries.

    Returns:
        Whether the model has external tensors (now loaded into the proto).

    """
    external = [tensor for tensor in external_data_helper._get_all_tensors(proto)
                if external_data_helper.uses_external_data(tensor)]
    if not external:
        return False
    base = folder.resolve()
    for tensor in external:
        _read_external_tensor(tensor, base, origin)
    return True


_EXTERNAL_KEYS = frozenset({"location", "offset", "length", "checksum", "basepath"})
# Types stored two elements per byte (onnx packs 4-bit types).
_PACKED_4BIT = frozenset(getattr(onnx.TensorProto, name) for name in
                         ("INT4", "UINT4", "FLOAT4E2M1") if hasattr(onnx.TensorProto, name))


@functools.lru_cache(maxsize=64)
def _itemsize(data_type: int) -> int:
    return int(onnx.helper.tensor_dtype_to_np_dtype(data_type).itemsize)


def _tensor_bytes(tensor: onnx.TensorProto, origin: str) -> int:
    """Bytes the raw data of ``tensor`` must hold, from its dims and data type."""
    what = f"{origin}: tensor '{tensor.name}'"
    if tensor.data_type == onnx.TensorProto.STRING:
        raise InputError(f"{what} is a string tensor stored as external data; refused")
    try:
        itemsize = _itemsize(tensor.data_type)
    except (KeyError, ValueError, TypeError) as exc:
        raise InputError(f"{what} has unknown data type {tensor.data_type}") from exc
    if any(d < 0 for d in tensor.dims):
        raise InputError(f"{what} has a negative dimension {list(tensor.dims)}")
    elements = math.prod(tensor.dims)
    declared = (elements + 1) // 2 if tensor.data_type in _PACKED_4BIT else elements * itemsize
    budgets.check_bytes(what, declared)
    return declared


def _external_entry(tensor: onnx.TensorProto, origin: str) -> tuple[str, int, int | None]:
    """Return the location, offset and declared length of an external tensor, checked."""
    what = f"{origin}: tensor '{tensor.name}'"
    entries = {entry.key: entry.value for entry in tensor.external_data}
    for key in sorted(set(entries) - _EXTERNAL_KEYS):
        logger.info("%s: ignoring unknown external-data key '%s'", what, key[:64])
    location = entries.get("location", "")
    if not location or "\0" in location:
        raise InputError(f"{what} has an empty or malformed external data location")
    numbers: dict[str, int | None] = {}
    for key in ("offset", "length"):
        text = entries.get(key)
        if text is None:
            numbers[key] = None
            continue
        if not text.isascii() or not text.isdigit() or len(text) > 20:
            raise InputError(f"{what}: external data {key} must be a non-negative integer, "
                             f"got {text[:40]!r}")
        numbers[key] = int(text)
    return location, numbers["offset"] or 0, numbers["length"]


def _read_external_tensor(tensor: onnx.TensorProto, base: Path, origin: str) -> None:
    """Load one external tensor's bytes into ``tensor`` (which then holds raw data)."""
    location, offset, length = _external_entry(tensor, origin)
    path = Path(location)
    resolved = (base / path).resolve()
    if path.is_absolute() or not resolved.is_relative_to(base):
        raise InputError(
            f"{origin}: tensor '{tensor.name}' points to external data outside the "
            f"model's folder ({location}); refused"
        )
    if not resolved.is_file():
        raise InputError(f"{origin}: external data file {location} is missing")
    needed = _tensor_bytes(tensor, origin)
    if length is not None and length != needed:
        raise InputError(f"{origin}: tensor '{tensor.name}' declares {length} bytes of "
                         f"external data but its shape {list(tensor.dims)} needs {needed}")
    try:
        with resolved.open("rb") as handle:
            available = os.fstat(handle.fileno()).st_size
            if offset + needed > available:
                raise InputError(f"{origin}: tensor '{tensor.name}' needs bytes "
                                 f"{offset}..{offset + needed} of {location}, which holds "
                                 f"{available}")
            handle.seek(offset)
            data = handle.read(needed)
    except OSError as exc:
        raise InputError(f"{origin}: cannot read external data {location}: "
                         f"{exc.strerror or exc}") from exc
    if len(data) != needed:
        raise InputError(f"{origin}: external data {location} ended early")
    tensor.raw_data = data
    del tensor.external_data[:]
    tensor.data_location = onnx.TensorProto.DEFAULT


@dataclass(frozen=True)
class _Parsed:
    """A source parsed into a proto, with its display name and source hash.

    ``serialized`` holds bytes that parse to exactly ``proto``, so the checker can be
    handed them without serializing the model again; None when there are none (its
    external data was loaded after parsing).
    """

    proto: onnx.ModelProto
    name: str
    sha256: str
    serialized: bytes | None


def _to_proto(source: ModelSource, index: int) -> _Parsed:
    """Return the proto, a display name, the source hash and the bytes it came from."""
    if isinstance(source, ir.Model):
        proto = ir.serde.serialize_model(source)
        data = proto.SerializeToString(deterministic=True)
        return _Parsed(proto, f"subnet{index}", hashlib.sha256(data).hexdigest(), data)
    if isinstance(source, onnx.ModelProto):
        data = source.SerializeToString(deterministic=True)
        proto = onnx.ModelProto()
        proto.CopyFrom(source)
        return _Parsed(proto, f"subnet{index}", hashlib.sha256(data).hexdigest(), data)
    path = Path(source)
    proto, data, loaded_external = _read_proto(path)
    return _Parsed(proto, path.stem, hashlib.sha256(data).hexdigest(),
                   None if loaded_external else data)


@dataclass(frozen=True)
class _Checked:
    """A source parsed and accepted by the checker; see :func:`_read_and_check`."""

    proto: onnx.ModelProto
    name: str
    sha256: str
    origin: str


def _read_and_check(source: ModelSource, index: int) -> _Checked:
    """Parse a source and run the checks on it as given (before its batch is fixed)."""
    parsed = _to_proto(source, index)
    origin = str(source) if isinstance(source, str | Path) else parsed.name
    _check(parsed.proto, origin, parsed.serialized)
    return _Checked(parsed.proto, parsed.name, parsed.sha256, origin)


def _check(proto: onnx.ModelProto, origin: str, serialized: bytes | None = None) -> None:
    if len(proto.graph.node) == 0:
        raise InputError(f"{origin}: the graph has no nodes")
    opsets = {o.domain: o.version for o in proto.opset_import}
    default_opset = opsets.get("", opsets.get("ai.onnx"))
    if default_opset is None:
        raise InputError(f"{origin}: no opset import for the default ONNX domain")
    if default_opset < MIN_OPSET:
        raise UnsupportedModelError(
            f"{origin}: opset {default_opset} is older than {MIN_OPSET}; re-export with "
            f"opset_version >= {MIN_OPSET}"
        )
    if default_opset > onnx.defs.onnx_opset_version():
        raise UnsupportedModelError(
            f"{origin}: opset {default_opset} is newer than {onnx.defs.onnx_opset_version()}, "
            "the newest this installation knows"
        )
    if len(proto.graph.output) == 0:
        raise InputError(f"{origin}: the graph has no outputs; a subnet must produce one")
    _check_node_names(proto, origin)
    _check_weights(proto, origin)
    try:
        _run_checker(proto, serialized)
    except (onnx.checker.ValidationError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{origin}: ONNX checker: {first}") from exc


def _check_node_names(proto: onnx.ModelProto, origin: str) -> None:
    """Refuse two nodes of one name: operators, plans and reports are keyed by it."""
    seen: set[str] = set()
    for node in proto.graph.node:
        if node.name and node.name in seen:
            raise InputError(f"{origin}: two nodes are named '{node.name[:80]}'; node names "
                             "must be unique")
        seen.add(node.name)


_FLOAT_DTYPES: dict[int, np.dtype[np.floating[Any]]] = {
    onnx.TensorProto.FLOAT: np.dtype("<f4"),
    onnx.TensorProto.DOUBLE: np.dtype("<f8"),
    onnx.TensorProto.FLOAT16: np.dtype("<f2"),
}
_FLOAT_TYPES = frozenset(_FLOAT_DTYPES)


def _check_weights(proto: onnx.ModelProto, origin: str) -> None:
    """Check every initializer's declared size, its bytes and its values.

    The size a tensor declares (dims times its type's width) must fit the memory
    budget, and raw bytes must be exactly that long: onnx's checker refuses too few
    but accepts too many, which onnxruntime then refuses at ``--execute``. A NaN or
    infinite weight cannot be programmed into a cell: it would compile into a plan
    whose outputs are NaN, which a ``max()`` over errors reads as zero.
    """
    for tensor in proto.graph.initializer:
        what = f"{origin}: weight '{tensor.name}'"
        if tensor.data_type == onnx.TensorProto.STRING or any(d < 0 for d in tensor.dims):
            continue  # the checker names these
        needed = _tensor_bytes(tensor, origin)
        # Each read of ``raw_data`` copies the bytes out of the message: read it once.
        raw = tensor.raw_data if tensor.HasField("raw_data") else None
        if raw is not None and len(raw) > needed:
            raise InputError(f"{what} holds {len(raw)} bytes of raw data but "
                             f"its shape {list(tensor.dims)} needs {needed}")
        if tensor.data_type not in _FLOAT_TYPES or needed == 0:
            continue
        if raw is not None:
            if len(raw) < needed:
                continue  # too few bytes: the checker's message says so
            values = np.frombuffer(raw, dtype=_FLOAT_DTYPES[tensor.data_type])
        else:
            try:
                values = numpy_helper.to_array(tensor)
            except (ValueError, TypeError):
                continue  # too few values: the checker's message says so
        # NaN and infinities carry through min and max, which allocate nothing.
        if values.size and not (np.isfinite(values.min()) and np.isfinite(values.max())):
            raise InputError(f"{what} holds NaN or infinite values")


def _run_checker(proto: onnx.ModelProto, serialized: bytes | None) -> None:
    """Run the ONNX checker, on the bytes the proto was parsed from when there are some.

    ``check_model(proto)`` serializes the whole model, weights included, only for the
    C++ checker to parse it again; the file's own bytes say the same.
    """
    if serialized is not None:
        try:
            onnx.checker.check_model(serialized)
            return
        except ValueError:
            # C++ protobuf refused bytes that Python's parser accepted: check the proto
            # as parsed, as if the bytes had never been kept.
            pass
    onnx.checker.check_model(proto)


def _fix_batch(proto: onnx.ModelProto, batch: int, origin: str) -> None:
    initializer_names = {t.name for t in proto.graph.initializer}
    inputs = [v for v in proto.graph.input if v.name not in initializer_names]
    if len(inputs) != 1:
        raise UnsupportedModelError(
            f"{origin}: a subnet takes exactly one input, this one takes {len(inputs)}"
        )
    value = inputs[0]
    if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
        raise InputError(f"{origin}: input '{value.name}' has no shape")
    dims = value.type.tensor_type.shape.dim
    if len(dims) == 0:
        raise InputError(f"{origin}: input '{value.name}' is a scalar")
    dims[0].Clear()
    dims[0].dim_value = batch
    for axis, dim in enumerate(dims[1:], start=1):
        if not dim.HasField("dim_value"):
            label = dim.dim_param or "?"
            raise InputError(
                f"{origin}: input '{value.name}' has dynamic dimension {axis} ('{label}'); "
                "export with a static input size"
            )
        if dim.dim_value <= 0 or dim.dim_value > _MAX_DIM:
            raise InputError(
                f"{origin}: input '{value.name}' dimension {axis} is {dim.dim_value}, "
                f"outside 1..{_MAX_DIM}"
            )
    # Output shapes were recorded for the exported batch; let inference recompute them.
    for output in proto.graph.output:
        if output.type.HasField("tensor_type"):
            output.type.tensor_type.ClearField("shape")
    del proto.graph.value_info[:]


def _infer(proto: onnx.ModelProto, origin: str, subgraphs: bool) -> None:
    """Infer shapes into ``proto`` in place, exactly as ``onnx.shape_inference`` would.

    Shape inference runs on a serialized model, and serializing the weights, parsing
    them in C++ and parsing the result back costs more than the inference itself. So it
    runs on a copy without the bytes of the weights it only reads the type of, and
    what it wrote (everything but the initializers, which it never changes, and, in a
    graph without subgraphs, the nodes) is copied back into ``proto``. ``subgraphs``:
    whether the graph holds any (:func:`_has_subgraphs`).
    """
    try:
        inferred = onnx.shape_inference.infer_shapes(
            _without_weight_bytes(proto, subgraphs).SerializeToString(), check_type=True,
            strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{origin}: shape inference failed: {first}") from exc
    _copy_fields(inferred, proto, skip={"graph"})
    # Inference writes value infos and output types; it changes a node only through the
    # value infos of its subgraphs, so nodes are copied back only where there are any.
    skip = {"initializer"} if subgraphs else {"initializer", "node"}
    _copy_fields(inferred.graph, proto.graph, skip=skip)


# Inputs whose shape inference reads the type only, never the values (for Conv, Gemm and
# MatMul the weights and biases; for BatchNormalization scale, bias, mean and variance).
_TYPE_ONLY_INPUTS = {
    "Conv": frozenset({1, 2}),
    "Gemm": frozenset({1, 2}),
    "MatMul": frozenset({0, 1}),
    "BatchNormalization": frozenset({1, 2, 3, 4}),
}
_STRIP_MIN_BYTES = 1024


def _has_subgraphs(graph: onnx.GraphProto) -> bool:
    return any(attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
               for node in graph.node for attr in node.attribute)


def _without_weight_bytes(proto: onnx.ModelProto, subgraphs: bool) -> onnx.ModelProto:
    """Return a copy of ``proto`` whose large type-only initializers have no bytes.

    Nothing is stripped from a graph with subgraphs, whose nodes could read an outer
    initializer's values.
    """
    graph = proto.graph
    type_only: dict[str, bool] = {}  # initializer name -> read for its type only
    if not subgraphs:
        for node in graph.node:
            positions = (_TYPE_ONLY_INPUTS.get(node.op_type, frozenset())
                         if node.domain in ("", "ai.onnx") else frozenset())
            for position, name in enumerate(node.input):
                type_only[name] = type_only.get(name, True) and position in positions
        for value in graph.output:
            type_only[value.name] = False
    stripped = onnx.ModelProto()
    _copy_fields(proto, stripped, skip={"graph"})
    stripped.graph.SetInParent()
    _copy_fields(graph, stripped.graph, skip={"initializer"})
    for tensor in graph.initializer:
        if (type_only.get(tensor.name) and tensor.HasField("raw_data")
                and len(tensor.raw_data) >= _STRIP_MIN_BYTES):
            _copy_fields(tensor, stripped.graph.initializer.add(), skip={"raw_data"})
        else:
            stripped.graph.initializer.append(tensor)
    return stripped


def _copy_fields(source: Message, target: Message, *, skip: set[str]) -> None:
    """Give ``target`` every field of ``source`` except those in ``skip`` (it keeps them)."""
    for field in source.DESCRIPTOR.fields:
        if field.name not in skip:
            target.ClearField(field.name)
    for field, value in source.ListFields():
        if field.name in skip:
            continue
        if field.is_repeated:
            getattr(target, field.name).extend(value)
        elif field.message_type is not None:
            getattr(target, field.name).CopyFrom(value)
        else:
            setattr(target, field.name, value)


_MVM_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _check_mvm_sizes(proto: onnx.ModelProto, origin: str) -> None:
    """Refuse a Conv/Gemm/MatMul whose (inferred) inputs or outputs hold no elements.

    A weight with a zero-size dimension tiles into no crossbar tile at all, which
    nothing after the frontend expects. Other zero-size tensors (an empty ``roi`` of
    a Resize, say) are legitimate and left alone.
    """
    graph = proto.graph
    mvm_nodes = [node for node in graph.node
                 if node.domain in ("", "ai.onnx") and node.op_type in _MVM_OP_TYPES]
    wanted = {name for node in mvm_nodes for name in (*node.input, *node.output)}
    # An initializer's dims win over a value info's; the first value info of a name wins.
    shapes = {t.name: list(t.dims) for t in graph.initializer if t.name in wanted}
    for value in (*graph.input, *graph.value_info, *graph.output):
        if (value.name in wanted and value.name not in shapes
                and value.type.HasField("tensor_type")
                and value.type.tensor_type.HasField("shape")):
            shapes[value.name] = [d.dim_value if d.HasField("dim_value") else -1
                                  for d in value.type.tensor_type.shape.dim]
    for node in mvm_nodes:
        for name in (*node.input, *node.output):
            dims = shapes.get(name)
            if name and dims is not None and 0 in dims:
                raise InputError(
                    f"{origin}: {node.op_type} node '{node.name}' has zero-size tensor "
                    f"'{name}' (shape {dims}); nothing to map onto crossbars"
                )


def _check_value_sizes(proto: onnx.ModelProto, origin: str) -> None:
    """Refuse a value whose inferred size (at the compiled batch) is over the budget.

    A Tile, Pad or Expand can ask for hundreds of GiB from a model of a few hundred
    bytes; compiling only prices it, but ``simulate --execute`` and onnxruntime would
    allocate it, so it is refused here, where the shapes are first known.
    """
    graph = proto.graph
    limit = budgets.current().max_memory_bytes
    for value in (*graph.value_info, *graph.output):
        tensor_type = value.type.tensor_type
        if not value.type.HasField("tensor_type") or not tensor_type.HasField("shape"):
            continue
        dims = [d.dim_value for d in tensor_type.shape.dim if d.HasField("dim_value")]
        if not dims or tensor_type.elem_type == onnx.TensorProto.STRING:
            continue
        try:
            itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).itemsize
        except (KeyError, ValueError, TypeError):
            continue
        size = float(math.prod(dims)) * itemsize
        if size > limit:  # the message is built only for a value that fails
            budgets.check_bytes(f"{origin}: value '{value.name[:80]}' (shape {dims})", size)


def _arch(proto: onnx.ModelProto) -> tuple[int, ...] | None:
    for prop in proto.metadata_props:
        if prop.key == "enasa.arch":
            try:
                value = json.loads(prop.value)
            except (ValueError, RecursionError):  # malformed, huge or nested too deeply
                return None
            if isinstance(value, list) and all(isinstance(v, int) for v in value):
                return tuple(value)
    return None


def load_subnet(source: ModelSource, *, batch: int = 1, index: int = 0) -> SubnetModel:
    """Load one subnet: parse, check, fix the batch size, infer shapes.

    Raises:
        InputError: not ONNX, fails the checker, dynamic input shape, external data
            outside its folder, shape inference fails, or a Conv/Gemm/MatMul with a
            zero-size tensor.
        UnsupportedModelError: opset below 13, or not exactly one input.

    """
    _check_batch(batch)
    return _build(_read_and_check(source, index), batch)


def _check_batch(batch: int) -> None:
    if not 1 <= batch <= _MAX_DIM:
        raise InputError(f"batch size must be between 1 and {_MAX_DIM}, got {batch}")


def _build(checked: _Checked, batch: int) -> SubnetModel:
    """Fix a checked subnet's batch size, infer its shapes and build its model."""
    proto, origin = checked.proto, checked.origin
    _fix_batch(proto, batch, origin)
    subgraphs = _has_subgraphs(proto.graph)  # asked by three steps: look once
    _infer(proto, origin, subgraphs)
    _check_value_sizes(proto, origin)
    _check_mvm_sizes(proto, origin)
    static = _take_static_value_infos(proto, subgraphs)
    try:
        model = ir.serde.deserialize_model(proto)
    except Exception as exc:  # onnx_ir raises several types for malformed protos
        raise InputError(f"{origin}: cannot read the model: {exc}") from exc
    _give_static_value_infos(model.graph, static)
    return SubnetModel(name=checked.name, sha256=checked.sha256, model=model,
                       arch=_arch(proto))


_StaticInfo = tuple[tuple[int, ...], int]
"""A value info with nothing but a tensor type and static dims: (dims, element type)."""


def _take_static_value_infos(proto: onnx.ModelProto,
                             subgraphs: bool) -> dict[str, _StaticInfo]:
    """Remove the plain static value infos from ``proto``'s graph and return them.

    onnx_ir reads a value info through generic, per-dimension code, which is most of
    the time it takes to read a full-size subnet; after shape inference nearly every
    value info is a tensor of static dims and nothing else, which
    :func:`_give_static_value_infos` sets directly. Others stay in the graph for onnx_ir
    to read. A graph with subgraphs is left as it is.
    """
    graph = proto.graph
    if subgraphs:
        return {}
    static: dict[str, _StaticInfo] = {}
    for info in graph.value_info:
        if info.doc_string or info.metadata_props or not info.type.HasField("tensor_type"):
            continue
        tensor_type = info.type.tensor_type
        if (info.type.denotation or not tensor_type.elem_type
                or not tensor_type.HasField("shape") or info.name in static):
            continue
        dims = []
        for dim in tensor_type.shape.dim:
            if not dim.HasField("dim_value") or dim.denotation:
                break
            dims.append(dim.dim_value)
        else:
            static[info.name] = (tuple(dims), tensor_type.elem_type)
    if static:
        kept = [info for info in graph.value_info if info.name not in static]
        del graph.value_info[:]
        graph.value_info.extend(kept)
    return static


def _give_static_value_infos(graph: ir.Graph, static: dict[str, _StaticInfo]) -> None:
    """Set the type and shape :func:`_take_static_value_infos` took on each node output."""
    if not static:
        return
    for node in graph:
        for value in node.outputs:
            info = static.get(value.name or "")
            if info is not None:
                dims, elem_type = info
                value.shape = ir.Shape(dims, frozen=True)
                value.type = ir.TensorType(_data_type(elem_type))


@functools.lru_cache(maxsize=64)
def _data_type(elem_type: int) -> ir.DataType:
    return ir.DataType(elem_type)


def load_group(sources: Sequence[ModelSource], *, batch: int = 1) -> list[SubnetModel]:
    """Load the subnets of a group and check they all take the same input.

    Raises:
        InputError: no model given, or input shapes or types that differ between
            subnets (the message names both); and what :func:`load_subnet` raises, for
            the first subnet that fails.

    """
    if not sources:
        raise InputError("no model given; a group needs at least one subnet")
    _check_batch(batch)
    subnets = []
    # Reading and hashing a file release the GIL (onnx's checker and shape inference do
    # not), so a second thread reads and checks the next file while this one infers
    # shapes and builds the current one. Errors come in the order of a plain loop.
    with (collector_paused(),
          ThreadPoolExecutor(max_workers=1, thread_name_prefix="enasa-read") as reader):
        pending = reader.submit(_read_and_check, sources[0], 0)
        for index in range(len(sources)):
            checked = pending.result()
            if index + 1 < len(sources):
                pending = reader.submit(_read_and_check, sources[index + 1], index + 1)
            subnets.append(_build(checked, batch))
    first = subnets[0].model.graph.inputs[0]
    for subnet in subnets[1:]:
        value = subnet.model.graph.inputs[0]
        if value.shape != first.shape or value.dtype != first.dtype:
            raise InputError(
                f"subnets take different inputs: {subnets[0].name} takes "
                f"{_describe(first)} but {subnet.name} takes {_describe(value)}; a group "
                "shares one input"
            )
    return subnets


def _describe(value: ir.Value) -> str:
    dims = "x".join(str(d) for d in value.shape) if value.shape is not None else "?"
    dtype = value.dtype.name.lower() if value.dtype is not None else "?"
    return f"{dtype}[{dims}]"
