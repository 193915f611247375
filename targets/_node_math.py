"""ONNX node semantics for the functional executor: unrolling, im2col and digital ops.

Lowering decides how a Conv/Gemm/MatMul becomes a weight matrix (``passes/lower.py``);
the executor must feed that matrix the matching input vectors, so the unrolling and
the im2col live together here and follow the same order (channel-major, then kernel
row, then kernel column). Digital operators run through
``onnx.reference.ReferenceEvaluator`` on one-node models, except a few hot ones
(ReLU, depthwise/grouped convs) that numpy does faster.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir
from onnx.reference import ReferenceEvaluator

from enasa_compiler.errors import UnsupportedModelError

logger = logging.getLogger(__name__)

__all__ = [
    "ConvGeometry",
    "DigitalNodeRunner",
    "constant_array",
    "col2im",
    "conv_float",
    "conv_geometry",
    "conv_transpose_geometry",
    "im2col",
    "unrolled_weights",
]

Kernel = Callable[[Sequence[np.ndarray | None]], list[np.ndarray]]


@dataclass(frozen=True)
class ConvGeometry:
    """A 2-D conv's window: kernel, strides, dilations and (top, left, bottom, right) pads."""

    kernel: tuple[int, int]
    strides: tuple[int, int]
    dilations: tuple[int, int]
    pads: tuple[int, int, int, int]
    groups: int


def constant_array(value: ir.Value | None) -> np.ndarray | None:
    """Return the contents of a constant input (initializer or Constant), else ``None``."""
    # As passes/_common.constant_tensor: a graph input that has an initializer can be fed.
    if value is None or value.is_graph_input():
        return None
    try:
        tensor = ir.convenience.get_const_tensor(value)
    except ValueError:
        return None
    return None if tensor is None else np.asarray(tensor.numpy())


