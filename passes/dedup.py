"""Compute once what several subnets of a group compute identically (compute sharing).

Two operators are the same computation when they have the same domain, op type and
attributes, constant inputs with the same *contents* and the same activation inputs. In
a chain supernet that is exactly the common prefix of the subnets' architectures. The
pass keeps one node per such computation and records on it every subnet that needs it,
which is what the crossbar mapper schedules.

onnx_ir's ``CommonSubexpressionEliminationPass`` matches inputs by object identity and
knows nothing of the subnet tags, so this pass first merges initializers by content and
then runs its own CSE that unions the tags.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Hashable

import onnx_ir as ir
from onnx_ir.passes import common as common_passes

from ._common import (
    DEDUP_KEY_PREFIX,
    count_macs,
    get_subnets,
    has_static_mac_shapes,
    set_subnets,
    sort_graph,
    tensor_digest,
    weight_digest,
)

logger = logging.getLogger(__name__)

__all__ = ["DedupPass", "DedupResult", "DedupStats", "dedup", "read_dedup_stats"]

_NON_DETERMINISTIC_OPS = frozenset(
    {"RandomUniform", "RandomNormal", "RandomUniformLike", "RandomNormalLike", "Multinomial"}
)


@dataclasses.dataclass(frozen=True)
class DedupStats:
    """What deduplication saved, for the whole group (MACs for the whole static batch).

    ``nodes_removed`` is net: an ``Identity`` added to keep a graph output's name (when
    two subnets are identical) counts against it.
    """

    nodes_before: int
    nodes_after: int
    nodes_removed: int
    macs_before: int
    macs_after: int
    macs_removed: int
    initializers_removed: int


class DedupPass(ir.passes.InPlacePass):
    """Merge identical operators of a group model into one node tagged with all subnets.

    :meth:`call` returns a :class:`DedupResult`, the pass result with the call's
    :class:`DedupStats`; the same numbers are written to the model metadata as
    ``enasa.dedup.<field>`` (unless the call found nothing and earlier numbers are
    recorded), so a caller that ran the pass inside a ``PassManager`` (which returns
    its own result) reads them with :func:`read_dedup_stats`. The pass object keeps no
    state between calls. Nodes are topologically sorted as a side effect.

    ``merge_nodes=False`` merges equal initializers only: every subnet keeps its own
    operators (nothing is computed once) while equal weights are still stored once,
    which is the "dedup off" ablation of the evaluation.
    """

    def __init__(self, *, merge_nodes: bool = True) -> None:
        super().__init__()
        self.merge_nodes = merge_nodes

    def call(self, model: ir.Model) -> DedupResult:
        """Deduplicate ``model`` in place."""
        graph = model.graph
        _ensure_static_mac_shapes(model)
        nodes_before, macs_before = len(graph), _total_macs(graph)

        initializers_removed = _merge_equal_initializers(graph)
        sort_graph(graph)
        nodes_merged = _merge_equal_nodes(graph) if self.merge_nodes else 0

        nodes_after, macs_after = len(graph), _total_macs(graph)
        stats = DedupStats(
            nodes_before=nodes_before,
            nodes_after=nodes_after,
            nodes_removed=nodes_before - nodes_after,
            macs_before=macs_before,
            macs_after=macs_after,
            macs_removed=macs_before - macs_after,
            initializers_removed=initializers_removed,
        )
        modified = bool(initializers_removed or nodes_merged)
        already_recorded = f"{DEDUP_KEY_PREFIX}nodes_removed" in model.metadata_props
        if modified or not already_recorded:
            # A rerun that finds nothing (a PassManager loop) keeps the numbers of the run
            # that did the work.
            for field, number in dataclasses.asdict(stats).items():
                model.metadata_props[f"{DEDUP_KEY_PREFIX}{field}"] = str(number)
        logger.info("Dedup: %s", stats)
        return DedupResult(model, modified=modified, stats=stats)


@dataclasses.dataclass
class DedupResult(ir.passes.PassResult):
    """The pass result of :class:`DedupPass`, with what that call merged."""

    stats: DedupStats | None = None


def dedup(model: ir.Model) -> DedupStats:
    """Run :class:`DedupPass` on ``model`` in place and return its statistics."""
    result = DedupPass()(model)
    assert isinstance(result, DedupResult) and result.stats is not None
    return result.stats


def read_dedup_stats(model: ir.Model) -> DedupStats:
    """Return the statistics the last effective :class:`DedupPass` recorded on ``model``.

    Raises:
        ValueError: the model was never deduplicated.

    """
    values = {}
    for field in dataclasses.fields(DedupStats):
        text = model.metadata_props.get(f"{DEDUP_KEY_PREFIX}{field.name}")
        if text is None:
            raise ValueError("the model carries no deduplication statistics")
        values[field.name] = int(text)
    return DedupStats(**values)


def _ensure_static_mac_shapes(model: ir.Model) -> None:
    """Infer shapes when a MAC operator lacks them; MAC counting needs static shapes."""
    if all(has_static_mac_shapes(node) for node in model.graph):
        return
    common_passes.ShapeInferencePass()(model)
    for node in model.graph:
        if not has_static_mac_shapes(node):
            raise ValueError(
                f"{node.op_type} '{node.name}' has no static shapes after shape inference; "
                "fix the batch and image dimensions of the input before deduplication"
            )


def _total_macs(graph: ir.Graph) -> int:
    return sum(count_macs(node) for node in graph)


def _merge_equal_initializers(graph: ir.Graph) -> int:
    """Make initializers with equal contents one value; return how many were removed.

    Unlike ``DeduplicateInitializersPass`` there is no size limit: the weights are what
    must match across subnets, and they are the large tensors.
    """
    kept: dict[str, ir.Value] = {}
    removed = 0
    for value in list(graph.initializers.values()):
        if value.is_graph_input() or value.is_graph_output():
            continue
        digest = weight_digest(value)
        if digest is None:
            continue
        if digest not in kept:
            kept[digest] = value
            continue
        value.replace_all_uses_with(kept[digest])
        assert value.name is not None
        graph.initializers.pop(value.name)
        removed += 1
    return removed


def _attribute_key(attr: ir.Attr) -> Hashable | None:
    """Return a hashable form of an attribute value, or None when it cannot be compared."""
    kind = attr.type
    if kind in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) or attr.is_ref():
        return None
    if kind is ir.AttributeType.TENSOR:
        return tensor_digest(attr.as_tensor())
    if kind is ir.AttributeType.TENSORS:
        return tuple(tensor_digest(tensor) for tensor in attr.as_tensors())
    if kind in (ir.AttributeType.INTS, ir.AttributeType.FLOATS, ir.AttributeType.STRINGS):
        return tuple(attr.value)
    if kind in (ir.AttributeType.INT, ir.AttributeType.FLOAT, ir.AttributeType.STRING):
        return attr.value
    return repr(attr.value)


def _operator_key(node: ir.Node) -> Hashable | None:
    """Return what makes two nodes the same computation, or None if never merged.

    Inputs enter by identity: initializers with equal contents are one value already,
    and duplicate producers earlier in topological order have been rerouted.
    """
    if node.op_type in _NON_DETERMINISTIC_OPS:
        return None
    attributes = []
    for name in sorted(node.attributes):
        value = _attribute_key(node.attributes[name])
        if value is None:
            return None
        attributes.append((name, node.attributes[name].type, value))
    return (
        node.domain,
        node.op_type,
        node.overload,
        len(node.outputs),
        tuple(node.inputs),
        tuple(attributes),
    )


def _merge_equal_nodes(graph: ir.Graph) -> int:
    """Merge nodes with equal keys in topological order; return how many were merged."""
    kept_by_key: dict[Hashable, ir.Node] = {}
    subnets_of: dict[ir.Node, set[int]] = {}  # kept node -> subnets merged into it
    merged: list[ir.Node] = []
    for node in list(graph):
        key = _operator_key(node)
        if key is None:
            continue
        kept = kept_by_key.setdefault(key, node)
        if kept is node:
            continue
        subnets_of.setdefault(kept, set(get_subnets(kept))).update(get_subnets(node))
        _reroute_outputs(graph, removed=node, kept=kept)
        merged.append(node)
        logger.debug("Merged %s '%s' into '%s'", node.op_type, node.name, kept.name)
    # Tags and removals are applied once at the end: rewriting a tag of up to G subnets on
    # every merge, or a ``Graph.remove`` call (which walks all the graph's outputs) per
    # node, would grow with the square of the group size.
    for kept, subnets in subnets_of.items():
        set_subnets(kept, subnets)
    graph.remove(merged, safe=True)
    return len(merged)


def _reroute_outputs(graph: ir.Graph, removed: ir.Node, kept: ir.Node) -> None:
    """Point every use of ``removed``'s outputs at ``kept``'s.

    A graph output is identified by its value's name, and one value cannot carry two
    names or be listed twice, so a removed graph output becomes an ``Identity`` of the
    kept value that keeps the old name and the removed node's subnet tag.
    """
    for old, new in zip(removed.outputs, kept.outputs, strict=True):
        # Only a graph output needs the scan of the outputs (one per subnet): scanning
        # them for every merged node would grow with the square of the group size.
        outputs = enumerate(graph.outputs) if old.is_graph_output() else iter(())
        for index, output in outputs:
            if output is not old:
                continue
            identity = ir.node("Identity", inputs=[new], name=f"{removed.name}_identity")
            alias = identity.outputs[0]
            alias.name, alias.shape, alias.type = old.name, old.shape, old.type
            identity.metadata_props.update(removed.metadata_props)  # its layer key too
            set_subnets(identity, get_subnets(removed))
            graph.insert_before(removed, identity)
            graph.outputs[index] = alias
        old.replace_all_uses_with(new)
