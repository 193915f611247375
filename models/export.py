"""Export SPOS and FairNAS subnets to ONNX files for the compiler, with their arch attached.

The exported graphs deliberately keep their ``BatchNormalization`` nodes and the
supernet's parameter names (``features.{layer}.{choice}.branch_main.{i}.weight`` for
SPOS, ``features.{layer}.{choice}.conv.{i}.weight`` for FairNAS):
folding BN is the compiler's job, and the names let it see that two subnets of a group
use the same supernet weights. Both torch exporters fold BN into renamed or silently
rewritten conv weights by default, so this module asks them not to.

Every node also says which part of the supernet it computes, in node ``metadata_props``
(:data:`LAYER_METADATA_KEY`, :data:`CHOICE_METADATA_KEY`): the compiler's scheduler
groups operators of one supernet layer, and it must not guess layers from node names,
which differ between exporters and mean nothing in a model a user brings. Here, where
the module structure is known, the exporters' scope names are read to find each node's
module: the legacy exporter writes them into node names (``/features.7.2/...``), the
dynamo exporter into ``pkg.torch.onnx.name_scopes`` metadata.
"""

from __future__ import annotations

import ast
import io
import json
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common as ir_passes
import torch

from enasa_compiler.atomic import write_atomic

from ._subnet_view import HEAD_MODULES, SubnetView
from .fairnas import FairnasSupernet
from .spos import SposSupernet

logger = logging.getLogger(__name__)

__all__ = [
    "ARCH_METADATA_KEY",
    "CHOICE_METADATA_KEY",
    "HEAD_LAYER",
    "LAYER_METADATA_KEY",
    "STEM_LAYER",
    "SUPERNET_METADATA_KEY",
    "Supernet",
    "build_demo_supernet",
    "export_group",
    "export_subnet",
    "read_arch",
]

ARCH_METADATA_KEY = "enasa.arch"
SUPERNET_METADATA_KEY = "enasa.supernet"
Supernet = SposSupernet | FairnasSupernet
"""A supernet that can be exported; its ``supernet_name`` goes into ``enasa.supernet``."""
LAYER_METADATA_KEY = "enasa.layer"
"""Node metadata: the choice layer the node belongs to (``"7"``), or :data:`STEM_LAYER` /
:data:`HEAD_LAYER` for the fixed parts before and after the choice layers."""
CHOICE_METADATA_KEY = "enasa.choice"
"""Node metadata: the candidate chosen in that layer (``"2"``); on choice-layer nodes only."""
STEM_LAYER = "stem"
HEAD_LAYER = "head"
_DYNAMO_MIN_OPSET = 18  # the dynamo exporter only emits opset 18 and later
_NAME_SCOPES_KEY = "pkg.torch.onnx.name_scopes"  # the dynamo exporter's module scopes
_NODE_METADATA_IR_VERSION = 10  # NodeProto.metadata_props exists from IR version 10


def _export_legacy(module: torch.nn.Module, example: torch.Tensor, opset: int) -> ir.Model:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # PRESERVE keeps BN nodes and names (EVAL would fuse them into anonymous
        # initializers); the model is in eval mode, so folding constants is safe and the
        # warning about training-amenable exports does not apply.
        warnings.filterwarnings("ignore", message=".*constant folding be turned off.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            module,
            (example,),
            buffer,  # type: ignore[arg-type]  # the TorchScript exporter takes file objects
            dynamo=False,
            opset_version=opset,
            input_names=["input"],
            output_names=["logits"],
            do_constant_folding=True,
            training=torch.onnx.TrainingMode.PRESERVE,
        )
    return ir.from_proto(onnx.load_model_from_string(buffer.getvalue()))


def _export_dynamo(module: torch.nn.Module, example: torch.Tensor, opset: int) -> ir.Model:
    # onnxscript ships with the dynamo exporter, which cannot run without it.
    from onnxscript.optimizer import fold_constants

    # The default optimizer fuses BN into the conv weights but keeps the raw weight
    # names, so values would no longer match the supernet; fold constants only.
    with warnings.catch_warnings():
        # torch.export's own deprecation notices are not actionable here.
        warnings.filterwarnings("ignore", category=FutureWarning)
        program = torch.onnx.export(
            module,
            (example,),
            None,
            dynamo=True,
            optimize=False,
            verbose=False,
            opset_version=opset,
            input_names=["input"],
            output_names=["logits"],
            do_constant_folding=True,
        )
    if program is None:
        raise RuntimeError("dynamo export returned no program")
    model = program.model
    fold_constants(model)
    return model


def _is_matrix(value: ir.Value) -> bool:
    # The legacy exporter leaves intermediate shapes unset; Flatten always yields 2-D.
    if value.shape is not None:
        return len(value.shape) == 2
    producer = value.producer()
    return producer is not None and producer.op_type == "Flatten"