def _same_pads(size: int, kernel: int, stride: int, dilation: int, upper: bool) -> tuple[int,
                                                                                          int]:
    out = -(-size // stride)
    total = max(0, (out - 1) * stride + (kernel - 1) * dilation + 1 - size)
    small, large = total // 2, total - total // 2
    return (small, large) if upper else (large, small)


def conv_geometry(node: ir.Node, weight_shape: Sequence[int], spatial: Sequence[int]
                  ) -> ConvGeometry:
    """Read a Conv node's window attributes, resolving ``auto_pad``.

    Args:
        node: the Conv node.
        weight_shape: ``(Cout, Cin/g, Kh, Kw)``.
        spatial: the input's ``(H, W)``.

    """
    attrs = node.attributes
    kernel = (int(weight_shape[2]), int(weight_shape[3]))
    strides = tuple(attrs.get_ints("strides", (1, 1)) or (1, 1))
    dilations = tuple(attrs.get_ints("dilations", (1, 1)) or (1, 1))
    auto_pad = attrs.get_string("auto_pad", "NOTSET") or "NOTSET"
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        upper = auto_pad == "SAME_UPPER"
        (top, bottom), (left, right) = (
            _same_pads(spatial[i], kernel[i], strides[i], dilations[i], upper) for i in (0, 1))
        pads = (top, left, bottom, right)
    elif auto_pad == "VALID":
        pads = (0, 0, 0, 0)
    else:
        pads = tuple(attrs.get_ints("pads", (0, 0, 0, 0)) or (0, 0, 0, 0))  # type: ignore[assignment]
    return ConvGeometry(
        kernel=kernel, strides=(int(strides[0]), int(strides[1])),
        dilations=(int(dilations[0]), int(dilations[1])),
        pads=(int(pads[0]), int(pads[1]), int(pads[2]), int(pads[3])),
        groups=int(attrs.get_int("group", 1) or 1),
    )


def _windows(x: np.ndarray, geometry: ConvGeometry) -> tuple[np.ndarray, int, int]:
    """Pad the input; return it with the output height and width."""
    top, left, bottom, right = geometry.pads
    padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    (kh, kw), (sh, sw), (dh, dw) = geometry.kernel, geometry.strides, geometry.dilations
    out_h = (padded.shape[2] - dh * (kh - 1) - 1) // sh + 1
    out_w = (padded.shape[3] - dw * (kw - 1) - 1) // sw + 1
    return padded, out_h, out_w


def _window(padded: np.ndarray, i: int, j: int, out_h: int, out_w: int,
            geometry: ConvGeometry) -> np.ndarray:
    (sh, sw), (dh, dw) = geometry.strides, geometry.dilations
    return padded[:, :, i * dh: i * dh + sh * (out_h - 1) + 1: sh,
                  j * dw: j * dw + sw * (out_w - 1) + 1: sw]


def im2col(x: np.ndarray, geometry: ConvGeometry) -> tuple[np.ndarray, tuple[int, int]]:
    """Unfold ``(N, C, H, W)`` into one row per output pixel, as lowering unrolls weights.

    Returns:
        ``(vectors, (Hout, Wout))`` with ``vectors`` of shape ``(N*Hout*Wout, C*Kh*Kw)``,
        pixels in ``(n, h, w)`` order and columns channel-major, then kernel row, then
        kernel column.

    """
    padded, out_h, out_w = _windows(x, geometry)
    n, c = x.shape[:2]
    kh, kw = geometry.kernel
    cols = np.empty((n, out_h, out_w, c, kh, kw), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            window = _window(padded, i, j, out_h, out_w, geometry)
            cols[..., i, j] = window.transpose(0, 2, 3, 1)
    return cols.reshape(n * out_h * out_w, c * kh * kw), (out_h, out_w)


def conv_transpose_geometry(node: ir.Node, weight_shape: Sequence[int]
                            ) -> tuple[ConvGeometry, tuple[int, int]]:
    """Read a ConvTranspose node's window and its ``output_padding``.

    Lowering refuses ``auto_pad`` and ``output_shape``, so the pads are explicit here.
    """
    attrs = node.attributes
    kernel = (int(weight_shape[2]), int(weight_shape[3]))
    strides = tuple(attrs.get_ints("strides", (1, 1)) or (1, 1))
    dilations = tuple(attrs.get_ints("dilations", (1, 1)) or (1, 1))
    pads = tuple(attrs.get_ints("pads", (0, 0, 0, 0)) or (0, 0, 0, 0))
    output_padding = tuple(attrs.get_ints("output_padding", (0, 0)) or (0, 0))
    geometry = ConvGeometry(
        kernel=kernel, strides=(int(strides[0]), int(strides[1])),
        dilations=(int(dilations[0]), int(dilations[1])),
        pads=(int(pads[0]), int(pads[1]), int(pads[2]), int(pads[3])),
        groups=int(attrs.get_int("group", 1) or 1))
    return geometry, (int(output_padding[0]), int(output_padding[1]))


def col2im(products: np.ndarray, batch: int, in_hw: tuple[int, int], out_channels: int,
           geometry: ConvGeometry, output_padding: tuple[int, int]) -> np.ndarray:
    """Scatter a ConvTranspose's per-input-pixel products onto its output and add them.

    Args:
        products: ``(N*H*W, Cout/g*Kh*Kw)``, one row per input pixel in ``(n, h, w)``
            order, columns channel-major then kernel row then kernel column (the
            unrolled weight's order).
        batch: ``N``.
        in_hw: the input's ``(H, W)``.
        out_channels: ``Cout/g`` of this group.
        geometry: strides, dilations and pads (top, left, bottom, right).
        output_padding: extra rows and columns at the bottom and right.

    Returns:
        ``(N, Cout/g, Hout, Wout)`` with ``Hout = (H-1)*sh + (Kh-1)*dh + 1 + out_pad
        - pad_top - pad_bottom`` (and likewise for the width), as ONNX defines it.

    """
    (h, w), (kh, kw) = in_hw, geometry.kernel
    (sh, sw), (dh, dw) = geometry.strides, geometry.dilations
    full_h = (h - 1) * sh + (kh - 1) * dh + 1 + output_padding[0]
    full_w = (w - 1) * sw + (kw - 1) * dw + 1 + output_padding[1]
    parts = products.reshape(batch, h, w, out_channels, kh, kw)
    out = np.zeros((batch, out_channels, full_h, full_w), dtype=products.dtype)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + sh * (h - 1) + 1, sh)
            cols = slice(j * dw, j * dw + sw * (w - 1) + 1, sw)
            out[:, :, rows, cols] += parts[..., i, j].transpose(0, 3, 1, 2)
    top, left, bottom, right = geometry.pads
    return out[:, :, top: full_h - bottom, left: full_w - right]


def unrolled_weights(node: ir.Node) -> list[np.ndarray]:
    """Return the matrices lowering tiled for an MVM node, one per conv group.

    A conv weight ``(Cout, Cin/g, Kh, Kw)`` gives, per group, ``(Cin/g*Kh*Kw, Cout/g)``;
    a ConvTranspose weight ``(Cin, Cout/g, Kh, Kw)`` gives, per group,
    ``(Cin/g, Cout/g*Kh*Kw)``; a Gemm with ``transB`` gives ``W^T``; otherwise the
    ``(K, N)`` weight as is.
    """
    weight = constant_array(node.inputs[1] if len(node.inputs) > 1 else None)
    if weight is None:
        raise UnsupportedModelError(f"node '{node.name}' has no constant weight at input 1")
    weight = weight.astype(np.float64)
    if node.op_type == "Conv":
        groups = node.attributes.get_int("group", 1) or 1
        per_group = weight.shape[0] // groups
        return [weight[g * per_group:(g + 1) * per_group].reshape(per_group, -1).T
                for g in range(groups)]
    if node.op_type == "ConvTranspose":
        groups = node.attributes.get_int("group", 1) or 1
        per_group = weight.shape[0] // groups
        return [weight[g * per_group:(g + 1) * per_group].reshape(per_group, -1)
                for g in range(groups)]
    if node.op_type == "Gemm" and node.attributes.get_int("transB", 0) == 1:
        return [weight.T]
    return [weight]


def conv_float(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
               geometry: ConvGeometry) -> np.ndarray:
    """Compute a grouped 2-D conv in float64 (the digital units' depthwise convs)."""
    x64 = x.astype(np.float64)
    w64 = weight.astype(np.float64)
    cout, cin_group = w64.shape[:2]
    groups = geometry.groups
    kh, kw = geometry.kernel
    if cin_group == 1:
        # Depthwise: output channel o reads input channel o // multiplier.
        padded, out_h, out_w = _windows(x64[:, np.arange(cout) // (cout // groups)], geometry)
        out = np.zeros((x.shape[0], cout, out_h, out_w))
        for i in range(kh):
            for j in range(kw):
                out += (_window(padded, i, j, out_h, out_w, geometry)
                        * w64[:, 0, i, j][None, :, None, None])
    else:
        per_group = cout // groups
        parts = []
        for g in range(groups):
            vectors, (out_h, out_w) = im2col(x64[:, g * cin_group:(g + 1) * cin_group],
                                             geometry)
            matrix = w64[g * per_group:(g + 1) * per_group].reshape(per_group, -1).T
            parts.append((vectors @ matrix).reshape(x.shape[0], out_h, out_w, per_group))
        out = np.concatenate(parts, axis=3).transpose(0, 3, 1, 2)
    if bias is not None:
        out = out + bias.astype(np.float64)[None, :, None, None]
    return out.astype(x.dtype)


class DigitalNodeRunner:
    """Evaluates digital nodes of the group model, building each node's kernel once."""

    def __init__(self, model: ir.Model) -> None:
        self._opsets = [onnx.helper.make_opsetid(domain, version)
                        for domain, version in model.opset_imports.items()]
        self._ir_version = model.ir_version
        self._kernels: dict[str, Kernel] = {}

    def run(self, node: ir.Node, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        """Evaluate ``node`` on its inputs (activations, with constants filled in)."""
        name = node.name or ""
        kernel = self._kernels.get(name)
        if kernel is None:
            kernel = self._build(node)
            self._kernels[name] = kernel
        return kernel(inputs)

    def _build(self, node: ir.Node) -> Kernel:
        if node.op_type == "Relu" and not node.domain:
            return _relu_kernel
        if node.op_type == "Conv" and not node.domain:
            weight = constant_array(node.inputs[1])
            if weight is not None:
                return _conv_kernel(node, weight)
        if node.op_type == "ConvTranspose" and not node.domain:
            # onnx.reference's ConvTranspose ignores ``group``; depthwise ones come here.
            return _conv_transpose_kernel(node)
        return self._reference_kernel(node)

    def _reference_kernel(self, node: ir.Node) -> Kernel:
        present = [(i, v) for i, v in enumerate(node.inputs) if v is not None]
        feeds = [(i, v) for i, v in present if constant_array(v) is None]
        initializers = []
        for i, value in present:
            array = constant_array(value)
            if array is not None:
                # Activations are float64 between operators; a float32 constant beside
                # one (the bias Add after a MatMul) would be a type mismatch.
                initializers.append(onnx.numpy_helper.from_array(_widened(array),
                                                                 _input_name(i)))
        proto = ir.serde.serialize_node(node)
        del proto.input[:]
        proto.input.extend(_input_name(i) if v is not None else "" for i, v in
                           enumerate(node.inputs))
        outputs = [f"out{k}" for k in range(len(node.outputs))]
        del proto.output[:]
        proto.output.extend(outputs)
        graph = onnx.helper.make_graph(
            [proto], "node",
            [onnx.helper.make_tensor_value_info(_input_name(i), _elem_type(v), None)
             for i, v in feeds],
            [onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None)
             for o in outputs],
            initializers)
        model = onnx.helper.make_model(graph, opset_imports=self._opsets,
                                       ir_version=self._ir_version)
        evaluator = ReferenceEvaluator(model)
        names = [_input_name(i) for i, _ in feeds]
        indices = [i for i, _ in feeds]

        def kernel(inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
            feed = {name: _widened(array) for name, i in zip(names, indices, strict=True)
                    if (array := inputs[i]) is not None}
            # A Cast to float32 inside the model must not narrow the activations after it.
            return [_widened(np.asarray(r)) for r in evaluator.run(None, feed)]

        return kernel


def _widened(array: np.ndarray) -> np.ndarray:
    """Return a floating array as float64 (the executor's activation type); else as is."""
    if array.dtype.kind == "f" and array.dtype != np.float64:
        return array.astype(np.float64)
    return array


def _relu_kernel(inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    return [np.maximum(x, 0)]


def _conv_kernel(node: ir.Node, weight: np.ndarray) -> Kernel:
    bias = constant_array(node.inputs[2]) if len(node.inputs) > 2 else None

    def kernel(inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        assert x is not None
        geometry = conv_geometry(node, weight.shape, x.shape[2:])
        fed_bias = inputs[2] if bias is None and len(inputs) > 2 else bias
        return [conv_float(x, weight, fed_bias, geometry)]

    return kernel


def _conv_transpose_kernel(node: ir.Node) -> Kernel:
    weight = constant_array(node.inputs[1])
    if weight is None:
        raise UnsupportedModelError(f"ConvTranspose '{node.name}' has no constant weight")
    matrices = unrolled_weights(node)
    geometry, output_padding = conv_transpose_geometry(node, weight.shape)
    bias = constant_array(node.inputs[2]) if len(node.inputs) > 2 else None

    def kernel(inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
        x = inputs[0]
        assert x is not None
        n, _, h, w = x.shape
        cin = weight.shape[0] // geometry.groups
        parts = []
        for g, matrix in enumerate(matrices):
            vectors = x[:, g * cin:(g + 1) * cin].astype(np.float64).transpose(0, 2, 3, 1)
            parts.append(col2im(vectors.reshape(n * h * w, cin) @ matrix, n, (h, w),
                                weight.shape[1], geometry, output_padding))
        y = np.concatenate(parts, axis=1)
        fed_bias = inputs[2] if bias is None and len(inputs) > 2 else bias
        if fed_bias is not None:
            y = y + fed_bias.astype(np.float64)[None, :, None, None]
        return [y]

    return kernel


def _input_name(index: int) -> str:
    return f"in{index}"


def _elem_type(value: ir.Value) -> int:
    dtype = value.dtype
    return int(dtype) if dtype is not None else onnx.TensorProto.FLOAT
