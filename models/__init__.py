"""NAS supernets, architecture sampling and ONNX export: where the compiler's inputs come from.

The compiler itself only reads ONNX files; this package makes realistic ones: SPOS and
FairNAS subnets whose weights are named after the supernet, groups of architectures that
share layers (drawn directly or by ENASA's stage-wise evolution), and a small seeded demo
supernet that exports in seconds. It also trains supernets on images available offline
(:mod:`.data`, :mod:`.train`) and keeps them as checkpoints (:mod:`.checkpoint`). The
package is torch code only and imports nothing of the compiler but its core (errors,
atomic writes); the NAS loop that drives both lives in :mod:`enasa_compiler.search`.
"""

from __future__ import annotations

import logging

from .checkpoint import SupernetConfig, build_supernet, load_checkpoint, save_checkpoint
from .data import (
    BUILTIN_DATASETS,
    ImageDataset,
    load_builtin,
    load_digits_dataset,
    load_npz,
    load_shapes10_dataset,
    train_val_split,
)
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
    sample_distinct_uniform,
    sample_shared_group,
    sample_strict_fair,
    sample_uniform,
    stagewise_children,
)
from .spos import SPOS_CHOICES, SposSubnet, SposSupernet
from .train import TrainStats, evaluate_accuracy, recalibrate_batchnorm, train_supernet

logger = logging.getLogger(__name__)

__all__ = [
    "ARCH_METADATA_KEY",
    "BUILTIN_DATASETS",
    "FAIRNAS_A",
    "FAIRNAS_CHOICES",
    "SPOS_CHOICES",
    "SUPERNET_METADATA_KEY",
    "FairnasSubnet",
    "FairnasSupernet",
    "ImageDataset",
    "ModelCost",
    "SposSubnet",
    "SposSupernet",
    "Supernet",
    "SupernetConfig",
    "TrainStats",
    "build_demo_supernet",
    "build_supernet",
    "count_cost",
    "evaluate_accuracy",
    "export_group",
    "export_subnet",
    "fixed_half",
    "load_builtin",
    "load_checkpoint",
    "load_digits_dataset",
    "load_npz",
    "load_shapes10_dataset",
    "read_arch",
    "recalibrate_batchnorm",
    "sample_distinct_uniform",
    "sample_shared_group",
    "sample_strict_fair",
    "sample_uniform",
    "save_checkpoint",
    "stagewise_children",
    "train_supernet",
    "train_val_split",
]
