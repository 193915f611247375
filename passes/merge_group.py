"""Merge the G subnets of a group into one ONNX model that reads one shared input.

A group is evaluated on the same images, so its subnets become one graph with one
input and the union of their outputs. Each subnet keeps its own nodes here (prefixed
``s{i}/`` so names never collide, and tagged with ``enasa.subnets``); finding what they
compute in common is :mod:`.dedup`'s job. Keeping the merge separate means the merged
model can be checked against the original subnets before anything is shared.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import onnx
import onnx.version_converter
import onnx_ir as ir

from enasa_compiler._text import plural

from ._common import (
    GROUP_SIZE_KEY,
    SUBNET_NAMES_KEY,
    SUBNET_OUTPUTS_KEY,
    has_subgraphs,
    set_subnets,
)

logger = logging.getLogger(__name__)

__all__ = ["MergeGroupPass", "merge_group"]


class MergeGroupPass(ir.passes.PassBase):
    """Merge a subnet (the model the pass is called on) with ``others`` into a group model.

    The pass model is subnet 0 and ``others`` are subnets 1..G-1, so the pass fits in a
    :class:`onnx_ir.passes.PassManager` after per-subnet passes. It returns a new model;
    the subnets are left unchanged (a functional pass), or with ``consume=True`` their
    nodes and initializers are moved into the group model instead of copied, which
    leaves them empty (a destructive pass, in onnx_ir's terms).

    Attributes:
        others: Subnets 1..G-1.
        names: Optional names of all G subnets (recorded in the model metadata).
        consume: Move the subnets' contents rather than copy them: for a caller that
            owns the subnets and has no further use for them.

    """

    def __init__(
        self, others: Sequence[ir.Model], names: Sequence[str] | None = None, *,
        consume: bool = False,
    ) -> None:
        super().__init__()
        self.others = tuple(others)
        self.names = None if names is None else tuple(names)
        self.consume = consume

    @property
    def in_place(self) -> bool:
        """False: the group is a new model."""
        return False

    @property
    def changes_input(self) -> bool:
        """Whether the subnets are emptied (``consume``)."""
        return self.consume

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Return a new group model; see :func:`merge_group`."""
        group = merge_group([model, *self.others], self.names, consume=self.consume)
        return ir.passes.PassResult(group, True)


def merge_group(
    models: Sequence[ir.Model], names: Sequence[str] | None = None, *, consume: bool = False
) -> ir.Model:
    """Merge subnets into one group model.

    The group model has one input (subnet 0's input, same name) and, per subnet ``i``,
    the outputs ``s{i}/{original output name}``. Every node, value and initializer of
    subnet ``i`` is prefixed ``s{i}/`` and every node is tagged ``enasa.subnets = "i"``.
    Model metadata records the group size, the subnet names and each subnet's outputs.

    Args:
        models: The G subnets; each must have exactly one (non-initializer) input, of
            the same shape and dtype.
        names: Names of the subnets; defaults to ``subnet0``, ``subnet1``...
        consume: Move each subnet's nodes and initializers into the group model, which
            leaves the subnets empty, instead of copying them. Copying every node of a
            full-size group is a large part of compiling it.

    Returns:
        A new model; the inputs are not modified unless ``consume`` is set.

    Raises:
        ValueError: When there are no models, the names do not match them, the inputs
            differ, a model has model-local functions, or the opsets cannot be made equal
            (subnets with a lower default-domain opset are converted up to the highest).

    """
    if not models:
        raise ValueError("merge_group needs at least one subnet")
    names = [f"subnet{i}" for i in range(len(models))] if names is None else list(names)
    if len(names) != len(models):
        raise ValueError(f"got {plural(len(names), 'subnet name')} for "
                         f"{plural(len(models), 'subnet')}")
    for index, model in enumerate(models):
        if model.functions:
            raise ValueError(
                f"subnet {index} ({names[index]}) has model-local functions; "
                "inline them first (onnx_ir.passes.common.InlinePass)"
            )
    inputs = [_single_input(model, index, names[index]) for index, model in enumerate(models)]
    _check_same_inputs(inputs, names)
    clones, opset_imports = _common_opsets(models, names, consume)

    shared_input = ir.Value(name=inputs[0].name, shape=inputs[0].shape, type=inputs[0].type)
    group_graph = ir.Graph(
        inputs=[shared_input], outputs=[], nodes=[], opset_imports=opset_imports, name="group"
    )
    subnet_outputs = [
        _move_subnet(clone, index, shared_input, group_graph)
        for index, clone in enumerate(clones)
    ]
    return ir.Model(
        group_graph,
        ir_version=max(clone.ir_version for clone in clones),
        producer_name="enasa-compiler",
        metadata_props={
            GROUP_SIZE_KEY: str(len(models)),
            SUBNET_NAMES_KEY: json.dumps(names),
            SUBNET_OUTPUTS_KEY: json.dumps(subnet_outputs),
        },
    )


def _single_input(model: ir.Model, index: int, name: str) -> ir.Value:
    """Return a subnet's one real input; initializers listed as inputs do not count."""
    real_inputs = [value for value in model.graph.inputs if value.const_value is None]
    if len(real_inputs) != 1:
        raise ValueError(
            f"subnet {index} ({name}) has {len(real_inputs)} graph inputs "
            f"{[value.name for value in real_inputs]}; a group subnet must have exactly one"
        )
    return real_inputs[0]


def _describe(value: ir.Value) -> str:
    shape = "unknown" if value.shape is None else str(list(value.shape))
    dtype = "unknown" if value.dtype is None else value.dtype.name
    return f"{shape} {dtype}"


def _check_same_inputs(inputs: Sequence[ir.Value], names: Sequence[str]) -> None:
    """Raise unless every subnet reads a tensor of subnet 0's input shape and dtype."""
    reference = inputs[0]
    for index, value in enumerate(inputs[1:], start=1):
        if value.shape != reference.shape or value.dtype != reference.dtype:
            raise ValueError(
                f"subnet {index} ({names[index]}) input '{value.name}' is {_describe(value)} "
                f"but subnet 0 ({names[0]}) input '{reference.name}' is "
                f"{_describe(reference)}; all subnets of a group must read the same input"
            )


def _normal_domain(domain: str) -> str:
    return "" if domain == "ai.onnx" else domain


def _common_opsets(
    models: Sequence[ir.Model], names: Sequence[str], consume: bool = False
) -> tuple[list[ir.Model], dict[str, int]]:
    """Bring every subnet to the highest opset of each domain.

    One graph has one opset per domain, and a node written for opset 13 does not always
    mean the same under 18 (``ReduceMean`` moved ``axes`` to an input), so lower-opset
    subnets go through ``onnx.version_converter``. Only the default domain has a
    converter; other domains must already agree.

    Returns:
        Models the caller may empty: clones of the subnets (converted where needed), or
        with ``consume`` the subnets themselves where no conversion is needed (a model
        given twice is cloned the second time), and the merged opset imports.

    """
    merged: dict[str, int] = {}
    for model in models:
        for domain, version in model.opset_imports.items():
            domain = _normal_domain(domain)
            merged[domain] = max(merged.get(domain, version), version)
    upgraded = []
    taken: set[int] = set()
    for index, model in enumerate(models):
        versions = {_normal_domain(d): v for d, v in model.opset_imports.items()}
        stale = {d: v for d, v in versions.items() if v != merged[d]}
        if not stale:
            upgraded.append(model if consume and id(model) not in taken else model.clone())
            taken.add(id(model))
            continue
        if set(stale) != {""}:
            wanted = {domain: merged[domain] for domain in stale}
            raise ValueError(
                f"subnet {index} ({names[index]}) imports opsets {stale} but another subnet "
                f"imports {wanted}; export all subnets with the same opsets"
            )
        upgraded.append(_convert_opset(model, merged[""], f"subnet {index} ({names[index]})"))
    return upgraded, merged


def _convert_opset(model: ir.Model, target: int, label: str) -> ir.Model:
    clone = ir.external_data.load_to_model(model.clone())
    source = clone.opset_imports.get("", clone.opset_imports.get("ai.onnx"))
    try:
        converted = onnx.version_converter.convert_version(ir.to_proto(clone), target)
    except Exception as error:  # the converter raises bare RuntimeErrors from C++
        raise ValueError(
            f"{label} uses opset {source} but another subnet uses {target}, and converting "
            f"it failed ({error}); export all subnets with the same opset_version"
        ) from error
    logger.info("Converted %s from opset %s to %s", label, source, target)
    result = ir.from_proto(converted)
    # The converter drops node metadata_props (layer tags); it keeps node names.
    props = {node.name: node.metadata_props for node in clone.graph if node.name}
    for node in result.graph:
        for key, value in props.get(node.name or "", {}).items():
            node.metadata_props.setdefault(key, value)
    return result


def _move_subnet(
    subnet: ir.Model, index: int, shared_input: ir.Value, group_graph: ir.Graph
) -> list[str]:
    """Move the nodes and initializers of a subnet clone into the group graph.

    Returns:
        The group output names of this subnet, in the subnet's output order.

    """
    prefix = f"s{index}/"
    graph = subnet.graph
    own_input = next(value for value in graph.inputs if value.const_value is None)
    output_names = [f"{prefix}{value.name}" for value in graph.outputs]
    original_outputs = list(graph.outputs)
    # A value may be the output of one graph only.
    graph.outputs.clear()

    # Every node needs a name: plans and reports refer to operators by it. (A recursive
    # walk is slow; most subnets have no subgraph to walk into.)
    nested = has_subgraphs(graph)
    nodes = list(ir.traversal.RecursiveGraphIterator(graph) if nested else graph)
    taken = {node.name for node in nodes}
    for position, node in enumerate(nodes):
        if not node.name:
            candidate = f"{node.op_type}_{position}"
            while candidate in taken:
                candidate += "_"
            taken.add(candidate)
            node.name = candidate
        node.name = prefix + node.name
        for value in node.outputs:
            if value.name:
                value.name = prefix + value.name
    for subgraph in graph.subgraphs() if nested else ():
        for value in [*subgraph.inputs, *subgraph.initializers.values()]:
            if value.name:
                value.name = prefix + value.name

    for name in list(graph.initializers):
        value = graph.initializers.pop(name)
        value.name = prefix + name
        group_graph.register_initializer(value)

    own_input.replace_all_uses_with(shared_input)
    nodes = list(graph)
    graph.remove(nodes)
    for node in nodes:
        set_subnets(node, [index])
    group_graph.extend(nodes)

    for value, name in zip(original_outputs, output_names, strict=True):
        group_graph.outputs.append(_as_output(value, name, index, own_input, group_graph))
    return output_names


def _as_output(
    value: ir.Value, name: str, index: int, own_input: ir.Value, group_graph: ir.Graph
) -> ir.Value:
    """Return the value to list as group output ``name``, adding an Identity if needed.

    A node output can be listed directly (it already carries the prefixed name). A
    subnet output that is its input, an initializer or a value already listed cannot: a
    value has one name and may be listed once.
    """
    if value.producer() is not None and value not in group_graph.outputs:
        return value
    source = group_graph.inputs[0] if value is own_input else value
    identity = ir.node("Identity", inputs=[source], name=f"{name}_identity")
    alias = identity.outputs[0]
    alias.name, alias.shape, alias.type = name, value.shape, value.type
    set_subnets(identity, [index])
    group_graph.append(identity)
    return alias
