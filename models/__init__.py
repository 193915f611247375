"""NAS supernets, architecture sampling and ONNX export: where the compiler's inputs come from.

The compiler itself only reads ONNX files; this package makes realistic ones: SPOS
subnets whose weights are named after the supernet, groups of architectures that share
layers, and a small seeded demo supernet that exports in seconds.
"""

from __future__ import annotations

import logging

from .export import (
    ARCH_METADATA_KEY,
    SUPERNET_METADATA_KEY,
    build_demo_supernet,
    export_group,
    export_subnet,
    read_arch,
)
from .flops import ModelCost, count_cost
from .sampling import sample_shared_group, sample_uniform
from .spos import SPOS_CHOICES, SposSubnet, SposSupernet

logger = logging.getLogger(__name__)

__all__ = [
    "ARCH_METADATA_KEY",
    "SPOS_CHOICES",
    "SUPERNET_METADATA_KEY",
    "ModelCost",
    "SposSubnet",
    "SposSupernet",
    "build_demo_supernet",
    "count_cost",
    "export_group",
    "export_subnet",
    "read_arch",
    "sample_shared_group",
    "sample_uniform",
]
