"""Graph-level passes of the compiler (onnx_ir passes) and, below them, lowering and mapping.

Each pass composes with the passes onnx_ir ships, e.g.
``PassManager([MergeGroupPass(subnets[1:]), DedupPass(), WeightSharePass()])(subnets[0])``.
"""

from ._common import (
    GROUP_SIZE_KEY,
    SUBNET_NAMES_KEY,
    SUBNET_OUTPUTS_KEY,
    SUBNETS_KEY,
    WEIGHT_GROUP_KEY,
    count_macs,
    get_subnets,
    set_subnets,
    weight_digest,
)
from .canonicalize import CanonicalizePass
from .dedup import DedupPass, DedupResult, DedupStats, dedup, read_dedup_stats
from .fold_batchnorm import FoldBatchNormPass
from .merge_group import MergeGroupPass, merge_group
from .weight_share import WeightSharePass

__all__ = [
    "GROUP_SIZE_KEY",
    "SUBNETS_KEY",
    "SUBNET_NAMES_KEY",
    "SUBNET_OUTPUTS_KEY",
    "WEIGHT_GROUP_KEY",
    "CanonicalizePass",
    "DedupPass",
    "DedupResult",
    "DedupStats",
    "FoldBatchNormPass",
    "MergeGroupPass",
    "WeightSharePass",
    "count_macs",
    "dedup",
    "get_subnets",
    "merge_group",
    "read_dedup_stats",
    "set_subnets",
    "weight_digest",
]
