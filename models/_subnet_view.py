"""The weight-sharing view of one supernet path, common to the SPOS and FairNAS spaces.

Both spaces have the same outline: a stem, one chosen block per choice layer, and a
head (``conv_last``, ``globalpool``, ``dropout``, ``classifier``). Only the stem
differs, so the view takes its stem's module names from the subclass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Protocol, cast

import torch
from torch import nn

__all__ = ["HEAD_MODULES", "SubnetView", "run_head"]

# The head every supernet of this package ends with, in the order it runs.
HEAD_MODULES = ("conv_last", "globalpool", "dropout", "classifier")


class _Supernet(Protocol):
    supernet_name: str
    num_classes: int
    input_size: int

    def check_arch(self, arch: Sequence[int]) -> tuple[int, ...]: ...

    def block(self, layer: int, choice: int) -> nn.Module: ...


def run_head(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run ``net``'s head: last conv, global pooling, dropout, classifier on flat features."""
    x = cast(nn.Module, net.conv_last)(x)
    x = cast(nn.Module, net.globalpool)(x)
    x = cast(nn.Module, net.dropout)(x)
    return cast(nn.Module, net.classifier)(x.flatten(1))


class SubnetView(nn.Module):
    """One path of a supernet, as a plain ``forward(x)`` module to export.

    It holds references to the supernet's modules, so weights (and BN statistics) are
    shared, not copied, and ``train()``/``eval()`` here also switch the supernet's
    chosen blocks. Layer ``l`` is registered under ``features.{l}.{choice}``, so
    state-dict and exported initializer names equal the supernet's. Modules are
    registered stem, features, head: the order the supernet itself uses.
    """

    STEM: ClassVar[tuple[str, ...]] = ("first_conv",)

    def __init__(self, supernet: _Supernet, arch: Sequence[int]) -> None:
        super().__init__()
        self.arch = supernet.check_arch(arch)
        self.supernet_name = supernet.supernet_name
        self.num_classes = supernet.num_classes
        self.input_size = supernet.input_size
        for name in self.STEM:
            setattr(self, name, getattr(supernet, name))
        self.features = nn.ModuleList(
            nn.ModuleDict({str(choice): supernet.block(layer, choice)})
            for layer, choice in enumerate(self.arch)
        )
        for name in HEAD_MODULES:
            setattr(self, name, getattr(supernet, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the fixed path on images ``x`` of shape (N, 3, input_size, input_size)."""
        for name in self.STEM:
            x = getattr(self, name)(x)
        for layer, choice in zip(self.features, self.arch, strict=True):
            x = cast(nn.ModuleDict, layer)[str(choice)](x)
        return run_head(self, x)
