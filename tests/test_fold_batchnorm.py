"""BN folded after merging: per-subnet BN statistics no longer break weight sharing."""

from __future__ import annotations

import copy

import torch

import enasa_compiler
from enasa_compiler.cli.demo import group_model_max_error
from enasa_compiler.models.export import export_subnet


def _top_fixed_pair(supernet, tmp_path, recalibrated: bool):
    # same choices on the top 10 layers, different bottom: weight-shared, not compute-shared
    arch_a = (0,) * 10 + (1,) * 10
    arch_b = (2,) * 10 + (1,) * 10
    other = copy.deepcopy(supernet)
    if recalibrated:
        # what SPOS's per-subnet BN recalibration does: other statistics, same weights
        with torch.no_grad():
            for module in other.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.running_var.mul_(1.3)
                    module.running_mean.add_(0.05)
    files = [export_subnet(supernet, arch_a, tmp_path / "a.onnx"),
             export_subnet(other, arch_b, tmp_path / "b.onnx")]
    return files


def _shared_matrices(plan):
    users: dict[str, set[int]] = {}
    for op in plan.operators:
        for weight in op.weights:
            users.setdefault(weight, set()).update(op.subnets)
    return [w for w, subnets in users.items() if subnets == {0, 1}]


def test_recalibrated_subnets_still_share_their_common_layers(demo_supernet, tmp_path):
    shared_stats = enasa_compiler.compile_detailed(
        _top_fixed_pair(demo_supernet, tmp_path / "same", recalibrated=False))
    own_stats = enasa_compiler.compile_detailed(
        _top_fixed_pair(demo_supernet, tmp_path / "own", recalibrated=True))
    baseline = _shared_matrices(shared_stats.plan)
    assert len(baseline) >= 10
    # with their own BN statistics the top layers' weights are still shared: BN stays a
    # digital per-channel op for them instead of being folded into the weights
    assert len(_shared_matrices(own_stats.plan)) == len(baseline)
    kept = [op for op in own_stats.plan.operators if op.op_type == "BatchNormalization"]
    assert kept and not [op for op in shared_stats.plan.operators
                         if op.op_type == "BatchNormalization"]
    for result, folder in ((shared_stats, "same"), (own_stats, "own")):
        files = [tmp_path / folder / "a.onnx", tmp_path / folder / "b.onnx"]
        # BN folded or kept: the validator's own walk of the files accepts both
        assert enasa_compiler.validate(result.plan, models=files) == []
        assert group_model_max_error(result.group_model, files) <= 1e-4
