"""Bring one exported subnet into the canonical form the group passes expect.

The two torch exporters write the same network differently: the legacy (TorchScript)
exporter usually folds BatchNormalization into Conv and leaves Identity nodes, the dynamo
exporter may keep BatchNormalization, build biases from ``Shape``/``Expand``/``CastLike``
chains and emit ``Constant`` nodes. Deduplication compares operators by op type,
attributes and weight contents, so these differences must be gone before two subnets
are compared: after this pass a Conv-BN-ReLU block is a ``Conv`` (with a bias) and a
``Relu``, whichever exporter wrote it.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence

import numpy as np
import onnx
import onnx.reference
import onnx_ir as ir
from onnx_ir.passes import common as common_passes

from ._common import constant_tensor, sort_graph, static_dims

logger = logging.getLogger(__name__)

__all__ = ["CanonicalizePass", "fold_batch_norm"]

_NON_DETERMINISTIC_OPS = frozenset(
    {"RandomUniform", "RandomNormal", "RandomUniformLike", "RandomNormalLike", "Multinomial"}
)
_MAX_SWEEPS = 16


class CanonicalizePass(ir.passes.InPlacePass):
    """Fold BatchNormalization and constants, remove Identity/Dropout and dead code.

    Only the main graph is rewritten; subgraphs of control-flow nodes are left as they
    are (the supernets this project compiles have none).

    Attributes:
        fold_size_limit: Largest number of output elements a folded node may produce.
            Folding a bigger node (a ``ConstantOfShape`` of a feature map, say) would
            bloat the model with a tensor that costs nothing to compute at run time.
        fold_batchnorm: fold BatchNormalization into the Conv before it. The group
            compiler turns this off and folds after merging instead
            (:class:`~.fold_batchnorm.FoldBatchNormPass`), where it can see which
            weights several subnets share.

    """

    def __init__(self, fold_size_limit: int = 10_000_000, fold_batchnorm: bool = True) -> None:
        super().__init__()
        self.fold_size_limit = fold_size_limit
        self.fold_batchnorm = fold_batchnorm

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Canonicalise ``model`` in place."""
        modified = False
        for prepass in (
            # Weights fed as graph inputs (keep_initializers_as_inputs) could be overridden
            # by a caller, which would make them non-constant; a compiled subnet's weights
            # are fixed, so they stop being inputs.
            common_passes.RemoveInitializersFromInputsPass(),
            common_passes.LiftConstantsToInitializersPass(
                lift_all_constants=True, size_limit=0
            ),
        ):
            modified |= prepass(model).modified
        if not _all_shapes_static(model.graph):
            # Static shapes let Shape nodes fold and let later passes count MACs. The
            # frontend has usually inferred them already; re-inferring round-trips the
            # whole model through protobuf, the slowest step of this pass.
            modified |= common_passes.ShapeInferencePass()(model).modified
        sort_graph(model.graph)

        opsets = dict(model.opset_imports)
        for _ in range(_MAX_SWEEPS):
            changed = self._sweep(model.graph, opsets)
            modified |= changed
            if not changed:
                break
        modified |= common_passes.RemoveUnusedNodesPass()(model).modified
        return ir.passes.PassResult(model, modified=modified)

    def _sweep(self, graph: ir.Graph, opsets: dict[str, int]) -> bool:
        """Visit every node once in topological order; return whether anything changed."""
        changed = False
        for node in list(graph):
            if node.graph is not graph:
                # Removed earlier in this sweep.
                continue
            if node.domain not in ("", "ai.onnx"):
                continue
            if node.op_type == "Identity" and len(node.inputs) == 1:
                changed |= _eliminate_alias(graph, node)
            elif node.op_type == "Dropout" and _is_inference_dropout(node, opsets.get("", 1)):
                changed |= _eliminate_alias(graph, node)
            elif node.op_type == "BatchNormalization" and self.fold_batchnorm:
                changed |= fold_batch_norm(graph, node) or self._fold_constant(
                    graph, node, opsets
                )
            else:
                changed |= self._fold_constant(graph, node, opsets)
        return changed

    def _fold_constant(self, graph: ir.Graph, node: ir.Node, opsets: dict[str, int]) -> bool:
        """Replace a node whose result is known at compile time by initializers."""
        if not _is_foldable(node):
            return False
        for output in node.outputs:
            dims = static_dims(output)
            if dims is not None and math.prod(dims) > self.fold_size_limit:
                return False
        try:
            results = _evaluate(node, opsets)
        except Exception as error:  # any evaluator failure just means "keep the node"
            logger.debug("Not folding %s '%s': %s", node.op_type, node.name, error)
            return False
        if any(array.size > self.fold_size_limit for array in results):
            return False
        names = {value.name for value in graph.initializers.values()}
        replacements = []
        for output, array in zip(node.outputs, results, strict=True):
            tensor = ir.Tensor(array, name=output.name)
            replacements.append(
                ir.Value(
                    name=output.name,
                    shape=ir.Shape(array.shape),
                    type=ir.TensorType(tensor.dtype),
                    const_value=tensor,
                )
            )
        ir.convenience.replace_all_uses_with(node.outputs, replacements)
        graph.remove(node, safe=True)
        for value in replacements:
            if value.uses():
                value.name = _fresh_name(names, value.name or "folded")
                assert value.const_value is not None
                value.const_value.name = value.name
                graph.register_initializer(value)
        logger.debug("Folded %s '%s' into constants", node.op_type, node.name)
        return True


