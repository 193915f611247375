"""Fold BatchNormalization into convolutions after merging, without breaking sharing.

Folding BN into each subnet before merging rewrites every conv weight with that
subnet's BN statistics. When subnets recompute BN statistics for themselves (SPOS's
evaluation protocol), a layer whose choice several subnets share then gets different
weights in each, and the weight sharing ENASA's top-fixed groups rely on is lost.

Run on the merged, deduplicated group, this pass folds a BN into its conv only when
that keeps sharing intact: either the conv's weights serve no other conv, or every
conv reading those weights is followed by a BN with identical parameters (the folded
weights are then equal again and lowering still shares them). Otherwise the BN stays
and runs on the digital units as a per-channel scale and shift, and the raw weights
stay shared in the crossbars.
"""

from __future__ import annotations

import logging

import onnx_ir as ir
from onnx_ir.passes import common as common_passes

from ._common import weight_digest
from .canonicalize import fold_batch_norm

logger = logging.getLogger(__name__)

__all__ = ["FoldBatchNormPass"]


def _single_batch_norm(conv: ir.Node) -> ir.Node | None:
    """Return the BN that alone consumes this conv's output, if there is one."""
    output = conv.outputs[0]
    uses = list(output.uses())
    if output.is_graph_output() or len(uses) != 1:
        return None
    consumer = uses[0].node
    if consumer.op_type != "BatchNormalization" or consumer.domain not in ("", "ai.onnx"):
        return None
    return consumer


def _bn_key(batch_norm: ir.Node) -> tuple[object, ...] | None:
    digests = tuple(weight_digest(v) for v in batch_norm.inputs[1:5])
    if len(digests) != 4 or any(d is None for d in digests):
        return None
    return (*digests, batch_norm.attributes.get_float("epsilon", 1e-5))


class FoldBatchNormPass(ir.passes.InPlacePass):
    """Fold BN into convs where every conv sharing the weights would fold identically.

    Attributes:
        folded: after :meth:`call`, how many BN nodes were folded.
        kept: how many were kept as digital operations to preserve weight sharing.

    """

    def __init__(self) -> None:
        super().__init__()
        self.folded = 0
        self.kept = 0

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Fold BatchNormalization nodes of ``model`` in place."""
        graph = model.graph
        readers: dict[ir.Value, list[ir.Node]] = {}
        for node in graph:
            if node.op_type == "Conv" and len(node.inputs) > 1 and node.inputs[1] is not None:
                readers.setdefault(node.inputs[1], []).append(node)
        self.folded = self.kept = 0
        for convs in readers.values():
            norms = [_single_batch_norm(conv) for conv in convs]
            keys = {_bn_key(bn) if bn is not None else None for bn in norms}
            foldable = None not in keys and len(keys) == 1
            for bn in norms:
                if bn is None:
                    continue
                if foldable and fold_batch_norm(graph, bn):
                    self.folded += 1
                else:
                    self.kept += 1
        if self.folded:
            common_passes.RemoveUnusedNodesPass()(model)
        logger.info("BatchNorm: %d folded, %d kept to keep weights shared", self.folded,
                    self.kept)
        return ir.passes.PassResult(model, modified=self.folded > 0)
