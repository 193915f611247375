"""Mark operators that use the same weights on different inputs (weight sharing).

When two subnets pick the same choice at a layer but differ before it, the layer's
operators read different activations and cannot be computed once, yet their weights
are equal. Such weights need to sit in crossbars only once, and the operators' runs
are time-multiplexed on them (or the weights are replicated). This pass finds those
operators and tags them with a common ``enasa.weight_group`` id for the mapper.
"""

from __future__ import annotations

import logging

import onnx_ir as ir

from enasa_compiler._text import plural

from ._common import WEIGHT_GROUP_KEY, sort_graph, weight_digest, weight_input

logger = logging.getLogger(__name__)

__all__ = ["WeightSharePass"]


class WeightSharePass(ir.passes.InPlacePass):
    """Tag Conv/Gemm/MatMul nodes whose weights are equal but whose inputs differ.

    Members of a group get ``enasa.weight_group = "wg{k}"``, ``k`` numbered in the
    topological order of each group's first member; other nodes carry no such key (tags
    from an earlier run are cleared). Nodes that read the same weights *and* the same
    input are one computation and belong to :class:`~.dedup.DedupPass`; they are not
    tagged unless another node reads those weights on a different input.

    Attributes:
        groups: After :meth:`call`, group id -> names of its member nodes.

    """

    def __init__(self) -> None:
        super().__init__()
        self.groups: dict[str, list[str]] = {}

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Tag weight-sharing nodes of ``model`` in place."""
        graph = model.graph
        sort_graph(graph)
        previous_tags = {
            node: node.metadata_props.pop(WEIGHT_GROUP_KEY)
            for node in graph
            if WEIGHT_GROUP_KEY in node.metadata_props
        }

        # Keyed by op type too: equal numbers in a Conv kernel and a Gemm matrix are
        # unrolled into different crossbar layouts.
        members_by_weight: dict[tuple[str, str], list[ir.Node]] = {}
        for node in graph:
            weight = weight_input(node)
            digest = weight_digest(weight)
            if digest is not None:
                members_by_weight.setdefault((node.op_type, digest), []).append(node)

        self.groups = {}
        taken_names = {node.name for node in graph}
        for members in members_by_weight.values():
            activations = {_activation_input(node) for node in members}
            if len(members) < 2 or len(activations) < 2:
                continue
            group_id = f"wg{len(self.groups)}"
            for node in members:
                if not node.name:
                    node.name = _fresh_node_name(taken_names, node.op_type)
                node.metadata_props[WEIGHT_GROUP_KEY] = group_id
            self.groups[group_id] = [str(node.name) for node in members]
        logger.info("Weight sharing: %s", plural(len(self.groups), "group"))
        tags = {
            node: node.metadata_props[WEIGHT_GROUP_KEY]
            for node in graph
            if WEIGHT_GROUP_KEY in node.metadata_props
        }
        # Report a change only when tags differ, so a PassManager loop can stop early.
        return ir.passes.PassResult(model, modified=tags != previous_tags)


def _activation_input(node: ir.Node) -> ir.Value | None:
    """Return the non-weight operand (input 0, or input 1 of a MatMul with weight first)."""
    weight = weight_input(node)
    if node.op_type == "MatMul" and weight is node.inputs[0]:
        return node.inputs[1]
    return node.inputs[0]


def _fresh_node_name(taken: set[str | None], op_type: str) -> str:
    counter = 0
    while f"{op_type}_{counter}" in taken:
        counter += 1
    name = f"{op_type}_{counter}"
    taken.add(name)
    return name