def _fresh_name(taken: set[str | None], base: str) -> str:
    """Return ``base`` or ``base_1``, ``base_2``... whichever is not taken, and take it."""
    name, counter = base, 0
    while name in taken:
        counter += 1
        name = f"{base}_{counter}"
    taken.add(name)
    return name


def _unused_initializer_name(graph: ir.Graph, base: str) -> str:
    """Return ``base`` or ``base_1``, ``base_2``... whichever no initializer of graph has."""
    name, counter = base, 0
    while name in graph.initializers:
        counter += 1
        name = f"{base}_{counter}"
    return name


def _all_shapes_static(graph: ir.Graph) -> bool:
    return all(value.shape is not None and value.shape.is_static()
               for node in graph for value in node.outputs)


def _is_foldable(node: ir.Node) -> bool:
    """Tell whether a node's outputs can be computed now (see :func:`_evaluate`)."""
    if node.op_type in _NON_DETERMINISTIC_OPS or node.op_type == "Constant":
        return False
    if node.op_type not in ("Shape", "CastLike") and not (
        node.inputs and _all_inputs_constant(node)
    ):
        # Most nodes read an activation; rejecting them first skips the checks below.
        return False
    if any(output.is_graph_output() for output in node.outputs):
        # An initializer cannot carry a graph output's name and role safely.
        return False
    if any(
        attr.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS)
        for attr in node.attributes.values()
    ):
        return False
    if node.op_type == "Shape":
        return static_dims(node.inputs[0]) is not None or _all_inputs_constant(node)
    if node.op_type == "CastLike":
        target = node.inputs[1]
        return constant_tensor(node.inputs[0]) is not None and (
            target is not None and target.dtype is not None
        )
    return bool(node.inputs) and _all_inputs_constant(node)


def _all_inputs_constant(node: ir.Node) -> bool:
    present = [value for value in node.inputs if value is not None]
    return bool(present) and all(constant_tensor(value) is not None for value in present)


