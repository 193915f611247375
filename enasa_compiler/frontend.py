"""Frontend: load ONNX subnets, check them, fix the batch size and infer shapes.

Everything the compiler does later needs static shapes and a model that onnx's
checker accepts, so this is where bad input is caught and turned into one clear
:class:`~enasa_compiler.errors.InputError`. Files are parsed from bytes (never with
a loader that follows paths on its own); tensors stored as external data are only
read from inside the model's folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError
from onnx import external_data_helper

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


def _read_proto(path: Path) -> tuple[onnx.ModelProto, bytes]:
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
    _load_external_data(proto, path.parent, str(path))
    return proto, data


def _load_external_data(proto: onnx.ModelProto, folder: Path, origin: str) -> None:
    """Read external tensors, refusing any location that leaves the model's folder."""
    base = folder.resolve()
    for tensor in external_data_helper._get_all_tensors(proto):
        if not external_data_helper.uses_external_data(tensor):
            continue
        info = external_data_helper.ExternalDataInfo(tensor)
        location = Path(info.location)
        resolved = (base / location).resolve()
        if location.is_absolute() or not resolved.is_relative_to(base):
            raise InputError(
                f"{origin}: tensor '{tensor.name}' points to external data outside the "
                f"model's folder ({info.location}); refused"
            )
        if not resolved.is_file():
            raise InputError(f"{origin}: external data file {info.location} is missing")
    try:
        external_data_helper.load_external_data_for_model(proto, str(base))
    except (OSError, ValueError) as exc:
        raise InputError(f"{origin}: cannot read external data: {exc}") from exc


def _to_proto(source: ModelSource, index: int) -> tuple[onnx.ModelProto, str, str]:
    """Return the proto, a display name and the source hash."""
    if isinstance(source, ir.Model):
        proto = ir.serde.serialize_model(source)
        data = proto.SerializeToString(deterministic=True)
        return proto, f"subnet{index}", hashlib.sha256(data).hexdigest()
    if isinstance(source, onnx.ModelProto):
        data = source.SerializeToString(deterministic=True)
        proto = onnx.ModelProto()
        proto.CopyFrom(source)
        return proto, f"subnet{index}", hashlib.sha256(data).hexdigest()
    path = Path(source)
    proto, data = _read_proto(path)
    return proto, path.stem, hashlib.sha256(data).hexdigest()


def _check(proto: onnx.ModelProto, origin: str) -> None:
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
    try:
        onnx.checker.check_model(proto)
    except (onnx.checker.ValidationError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{origin}: ONNX checker: {first}") from exc


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


def _infer(proto: onnx.ModelProto, origin: str) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True,
                                                 data_prop=True)
    except (onnx.shape_inference.InferenceError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{origin}: shape inference failed: {first}") from exc


_MVM_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _check_mvm_sizes(proto: onnx.ModelProto, origin: str) -> None:
    """Refuse a Conv/Gemm/MatMul whose (inferred) inputs or outputs hold no elements.

    A weight with a zero-size dimension tiles into no crossbar tile at all, which
    nothing after the frontend expects. Other zero-size tensors (an empty ``roi`` of
    a Resize, say) are legitimate and left alone.
    """
    graph = proto.graph
    shapes = {t.name: list(t.dims) for t in graph.initializer}
    for value in (*graph.input, *graph.value_info, *graph.output):
        if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape"):
            shapes.setdefault(value.name, [d.dim_value if d.HasField("dim_value") else -1
                                           for d in value.type.tensor_type.shape.dim])
    for node in graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in _MVM_OP_TYPES:
            continue
        for name in (*node.input, *node.output):
            dims = shapes.get(name)
            if name and dims is not None and 0 in dims:
                raise InputError(
                    f"{origin}: {node.op_type} node '{node.name}' has zero-size tensor "
                    f"'{name}' (shape {dims}); nothing to map onto crossbars"
                )


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
    if batch < 1:
        raise InputError(f"batch size must be at least 1, got {batch}")
    proto, name, digest = _to_proto(source, index)
    origin = str(source) if isinstance(source, str | Path) else name
    _check(proto, origin)
    _fix_batch(proto, batch, origin)
    proto = _infer(proto, origin)
    _check_mvm_sizes(proto, origin)
    try:
        model = ir.serde.deserialize_model(proto)
    except Exception as exc:  # onnx_ir raises several types for malformed protos
        raise InputError(f"{origin}: cannot read the model: {exc}") from exc
    return SubnetModel(name=name, sha256=digest, model=model, arch=_arch(proto))


def load_group(sources: Sequence[ModelSource], *, batch: int = 1) -> list[SubnetModel]:
    """Load the subnets of a group and check they all take the same input.

    Raises:
        InputError: no model given, or input shapes or types that differ between
            subnets (the message names both).

    """
    if not sources:
        raise InputError("no model given; a group needs at least one subnet")
    subnets = [load_subnet(s, batch=batch, index=i) for i, s in enumerate(sources)]
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
