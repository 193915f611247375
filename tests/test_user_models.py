"""Groups users bring, from torch with both exporters: each compiles, validates, executes.

Acceptance for issue 17: MobileNetV3-style blocks (depthwise, Squeeze-Excitation,
Hardswish, Hardsigmoid), U-Net-style blocks (ConvTranspose, Resize, Concat skip,
InstanceNorm, GroupNorm, ELU, Softplus, Mish), ViT-style blocks (patch conv, LayerNorm,
attention with MatMul of activations and Softmax, GELU MLP) and an MLP (MatMul + bias
Add, Gemm). Every plan is proven against its models by the validator and run through its
tiles, within 1e-4 of onnxruntime.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _user_nets import export, mlp_group, mobilenet_group, unet_group, vit_group

from enasa_compiler.pipeline import compile_detailed
from enasa_compiler.targets import compare_with_onnxruntime, execute_plan
from enasa_compiler.validation.validator import validate

EXPORTERS = {"legacy": False, "dynamo": True}
TOLERANCE = 1e-4


def _export_all(modules, example, folder: Path, tag: str, dynamo: bool) -> list[Path]:
    return [export(m, example, folder / f"{tag}_{i}.onnx", dynamo=dynamo)
            for i, m in enumerate(modules)]


def _compile_prove_execute(files: list[Path], samples: np.ndarray):
    """Compile, validate with the models, execute; return the plan and the worst error."""
    result = compile_detailed(files, "neurosim-22nm")
    violations = validate(result.plan, models=files)
    assert violations == [], [str(v) for v in violations]
    run = execute_plan(result.plan, result.group_model, samples)
    errors = compare_with_onnxruntime(run, files, samples)
    return result.plan, max(errors)


# The dynamo exporter takes seconds a model: its half of the groups runs with the slow
# tests (python -m pytest -q -m slow -n 0, and in CI).
@pytest.fixture(scope="module", params=[
    "legacy", pytest.param("dynamo", marks=pytest.mark.slow)])
def exporter(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(7).standard_normal((3, 3, 16, 16)).astype(np.float32)


def test_mobilenet_blocks_compile_validate_and_match_onnxruntime(exporter, images, tmp_path):
    files = _export_all(mobilenet_group(), torch.from_numpy(images[:1]), tmp_path, "mb",
                        EXPORTERS[exporter])
    plan, error = _compile_prove_execute(files, images)
    assert error < TOLERANCE
    kinds = {op.op_type for op in plan.operators}
    assert {"HardSwish", "HardSigmoid", "Mul", "GlobalAveragePool"} <= kinds
    # Subnets 0 and 1 share the stem and layer 0 (SE included): computed once.
    assert plan.dedup["nodes_removed"] > 0


def test_unet_blocks_compile_validate_and_match_onnxruntime(exporter, images, tmp_path):
    files = _export_all(unet_group(), torch.from_numpy(images[:1]), tmp_path, "unet",
                        EXPORTERS[exporter])
    plan, error = _compile_prove_execute(files, images)
    assert error < TOLERANCE
    kinds = {op.op_type for op in plan.operators}
    # (torch writes F.mish as Softplus, Tanh and Mul.)
    assert {"ConvTranspose", "Resize", "Concat", "InstanceNormalization", "Elu",
            "Softplus"} <= kinds
    transpose = next(op for op in plan.operators if op.op_type == "ConvTranspose")
    assert transpose.kind.value == "mvm" and transpose.weights


def test_vit_dedup_removes_exactly_the_shared_blocks(exporter, images, tmp_path):
    subnets, shared = vit_group()
    example = torch.from_numpy(images[:1])
    files = _export_all(subnets, example, tmp_path, "vit", EXPORTERS[exporter])
    plan, error = _compile_prove_execute(files, images)
    assert error < TOLERANCE
    prefix = compile_detailed([export(shared, example, tmp_path / "shared.onnx",
                                      dynamo=EXPORTERS[exporter])], "neurosim-22nm").plan
    # The patch embedding and the two shared blocks are computed once instead of three
    # times; nothing else is shared (the head has the same weights but other inputs).
    assert plan.dedup["nodes_removed"] == 2 * prefix.dedup["nodes_before"]
    assert plan.dedup["macs_removed"] == 2 * prefix.dedup["macs_before"]
    kinds = {op.op_type for op in plan.operators}
    assert {"LayerNormalization", "Softmax", "MatMul"} <= kinds
    attention = [op for op in plan.operators if op.op_type == "MatMul" and not op.weights]
    assert attention and all(op.macs > 0 for op in attention)


@pytest.mark.slow
def test_mixed_exporters_deduplicate_as_one_exporter(images, tmp_path):
    example = torch.from_numpy(images[:1])
    nets = mobilenet_group(trained_batchnorm=False)
    legacy = _export_all(nets, example, tmp_path, "legacy", dynamo=False)
    dynamo = _export_all(nets, example, tmp_path, "dynamo", dynamo=True)
    mixed = [legacy[0], dynamo[1], legacy[2], dynamo[0]]
    one_exporter = [legacy[0], legacy[1], legacy[2], legacy[0]]
    mixed_plan, error = _compile_prove_execute(mixed, images)
    assert error < TOLERANCE
    reference = compile_detailed(one_exporter, "neurosim-22nm").plan
    assert mixed_plan.dedup == reference.dedup
    # The dynamo copy of subnet 0 is the legacy one: everything of it is shared.
    assert len(mixed_plan.operators) == len(reference.operators)


def test_mlp_with_matmul_bias_add_and_gemm_executes(exporter, tmp_path):
    samples = np.random.default_rng(3).standard_normal((5, 12)).astype(np.float32)
    files = _export_all(mlp_group(), torch.from_numpy(samples[:1]), tmp_path, "mlp",
                        EXPORTERS[exporter])
    plan, error = _compile_prove_execute(files, samples)
    assert error < TOLERANCE
    assert sum(1 for op in plan.operators if op.weights) == 3  # hidden once, two heads