def _evaluate(node: ir.Node, opsets: dict[str, int]) -> list[np.ndarray]:
    """Compute a foldable node's outputs with numpy or the ONNX reference evaluator."""
    if node.op_type == "Shape" and (dims := static_dims(node.inputs[0])) is not None:
        # The slice semantics of start/end (opset 15) are Python's, negatives included.
        start = node.attributes.get_int("start", 0)
        end = node.attributes.get_int("end", len(dims))
        return [np.array(dims[start:end], dtype=np.int64)]
    if node.op_type == "CastLike":
        source = constant_tensor(node.inputs[0])
        target = node.inputs[1]
        assert source is not None and target is not None and target.dtype is not None
        return [np.asarray(source.numpy()).astype(target.dtype.numpy())]

    node_proto = ir.serde.serialize_node(node)
    del node_proto.input[:]
    del node_proto.output[:]
    feeds: dict[str, np.ndarray] = {}
    input_infos = []
    for index, value in enumerate(node.inputs):
        if value is None:
            node_proto.input.append("")
            continue
        tensor = constant_tensor(value)
        assert tensor is not None
        name = f"input_{index}"
        node_proto.input.append(name)
        feeds[name] = np.asarray(tensor.numpy())
        input_infos.append(
            onnx.helper.make_tensor_value_info(
                name, int(tensor.dtype), list(tensor.shape.numpy())
            )
        )
    output_names = [f"output_{index}" for index in range(len(node.outputs))]
    node_proto.output.extend(output_names)
    graph_proto = onnx.helper.make_graph(
        [node_proto],
        "fold",
        input_infos,
        [onnx.helper.make_empty_tensor_value_info(name) for name in output_names],
    )
    evaluator = onnx.reference.ReferenceEvaluator(graph_proto, opsets=opsets)
    return [np.asarray(array) for array in evaluator.run(None, feeds)]


def _eliminate_alias(graph: ir.Graph, node: ir.Node) -> bool:
    """Remove a node whose output 0 is its input 0 (Identity, inference Dropout).

    When the alias is a graph output, its producer's value takes the output name so the
    model keeps its interface. That is impossible when the source is itself a graph input,
    an initializer or another graph output (one value cannot have two names); then the
    node is kept, as an Identity.
    """
    source, alias = node.inputs[0], node.outputs[0]
    if source is None:
        return False
    if any(output.uses() or output.is_graph_output() for output in node.outputs[1:]):
        return False
    if alias.is_graph_output() and (
        source.is_graph_input() or source.is_initializer() or source.is_graph_output()
    ):
        return _replace_by_identity(graph, node) if node.op_type != "Identity" else False
    if source.shape is None:
        source.shape = alias.shape
    if source.type is None:
        source.type = alias.type
    was_output, alias_name = alias.is_graph_output(), alias.name
    ir.convenience.replace_all_uses_with(alias, source, replace_graph_outputs=True)
    graph.remove(node, safe=True)
    if was_output:
        source.name = alias_name
    return True


def _replace_by_identity(graph: ir.Graph, node: ir.Node) -> bool:
    """Turn a Dropout that must stay (its output is a graph output) into an Identity."""
    alias = node.outputs[0]
    identity = ir.node("Identity", inputs=[node.inputs[0]], name=node.name)
    identity.metadata_props.update(node.metadata_props)
    new_alias = identity.outputs[0]
    new_alias.shape, new_alias.type = alias.shape, alias.type
    graph.insert_before(node, identity)
    name = alias.name
    ir.convenience.replace_all_uses_with(alias, new_alias, replace_graph_outputs=True)
    graph.remove(node, safe=True)
    new_alias.name = name
    return True


def _is_inference_dropout(node: ir.Node, opset: int) -> bool:
    """Tell whether a Dropout passes its input through unchanged."""
    if opset < 7:
        return node.attributes.get_int("is_test", 0) == 1
    if opset < 12:
        return True
    if len(node.inputs) < 3 or node.inputs[2] is None:
        return True
    training_mode = constant_tensor(node.inputs[2])
    return training_mode is not None and not bool(np.asarray(training_mode.numpy()).any())


def _scaled_weight(weight: ir.TensorProtocol, channel_factor: np.ndarray) -> ir.Tensor:
    """Return ``weight`` times the per-output-channel factor, computed in float64."""
    array = np.asarray(weight.numpy())
    return ir.Tensor((array.astype(np.float64) * channel_factor).astype(array.dtype))


def _register(graph: ir.Graph, name: str, tensor: ir.TensorProtocol,
              dims: Sequence[int]) -> ir.Value:
    value = ir.Value(name=name, shape=ir.Shape(dims), type=ir.TensorType(tensor.dtype),
                     const_value=tensor)
    graph.register_initializer(value)
    return value