def _restore_linear_weights(model: ir.Model, params: Mapping[str, torch.Tensor]) -> None:
    """Turn ``MatMul(x, W^T)`` on an anonymous folded ``W^T`` into ``Gemm(x, W, transB=1)``.

    The legacy exporter lowers a bias-free Linear that way and names the folded
    transpose ``onnx::MatMul_N``, which hides that it is a supernet weight. Gemm on the
    named weight is also what the dynamo exporter emits.
    """
    graph = model.graph
    matrices = {name: t.detach().numpy() for name, t in params.items() if t.ndim == 2}
    for node in list(graph):
        if node.op_type != "MatMul":
            continue
        data, folded = node.inputs
        if folded is None or folded.const_value is None or folded.name in matrices:
            continue
        if data is None or not _is_matrix(data):
            continue
        transposed = folded.const_value.numpy()
        name = next((n for n, w in matrices.items() if np.array_equal(w.T, transposed)), None)
        if name is None:
            continue
        weight = graph.initializers.get(name)
        if weight is None:
            weight = ir.Value(name=name, const_value=ir.tensor(matrices[name], name=name))
            graph.register_initializer(weight)
        gemm = ir.node("Gemm", [data, weight], {"transB": 1}, name=node.name,
                       metadata_props=dict(node.metadata_props))
        ir.convenience.replace_nodes_and_values(
            graph, node, [node], [gemm], node.outputs, gemm.outputs
        )


def _drop_zero_biases(model: ir.Model) -> None:
    """Remove all-zero bias inputs, which the dynamo exporter adds to bias-free convs."""
    for node in model.graph:
        if node.op_type not in ("Conv", "Gemm") or len(node.inputs) != 3:
            continue
        bias = node.inputs[2]
        if (
            bias is not None
            and bias.const_value is not None
            and not bias.const_value.numpy().any()
        ):
            node.resize_inputs(2)


def _tidy(model: ir.Model, params: Mapping[str, torch.Tensor]) -> None:
    """Make both exporters' graphs alike: named weights, initializers, no dead nodes."""
    ir_passes.LiftConstantsToInitializersPass(lift_all_constants=False, size_limit=0)(model)
    _restore_linear_weights(model, params)
    _drop_zero_biases(model)
    ir_passes.RemoveUnusedNodesPass()(model)


def _module_labels(subnet: SubnetView) -> dict[str, dict[str, str]]:
    """Map each top-level module path of ``subnet`` to the layer metadata of its nodes."""
    labels = {name: {LAYER_METADATA_KEY: STEM_LAYER} for name in subnet.STEM}
    labels.update({name: {LAYER_METADATA_KEY: HEAD_LAYER} for name in HEAD_MODULES})
    for layer, choice in enumerate(subnet.arch):
        labels[f"features.{layer}.{choice}"] = {
            LAYER_METADATA_KEY: str(layer), CHOICE_METADATA_KEY: str(choice)}
    return labels


def _module_scopes(node: ir.Node) -> list[str]:
    """Return the module scopes the exporter recorded for ``node``, outermost first.

    Dynamo: ``['', 'features.7.2', 'features.7.2.branch_main', ..., 'conv2d']``; legacy:
    the node name split at ``/`` (``['', 'features.7.2', 'branch_main', ...]``).
    """
    text = node.metadata_props.get(_NAME_SCOPES_KEY)
    if text is not None:
        try:
            scopes = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            scopes = None
        if isinstance(scopes, list):
            return [str(scope) for scope in scopes]
    return (node.name or "").split("/")


def _producer_label(node: ir.Node) -> dict[str, str] | None:
    for value in node.inputs:
        producer = value.producer() if value is not None else None
        if producer is not None and LAYER_METADATA_KEY in producer.metadata_props:
            props = producer.metadata_props
            return {key: props[key] for key in (LAYER_METADATA_KEY, CHOICE_METADATA_KEY)
                    if key in props}
    return None


def _annotate_layers(model: ir.Model, subnet: SubnetView) -> None:
    """Tag every node with the supernet layer (and choice) it computes part of.

    A node outside every module (``run_head``'s flatten, written by the subnet's own
    ``forward``) belongs with the node that produced its input; the graph is in
    topological order, so that producer is tagged already.
    """
    labels = _module_labels(subnet)
    for node in model.graph:
        label = next((labels[scope] for scope in _module_scopes(node) if scope in labels),
                     None)
        if label is None:
            label = _producer_label(node) or {LAYER_METADATA_KEY: STEM_LAYER}
        node.metadata_props.update(label)
    model.ir_version = max(model.ir_version, _NODE_METADATA_IR_VERSION)


