"""Read the models handed to ``validate``: hash them, parse them, fix the batch, infer shapes.

The validator reads the ONNX files itself, with ``onnx`` alone, instead of through the
compiler's frontend and graph passes: what it derives from them must not share a bug
with what produced the plan. A source is read once: its bytes are hashed (as the
frontend records ``subnets[].source_sha256``: the file's bytes, or a proto's
deterministic serialization) and, when the hash matches, parsed from those same bytes.
Tensors stored as external data are read only from inside the model's folder.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from enasa_compiler._text import plural
from enasa_compiler.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["GivenModel", "parse_model", "read_model"]


@dataclass(frozen=True)
class GivenModel:
    """One model as given to ``validate``, hashed but not parsed yet.

    Attributes:
        position: where it was in the list of models.
        label: how messages name it (its path, or its type).
        sha256: hash of its file bytes, or of its deterministic proto bytes.
        data: the bytes to parse, or None when ``proto`` is given.
        proto: the model, when it was given as a proto (or an ``onnx_ir.Model``).
        folder: the folder external data may be read from (files only).

    """

    position: int
    label: str
    sha256: str
    data: bytes | None
    proto: onnx.ModelProto | None
    folder: Path | None


def read_model(model: Any, position: int) -> GivenModel:
    """Hash a path, bytes, ``onnx.ModelProto`` or ``onnx_ir.Model`` as the frontend does.

    Raises:
        InputError: a file that cannot be read, or a value of another type.

    """
    if isinstance(model, bytes):
        return GivenModel(position, "bytes", hashlib.sha256(model).hexdigest(), model, None,
                          None)
    if isinstance(model, str | Path):
        path = Path(model)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read model {model}: {exc.strerror or exc}") from exc
        return GivenModel(position, str(model), hashlib.sha256(data).hexdigest(), data, None,
                          path.parent)
    if not isinstance(model, onnx.ModelProto):
        import onnx_ir

        if not isinstance(model, onnx_ir.Model):
            raise InputError(f"model {position}: expected a path, bytes, onnx.ModelProto or "
                             f"onnx_ir.Model, got {type(model).__name__}")
        model = onnx_ir.serde.serialize_model(model)
    digest = hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()
    return GivenModel(position, type(model).__name__, digest, None, model, None)


def parse_model(given: GivenModel, batch: int) -> onnx.ModelProto:
    """Return the model with its batch dimension set to ``batch`` and shapes inferred.

    The given proto is not changed (a copy is). Output shapes and value infos recorded
    at export are dropped first: they hold the exported batch.

    Raises:
        InputError: not an ONNX model, external data outside its folder, not exactly
            one (non-initializer) input, or shape inference fails.

    """
    origin = f"model {given.position} ({given.label})"
    proto = onnx.ModelProto()
    if given.proto is not None:
        proto.CopyFrom(given.proto)
    else:
        try:
            proto.ParseFromString(given.data or b"")
        except (DecodeError, RuntimeWarning, ValueError) as exc:
            raise InputError(f"{origin}: not an ONNX model (protobuf does not parse)") from exc
    if not proto.HasField("graph"):
        raise InputError(f"{origin}: not an ONNX model (no graph)")
    _load_external_data(proto, given.folder, origin)
    _set_batch(proto, batch, origin)
    try:
        return onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True,
                                                 data_prop=True)
    except (onnx.shape_inference.InferenceError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{origin}: shape inference failed: {first}") from exc


def _external_tensors(proto: onnx.ModelProto) -> list[onnx.TensorProto]:
    tensors = list(proto.graph.initializer)
    for node in proto.graph.node:
        for attr in node.attribute:
            tensors.extend([attr.t] if attr.HasField("t") else attr.tensors)
    return [t for t in tensors if external_data_helper.uses_external_data(t)]


def _load_external_data(proto: onnx.ModelProto, folder: Path | None, origin: str) -> None:
    """Read external tensors into ``proto``, refusing locations outside ``folder``."""
    tensors = _external_tensors(proto)
    if not tensors:
        return
    if folder is None:
        raise InputError(f"{origin}: has external data but was not given as a file")
    base = folder.resolve()
    for tensor in tensors:
        location = Path(external_data_helper.ExternalDataInfo(tensor).location)
        resolved = (base / location).resolve()
        if location.is_absolute() or not resolved.is_relative_to(base):
            raise InputError(f"{origin}: tensor '{tensor.name}' points to external data "
                             f"outside the model's folder ({location}); refused")
        try:
            external_data_helper.load_external_data_for_tensor(tensor, str(base))
        except (OSError, ValueError) as exc:
            raise InputError(f"{origin}: cannot read external data: {exc}") from exc
        tensor.data_location = onnx.TensorProto.DEFAULT
        del tensor.external_data[:]


def _set_batch(proto: onnx.ModelProto, batch: int, origin: str) -> None:
    graph = proto.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in initializers]
    if len(inputs) != 1:
        raise InputError(f"{origin}: a subnet takes one input, this one takes "
                         f"{plural(len(inputs), 'input')}")
    tensor_type = inputs[0].type.tensor_type
    if not tensor_type.HasField("shape") or not tensor_type.shape.dim:
        raise InputError(f"{origin}: input '{inputs[0].name}' has no batch dimension")
    first = tensor_type.shape.dim[0]
    first.Clear()
    first.dim_value = batch
    for output in graph.output:
        if output.type.HasField("tensor_type"):
            output.type.tensor_type.ClearField("shape")
    del graph.value_info[:]