def _constant_arrays(values: Sequence[ir.Value | None]) -> list[np.ndarray] | None:
    arrays = []
    for value in values:
        tensor = constant_tensor(value)
        if tensor is None:
            return None
        arrays.append(np.asarray(tensor.numpy()))
    return arrays


def fold_batch_norm(graph: ir.Graph, batch_norm: ir.Node) -> bool:
    """Fold an inference BatchNormalization into the Conv that alone feeds it.

    With ``f = gamma / sqrt(var + eps)`` per output channel, ``BN(Conv(x, W, b))`` equals
    ``Conv(x, W * f, (b - mean) * f + beta)``. Fresh initializers are created because the
    old weight may be read by other nodes.
    """
    if len(batch_norm.inputs) != 5 or batch_norm.attributes.get_int("training_mode", 0) != 0:
        return False
    if any(output.uses() or output.is_graph_output() for output in batch_norm.outputs[1:]):
        return False
    conv_output = batch_norm.inputs[0]
    conv = conv_output.producer() if conv_output is not None else None
    if conv_output is None or conv is None or conv.graph is not graph:
        return False
    if conv.op_type != "Conv" or conv.domain not in ("", "ai.onnx"):
        return False
    if conv_output.is_graph_output() or len(conv_output.uses()) != 1:
        return False
    conv_weight = conv.inputs[1]
    bn_arrays = _constant_arrays(batch_norm.inputs[1:5])
    weight = constant_tensor(conv_weight)
    has_bias = len(conv.inputs) > 2 and conv.inputs[2] is not None
    bias = constant_tensor(conv.inputs[2]) if has_bias else None
    if bn_arrays is None or weight is None or (has_bias and bias is None):
        return False

    gamma, beta, mean, variance = (array.astype(np.float64) for array in bn_arrays)
    epsilon = batch_norm.attributes.get_float("epsilon", 1e-5)
    weight_dims = tuple(int(d) for d in weight.shape.numpy())
    out_channels = weight_dims[0]
    old_bias = (
        np.zeros(out_channels) if bias is None else np.asarray(bias.numpy()).astype(np.float64)
    )
    factor = gamma / np.sqrt(variance + epsilon)
    broadcast = (out_channels,) + (1,) * (len(weight_dims) - 1)
    channel_factor = factor.reshape(broadcast)
    new_bias = ((old_bias - mean) * factor + beta).astype(weight.dtype.numpy())

    base = (conv_weight.name if conv_weight is not None else None) or conv.name or "conv"
    weight_name = _unused_initializer_name(graph, f"{base}_bn_weight")
    # The folded weights are computed each time they are read, not kept: compiling
    # reads them once (to hash them), and keeping them would add half again to the
    # memory a full-size group's original weights take.
    new_weight = ir.LazyTensor(functools.partial(_scaled_weight, weight, channel_factor),
                               dtype=weight.dtype, shape=ir.Shape(weight_dims),
                               name=weight_name)
    new_values = [_register(graph, weight_name, new_weight, weight_dims)]
    bias_name = _unused_initializer_name(graph, f"{base}_bn_bias")
    new_values.append(_register(graph, bias_name, ir.Tensor(new_bias, name=bias_name),
                                new_bias.shape))
    conv.replace_input_with(1, new_values[0])
    if len(conv.inputs) < 3:
        conv.resize_inputs(3)
    conv.replace_input_with(2, new_values[1])

    bn_output = batch_norm.outputs[0]
    if conv_output.shape is None:
        conv_output.shape = bn_output.shape
    was_output, output_name = bn_output.is_graph_output(), bn_output.name
    ir.convenience.replace_all_uses_with(bn_output, conv_output, replace_graph_outputs=True)
    graph.remove(batch_norm, safe=True)
    if was_output:
        # The model's interface keeps the output name the BatchNormalization gave it.
        conv_output.name = output_name
    logger.debug("Folded BatchNormalization '%s' into Conv '%s'", batch_norm.name, conv.name)
    return True
