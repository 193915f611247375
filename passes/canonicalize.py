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

from enasa_compiler.budgets import check_fold_budget

from ._common import constant_tensor, has_subgraphs, sort_graph, static_dims

logger = logging.getLogger(__name__)

__all__ = ["CanonicalizePass", "fold_batch_norm"]

_NON_DETERMINISTIC_OPS = frozenset(
    {"RandomUniform", "RandomNormal", "RandomUniformLike", "RandomNormalLike", "Multinomial"}
)
_MAX_SWEEPS = 16
# Rounds of folding followed by shape inference; each round must make a shape static,
# and exported models resolve their shape chains in two or three.
_MAX_ROUNDS = 8
_BIASED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm"})
_GLOBAL_POOLS = {"ReduceMean": "GlobalAveragePool", "ReduceMax": "GlobalMaxPool"}


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
        # Both prepasses walk every graph recursively; on a flat graph a glance tells
        # whether they have anything to do.
        flat = not has_subgraphs(model.graph)
        graph_inputs_constant = any(v.const_value is not None for v in model.graph.inputs)
        has_constants = any(node.op_type == "Constant" for node in model.graph)
        for prepass, needed in (
            # Weights fed as graph inputs (keep_initializers_as_inputs) could be overridden
            # by a caller, which would make them non-constant; a compiled subnet's weights
            # are fixed, so they stop being inputs.
            (common_passes.RemoveInitializersFromInputsPass(), graph_inputs_constant),
            (common_passes.LiftConstantsToInitializersPass(
                lift_all_constants=True, size_limit=0
            ), has_constants),
        ):
            if needed or not flat:
                modified |= prepass(model).modified
        if not _all_shapes_static(model.graph):
            # Static shapes let Shape nodes fold and let later passes count MACs. The
            # frontend has usually inferred them already; re-inferring round-trips the
            # whole model through protobuf, the slowest step of this pass.
            modified |= common_passes.ShapeInferencePass()(model).modified
        sort_graph(model.graph)

        opsets = dict(model.opset_imports)
        for _ in range(_MAX_ROUNDS):
            changed = False
            for _ in range(_MAX_SWEEPS):
                swept = self._sweep(model.graph, opsets)
                changed |= swept
                if not swept:
                    break
            modified |= changed
            if not changed or _all_shapes_static(model.graph):
                break
            # Folding turned a shape chain (the pads of a legacy-exported ZeroPad2d, the
            # split sizes of a ``tensor.chunk``) into constants, but the values computed
            # from them still have the unknown shapes inference gave them before. Infer
            # again; new static shapes may let more Shape nodes fold: a fixed point.
            before = _shape_signature(model.graph)
            common_passes.ShapeInferencePass()(model)
            if _shape_signature(model.graph) == before:
                break
            modified = True
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
            elif _normalise(graph, node, opsets.get("", 1)):
                # Both exporters' spellings of one operator become one, so that dedup,
                # which compares op types and attributes, sees them as the same.
                changed = True
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
        check_fold_budget(node, self.fold_size_limit)  # before _evaluate allocates
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


def _shape_signature(graph: ir.Graph) -> list[object]:
    """Return every node output's shape, to tell whether shape inference learnt anything."""
    return [None if value.shape is None else tuple(value.shape)
            for node in graph for value in node.outputs]


def _normalise(graph: ir.Graph, node: ir.Node, opset: int) -> bool:
    """Rewrite ``node`` into the one spelling both torch exporters' outputs share.

    Returns whether it changed anything. The rewrites keep what the node computes:
    an all-zero bias dropped, attributes equal to their schema default dropped, a
    spatial ``ReduceMean``/``ReduceMax`` keeping its dims (the dynamo exporter's
    ``adaptive_avg_pool2d(x, 1)``) written as ``GlobalAveragePool``/``GlobalMaxPool``
    (the legacy exporter's), and a ``Reshape`` to ``(N, everything else)`` written as
    ``Flatten``.
    """
    if node.op_type in _BIASED_OPS and _drop_zero_bias(node):
        return True
    if _drop_default_attributes(node, opset):
        return True
    if node.op_type in _GLOBAL_POOLS:
        return _reduce_to_global_pool(graph, node, opset)
    if node.op_type == "Reshape":
        return _reshape_to_flatten(graph, node)
    return False


def _drop_default_attributes(node: ir.Node, opset: int) -> bool:
    """Remove attributes whose value is the operator schema's default."""
    if not node.attributes:
        return False
    defaults = _schema_defaults(node.op_type, opset)
    dropped = [name for name, attr in node.attributes.items()
               if name in defaults and _is_default(node.op_type, opset, attr)]
    for name in dropped:
        del node.attributes[name]
    return bool(dropped)


_DEFAULT_CACHE: dict[tuple[object, ...], bool] = {}
"""(op type, opset, attribute name, type, plain value) -> whether it is the default."""
_DEFAULT_CACHE_SIZE = 4096
_KEY_MAX_ITEMS = 64


def _is_default(op_type: str, opset: int, attr: ir.Attr) -> bool:
    """Tell whether ``attr`` holds its schema default and may be dropped.

    Serialising the attribute decides it; a group repeats the same few attribute values
    thousands of times, so the answer is memoised by the attribute's plain value.
    """
    key = _attribute_key(attr)
    if key is None:
        return _is_default_uncached(op_type, opset, attr)
    cache_key = (op_type, opset, attr.name, attr.type, key)
    known = _DEFAULT_CACHE.get(cache_key)
    if known is None:
        if len(_DEFAULT_CACHE) >= _DEFAULT_CACHE_SIZE:
            _DEFAULT_CACHE.clear()
        known = _DEFAULT_CACHE[cache_key] = _is_default_uncached(op_type, opset, attr)
    return known


