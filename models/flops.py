"""Count multiply-accumulates (MACs) and parameters of a PyTorch model by running it once.

NAS papers quote "FLOPs" that are really multiply-adds of the convolutions and fully
connected layers; this counter reproduces that convention so our subnets can be checked
against published numbers (SPOS: 323M, 3.5M params for its searched model). Hooks see
only the modules that actually run, so a supernet counted with one ``arch`` yields that
path's cost, not the whole supernet's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["ModelCost", "conv2d_macs", "count_cost", "linear_macs"]

_COUNTED = (nn.Conv2d, nn.Linear, nn.BatchNorm2d)


@dataclass(frozen=True)
class ModelCost:
    """Cost of one forward pass for a single image.

    Attributes:
        macs: Multiply-accumulates of Conv2d and Linear layers.
        params: Parameters of the Conv2d, Linear and BatchNorm layers that ran
            (affine-free BN contributes nothing; running statistics are not parameters).

    """

    macs: int
    params: int


def conv2d_macs(conv: nn.Conv2d, output_hw: tuple[int, int]) -> int:
    """MACs of one image through ``conv``: ``Cout * Cin/g * Kh * Kw * Hout * Wout``.

    The bias add is not counted, following the usual NAS convention.
    """
    kh, kw = conv.kernel_size
    per_pixel = conv.out_channels * (conv.in_channels // conv.groups) * kh * kw
    return per_pixel * output_hw[0] * output_hw[1]


def linear_macs(linear: nn.Linear, rows: int = 1) -> int:
    """MACs of ``rows`` input vectors per image through ``linear``."""
    return linear.in_features * linear.out_features * rows


def _module_macs(module: nn.Module, output: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        return conv2d_macs(module, (output.shape[-2], output.shape[-1]))
    if isinstance(module, nn.Linear):
        rows_per_image = output[0].numel() // module.out_features
        return linear_macs(module, rows_per_image)
    return 0


def count_cost(
    model: nn.Module, example_input: torch.Tensor, *args: Any, **kwargs: Any
) -> ModelCost:
    """Run ``model(example_input, *args, **kwargs)`` once and count its per-image cost.

    The model runs in eval mode without gradients (its mode is restored afterwards), so
    counting never updates BN running statistics. A module called several times counts
    its MACs each time but its parameters once.

    Args:
        model: Any module; only Conv2d, Linear and BatchNorm2d children are counted.
        example_input: A batch of inputs; MACs are reported per image of the batch.
        *args: Further positional arguments of ``forward`` (e.g. a supernet ``arch``).
        **kwargs: Keyword arguments of ``forward``.

    """
    macs = 0
    ran: dict[int, nn.Module] = {}

    def hook(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal macs
        macs += _module_macs(module, output)
        ran[id(module)] = module

    handles = [
        m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _COUNTED)
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example_input, *args, **kwargs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    params = sum(p.numel() for m in ran.values() for p in m.parameters(recurse=False))
    logger.debug("counted %d MACs, %d params over %d modules", macs, params, len(ran))
    return ModelCost(macs=macs, params=params)