def export_subnet(
    supernet: Supernet,
    arch: Sequence[int],
    path: str | os.PathLike[str],
    *,
    batch_size: int = 1,
    opset: int = 17,
    dynamo: bool = False,
) -> Path:
    """Export the subnet ``arch`` of ``supernet`` to an ONNX file in eval mode.

    The graph has input ``input`` of shape (batch_size, 3, input_size, input_size) and
    output ``logits``; ``metadata_props`` hold ``enasa.arch`` (JSON list) and
    ``enasa.supernet`` (``"spos"`` or ``"fairnas"``). Every node's ``metadata_props``
    hold ``enasa.layer``: the choice layer index as a decimal string (``"7"``) with
    ``enasa.choice`` the chosen candidate (``"2"``), or ``"stem"`` / ``"head"`` for the
    fixed modules before and after the choice layers (which have no ``enasa.choice``).
    The file's IR version is at least 10, the first with node metadata. The supernet's
    train/eval mode is restored afterwards.

    Args:
        supernet: The SPOS or FairNAS supernet whose weights the subnet uses.
        arch: One choice index per layer.
        path: Destination file; its folder is created if missing.
        batch_size: Static batch dimension of the exported input.
        opset: ONNX opset; raised to 18 for the dynamo exporter, which needs it.
        dynamo: Use ``torch.export``-based exporter instead of the (faster) TorchScript one.

    Returns:
        The path written.

    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if dynamo and opset < _DYNAMO_MIN_OPSET:
        logger.info(
            "dynamo exporter needs opset >= %d; using it instead of %d",
            _DYNAMO_MIN_OPSET,
            opset,
        )
        opset = _DYNAMO_MIN_OPSET
    subnet = supernet.subnet(arch)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = supernet.input_size
    example = torch.zeros(batch_size, 3, size, size)
    was_training = supernet.training
    subnet.eval()
    try:
        exporter = _export_dynamo if dynamo else _export_legacy
        model = exporter(subnet, example, opset)
    finally:
        supernet.train(was_training)
    _tidy(model, subnet.state_dict())
    _annotate_layers(model, subnet)
    model.metadata_props[ARCH_METADATA_KEY] = json.dumps(list(subnet.arch))
    model.metadata_props[SUPERNET_METADATA_KEY] = subnet.supernet_name
    write_atomic(path, ir.to_proto(model).SerializeToString())
    logger.debug("exported %s arch %s to %s", subnet.supernet_name, subnet.arch, path)
    return path


def export_group(
    supernet: Supernet,
    archs: Sequence[Sequence[int]],
    out_dir: str | os.PathLike[str],
    **kw: int | bool,
) -> list[Path]:
    """Export every architecture of a group as ``out_dir/subnet_{i:02d}.onnx``.

    Args:
        supernet: The supernet all members come from.
        archs: The group, in the order that gives the file indices.
        out_dir: Destination folder, created if missing.
        **kw: Passed on to :func:`export_subnet` (batch_size, opset, dynamo).

    """
    out = Path(out_dir)
    return [
        export_subnet(supernet, arch, out / f"subnet_{i:02d}.onnx", **kw)  # type: ignore[arg-type]
        for i, arch in enumerate(archs)
    ]


def read_arch(model: str | os.PathLike[str] | onnx.ModelProto) -> tuple[int, ...]:
    """Return the architecture stored in an exported model's ``enasa.arch`` metadata.

    Raises:
        KeyError: The model carries no ``enasa.arch`` entry.

    """
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load_model(os.fspath(model), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == ARCH_METADATA_KEY:
            return tuple(int(c) for c in json.loads(prop.value))
    raise KeyError(f"model has no {ARCH_METADATA_KEY!r} metadata")


def _calibrate_batchnorm(supernet: Supernet, images: torch.Tensor) -> None:
    """Set every BN's running statistics from real activations of random images.

    Random statistics would let activations vanish or explode over 20 layers; measured
    ones keep logits O(1) yet differ from (0, 1), so BN folding changes the numbers.
    Each pass shifts every layer's choice by one, so every block is visited, like SPOS's
    per-subnet BN recalibration.
    """
    batchnorms = [m for m in supernet.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in batchnorms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration passes
    supernet.train()
    with torch.no_grad():
        for offset in range(supernet.num_choices):
            arch = [
                (layer + offset) % supernet.num_choices for layer in range(supernet.num_layers)
            ]
            supernet(images, arch)
    for bn in batchnorms:
        bn.momentum = 0.1
    supernet.eval()


def build_demo_supernet(seed: int = 0) -> SposSupernet:
    """Build a small full-depth SPOS supernet with seeded random weights for demos and tests.

    Width 0.25, 32x32 inputs, 10 classes, all 20 choice layers: small enough that
    exporting and compiling a group of 8 subnets takes seconds, deep enough to keep the
    real layer structure. BN running statistics come from calibration on random images,
    so they are far from the identity and BN folding is exercised. The global torch RNG
    is left untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        supernet = SposSupernet(width_mult=0.25, num_classes=10, input_size=32)
        images = torch.randn(16, 3, supernet.input_size, supernet.input_size)
        _calibrate_batchnorm(supernet, images)
    return supernet