def _attribute_key(attr: ir.Attr) -> object | None:
    """Return a hashable stand-in for an int, float, string or list attribute's value."""
    value = attr.value
    if isinstance(value, (int, float, str, bytes)):
        return (type(value), value)
    if isinstance(value, (list, tuple)) and len(value) <= _KEY_MAX_ITEMS and all(
            isinstance(item, (int, float, str, bytes)) for item in value):
        return tuple((type(item), item) for item in value)
    return None


def _is_default_uncached(op_type: str, opset: int, attr: ir.Attr) -> bool:
    defaults = _schema_defaults(op_type, opset)
    return (_attribute_bytes(attr) == defaults.get(attr.name)
            and _reads_back_exactly(attr))


@functools.lru_cache(maxsize=512)
def _schema_defaults(op_type: str, opset: int) -> dict[str, bytes]:
    """Return an operator's attribute defaults, serialized, from its ONNX schema."""
    try:
        schema = onnx.defs.get_schema(op_type, opset, "")
    except onnx.defs.SchemaError:
        return {}
    return {name: attr.default_value.SerializeToString(deterministic=True)
            for name, attr in schema.attributes.items()
            if attr.default_value.type != onnx.AttributeProto.UNDEFINED}


def _reads_back_exactly(attr: ir.Attr) -> bool:
    """Tell whether a reader's default for an attribute is the stored value, bit for bit.

    Readers default a missing float attribute to a Python float (``epsilon`` 1e-5),
    which is not the float32 stored when it is present: BatchNormalization folding
    would then round the weights differently. So a float is dropped only when it is a
    short binary fraction (HardSigmoid's ``beta`` 0.5), and other types always.
    """
    if attr.type not in (ir.AttributeType.FLOAT, ir.AttributeType.FLOATS):
        return True
    values = [attr.value] if attr.type == ir.AttributeType.FLOAT else list(attr.value)
    # A multiple of 1/1024 (0.5, 1.0) is the same number as float32 and as a literal.
    return all(float(v) * 1024 == int(float(v) * 1024) for v in values)


def _attribute_bytes(attr: ir.Attr) -> bytes | None:
    """Serialize an attribute as a schema default is (its name included)."""
    try:
        proto = ir.serde.serialize_attribute(attr)
    except Exception:  # noqa: BLE001 - an attribute that will not serialize is kept
        return None
    return proto.SerializeToString(deterministic=True)


def _replace_node(graph: ir.Graph, node: ir.Node, op_type: str, inputs: Sequence[ir.Value],
                  attributes: dict[str, int]) -> None:
    """Put a node of ``op_type`` in ``node``'s place, keeping its name and metadata."""
    replacement = ir.node(op_type, inputs=list(inputs), attributes=attributes,
                          name=node.name)
    replacement.metadata_props.update(node.metadata_props)
    new_output, old_output = replacement.outputs[0], node.outputs[0]
    new_output.shape, new_output.type = old_output.shape, old_output.type
    graph.insert_before(node, replacement)
    was_output, name = old_output.is_graph_output(), old_output.name
    ir.convenience.replace_all_uses_with(old_output, new_output, replace_graph_outputs=True)
    graph.remove(node, safe=True)
    new_output.name = name if was_output or name else new_output.name
    logger.debug("Rewrote %s '%s' as %s", node.op_type, node.name, op_type)


def _reduce_to_global_pool(graph: ir.Graph, node: ir.Node, opset: int) -> bool:
    """Write a ReduceMean/ReduceMax over all spatial axes, dims kept, as a global pool."""
    data = node.inputs[0] if node.inputs else None
    dims = static_dims(data)
    if data is None or dims is None or len(dims) < 3 or len(node.outputs) != 1:
        return False
    if node.attributes.get_int("keepdims", 1) != 1:
        return False
    if opset >= 18 or (node.op_type == "ReduceSum" and opset >= 13):
        axes_value = node.inputs[1] if len(node.inputs) > 1 else None
        tensor = constant_tensor(axes_value)
        if tensor is None:
            return False
        axes = [int(a) for a in np.asarray(tensor.numpy()).reshape(-1)]
    else:
        axes = list(node.attributes.get_ints("axes", ()) or ())
    spatial = set(range(2, len(dims)))
    if {a % len(dims) for a in axes} != spatial or len(axes) != len(spatial):
        return False
    _replace_node(graph, node, _GLOBAL_POOLS[node.op_type], [data], {})
    return True


def _reshape_to_flatten(graph: ir.Graph, node: ir.Node) -> bool:
    """Write a Reshape of a static ``(N, ...)`` tensor to ``(N, rest)`` as ``Flatten``."""
    data = node.inputs[0] if node.inputs else None
    source, result = static_dims(data), static_dims(node.outputs[0])
    if data is None or source is None or result is None or len(source) < 3:
        return False
    if result != (source[0], math.prod(source[1:])):
        return False
    _replace_node(graph, node, "Flatten", [data], {"axis": 1})
    return True


def _drop_zero_bias(node: ir.Node) -> bool:
    """Remove a Conv/ConvTranspose/Gemm bias input that holds only zeros.

    An all-zero bias adds nothing, so the operator is the same one without it. The dynamo
    exporter writes such a bias for a bias-free ``nn.Conv2d`` where the legacy exporter
    writes none; without this, the same weights exported both ways never deduplicate.
    A Gemm's ``C`` only counts when it is zero whatever ``beta`` is.
    """
    if len(node.inputs) != 3 or node.inputs[2] is None:
        return False
    tensor = constant_tensor(node.inputs[2])
    if tensor is None or np.asarray(tensor.numpy()).any():
        return False
    node.resize_inputs(2)
    logger.debug("Dropped the all-zero bias of %s '%s'", node.op_type, node.name)
    return True


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
