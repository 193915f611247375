"""NAS supernets, architecture sampling and ONNX export: where the compiler's inputs come from.

The compiler itself only reads ONNX files; this package makes realistic ones: SPOS and
FairNAS subnets whose weights are named after the supernet, groups of architectures that
share layers (drawn directly or by ENASA's stage-wise evolution), and a small seeded demo
supernet that exports in seconds.
"""

from __future__ import annotations

import logging

from .export import (
    ARCH_METADATA_KEY,
    SUPERNET_METADATA_KEY,
    Supernet,
    build_demo_supernet,
    export_group,
    export_subnet,
    read_arch,
)
from .fairnas import FAIRNAS_A, FAIRNAS_CHOICES, FairnasSubnet, FairnasSupernet
from .flops import ModelCost, count_cost
from .sampling import (
    fixed_half,
    sample_shared_group,
    sample_strict_fair,
    sample_uniform,
    stagewise_children,
)
from .spos import SPOS_CHOICES, SposSubnet, SposSupernet

logger = logging.getLogger(__name__)

__all__ = [
    "ARCH_METADATA_KEY",
    "FAIRNAS_A",
    "FAIRNAS_CHOICES",
    "SPOS_CHOICES",
    "SUPERNET_METADATA_KEY",
    "FairnasSubnet",
    "FairnasSupernet",
    "ModelCost",
    "SposSubnet",
    "SposSupernet",
    "Supernet",
    "build_demo_supernet",
    "count_cost",
    "export_group",
    "export_subnet",
    "fixed_half",
    "read_arch",
    "sample_shared_group",
    "sample_strict_fair",
    "sample_uniform",
    "stagewise_children",
]
