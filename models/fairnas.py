"""The FairNAS MobileNetV2-style supernet and its fixed-path subnets.

ENASA is evaluated on two one-shot spaces; this is the second one, next to SPOS
(:mod:`.spos`). Like the SPOS module it rebuilds the public search space
(xiaomi-automl/FairNAS, ``docs/domain.md`` section 5) layer for layer and names weights
after the supernet (``features.{layer}.{choice}.conv.{i}.weight``), so that the compiler
can recognise layers shared by several subnets of a group. A width multiplier and the
input size are the only knobs added, so that small variants run in tests on a CPU.

Choice index order (fixed here, and the same as the FairNAS code's candidate list):
``choice = kernel_index * 2 + expansion_index`` over kernels (3, 5, 7) and expansions
(3, 6), i.e. ``FAIRNAS_CHOICES = ((3, 3), (3, 6), (5, 3), (5, 6), (7, 3), (7, 6))`` as
``(kernel, expansion)`` pairs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from enasa_compiler._text import plural

from ._subnet_view import SubnetView, run_head
from .spos import scale_channels

logger = logging.getLogger(__name__)

__all__ = [
    "FAIRNAS_A",
    "FAIRNAS_CHOICES",
    "FAIRNAS_HEAD_CHANNELS",
    "FAIRNAS_LAYERS",
    "FAIRNAS_SEPARABLE_CHANNELS",
    "FAIRNAS_STEM_CHANNELS",
    "SMALL_INPUT_STEM_STRIDE",
    "FairnasLayerSpec",
    "FairnasSubnet",
    "FairnasSupernet",
    "InvertedResidual",
    "fairnas_choice",
]

FAIRNAS_CHOICES: tuple[tuple[int, int], ...] = tuple(
    (kernel, expansion) for kernel in (3, 5, 7) for expansion in (3, 6)
)
"""``(kernel, expansion)`` of each choice index: (3,3), (3,6), (5,3), (5,6), (7,3), (7,6)."""

FAIRNAS_LAYERS: tuple[tuple[int, int, int], ...] = (
    (16, 32, 2),
    (32, 32, 1),
    (32, 40, 2),
    (40, 40, 1),
    (40, 40, 1),
    (40, 40, 1),
    (40, 80, 2),
    (80, 80, 1),
    (80, 80, 1),
    (80, 80, 1),
    (80, 96, 1),
    (96, 96, 1),
    (96, 96, 1),
    (96, 96, 1),
    (96, 192, 2),
    (192, 192, 1),
    (192, 192, 1),
    (192, 192, 1),
    (192, 320, 1),
)
"""``(in_channels, out_channels, stride)`` of the 19 choice layers, 0-based, at width 1."""

FAIRNAS_STEM_CHANNELS = 32
FAIRNAS_SEPARABLE_CHANNELS = 16
FAIRNAS_HEAD_CHANNELS = 1280
_DROPOUT = 0.2
_INPUT_STRIDE = 32  # stem s2 and four stride-2 choice layers
SMALL_INPUT_STEM_STRIDE = 1
"""Stem stride with ``small_input``: one stride-2 stage fewer, as the CIFAR variants of
MobileNetV2 do (they also unstride a second stage, which would quadruple the cost of the
first layers here), so 32x32 images reach the last stage at 2x2 rather than 1x1."""


def fairnas_choice(kernel: int, expansion: int) -> int:
    """Return the choice index of the block with depthwise ``kernel`` and ``expansion``.

    Raises:
        ValueError: The pair is not in the FairNAS space.

    """
    try:
        return FAIRNAS_CHOICES.index((kernel, expansion))
    except ValueError:
        message = f"no FairNAS choice with kernel {kernel}, expansion {expansion}"
        raise ValueError(message) from None


# Paper Table 2, written as (expansion t, kernel k) per layer like docs/domain.md.
_FAIRNAS_A_TK = (
    (3, 7), (3, 3), (3, 7), (6, 3), (6, 7), (3, 3), (3, 3), (6, 7), (6, 7), (3, 5),
    (6, 3), (3, 5), (3, 5), (6, 3), (6, 3), (6, 7), (6, 3), (6, 7), (6, 5),
)  # fmt: skip
FAIRNAS_A: tuple[int, ...] = tuple(fairnas_choice(k, t) for t, k in _FAIRNAS_A_TK)
"""FairNAS-A as choice indices: 388M multiply-adds and 4.6M parameters at 224x224."""


def _bn(channels: int) -> nn.BatchNorm2d:
    # FairNAS keeps ordinary affine BN in its supernet (unlike SPOS): strict fairness
    # trains every block equally often, and its code uses plain nn.BatchNorm2d.
    return nn.BatchNorm2d(channels)


def _conv_bn(inp: int, out: int, ksize: int, stride: int, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(inp, out, ksize, stride, ksize // 2, groups=groups, bias=False),
        _bn(out),
    ]


class InvertedResidual(nn.Module):
    """A FairNAS choice block: pw in->in*t, BN, ReLU6; dw kxk (stride), BN, ReLU6; pw, BN.

    The input is added to the output when ``stride == 1`` and ``inp == out``.
    """

    def __init__(self, inp: int, out: int, *, ksize: int, expansion: int, stride: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        mid = inp * expansion
        self.in_channels = inp
        self.out_channels = out
        self.mid_channels = mid
        self.ksize = ksize
        self.expansion = expansion
        self.stride = stride
        self.use_residual = stride == 1 and inp == out
        self.conv = nn.Sequential(
            *_conv_bn(inp, mid, 1, 1),
            nn.ReLU6(),
            *_conv_bn(mid, mid, ksize, stride, groups=mid),
            nn.ReLU6(),
            *_conv_bn(mid, out, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the block on ``x`` of shape (N, C, H, W)."""
        y = self.conv(x)
        return x + y if self.use_residual else y


@dataclass(frozen=True)
class FairnasLayerSpec:
    """Shape of one choice layer; its hidden width is ``in_channels * t`` of the choice."""

    index: int
    in_channels: int
    out_channels: int
    stride: int

    @property
    def has_residual(self) -> bool:
        """Whether every choice of this layer adds its input to its output."""
        return self.stride == 1 and self.in_channels == self.out_channels


def _make_choice(spec: FairnasLayerSpec, choice: int) -> InvertedResidual:
    ksize, expansion = FAIRNAS_CHOICES[choice]
    return InvertedResidual(
        spec.in_channels,
        spec.out_channels,
        ksize=ksize,
        expansion=expansion,
        stride=spec.stride,
    )


def _layer_specs(width_mult: float) -> tuple[FairnasLayerSpec, ...]:
    return tuple(
        FairnasLayerSpec(
            i, scale_channels(inp, width_mult), scale_channels(out, width_mult), stride
        )
        for i, (inp, out, stride) in enumerate(FAIRNAS_LAYERS)
    )




class FairnasSupernet(nn.Module):
    """The FairNAS supernet: 19 choice layers x 6 inverted-residual blocks.

    Modules: ``first_conv`` (conv3x3 s2 3->32, BN, ReLU6), ``separable_conv`` (dw3x3, BN,
    ReLU6, pw 32->16, BN), ``features.{layer}.{choice}`` (:class:`InvertedResidual`,
    choice order :data:`FAIRNAS_CHOICES`), ``conv_last`` (1x1 320->1280, BN, ReLU6),
    ``globalpool`` (mean over the image), ``dropout`` (0.2) and ``classifier`` (Linear
    with bias). All BNs are affine, as in the FairNAS code.

    Args:
        width_mult: Scales every channel count, the head included, rounded half up to a
            multiple of 4 (see :func:`~.spos.scale_channels`; MobileNet rounds to 8 and
            keeps the head at 1280 below width 1, which would make tiny variants less
            tiny). Width 1 gives the exact published table.
        num_classes: Classifier outputs.
        input_size: Image side; a multiple of 32 because the network strides by 32.
        small_input: Stem stride 1 instead of 2 (:data:`SMALL_INPUT_STEM_STRIDE`), for
            32x32 images; module names, layers and choices are unchanged.

    """

    supernet_name = "fairnas"

    def __init__(
        self,
        width_mult: float = 1.0,
        num_classes: int = 1000,
        input_size: int = 224,
        small_input: bool = False,
    ) -> None:
        super().__init__()
        if input_size <= 0 or input_size % _INPUT_STRIDE != 0:
            raise ValueError(f"input_size must be a positive multiple of 32, got {input_size}")
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        if num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.width_mult = width_mult
        self.num_classes = num_classes
        self.input_size = input_size
        self.small_input = small_input
        self.stem_channels = scale_channels(FAIRNAS_STEM_CHANNELS, width_mult)
        self.separable_channels = scale_channels(FAIRNAS_SEPARABLE_CHANNELS, width_mult)
        self.head_channels = scale_channels(FAIRNAS_HEAD_CHANNELS, width_mult)
        self.layer_specs = _layer_specs(width_mult)

        stem, sep = self.stem_channels, self.separable_channels
        stem_stride = SMALL_INPUT_STEM_STRIDE if small_input else 2
        self.first_conv = nn.Sequential(*_conv_bn(3, stem, 3, stem_stride), nn.ReLU6())
        self.separable_conv = nn.Sequential(
            *_conv_bn(stem, stem, 3, 1, groups=stem), nn.ReLU6(), *_conv_bn(stem, sep, 1, 1)
        )
        self.features = nn.ModuleList(
            nn.ModuleList(_make_choice(spec, c) for c in range(len(FAIRNAS_CHOICES)))
            for spec in self.layer_specs
        )
        self.conv_last = nn.Sequential(
            *_conv_bn(self.layer_specs[-1].out_channels, self.head_channels, 1, 1),
            nn.ReLU6(),
        )
        # FairNAS takes x.mean(3).mean(2); adaptive pooling is the same and exports as
        # GlobalAveragePool.
        self.globalpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(_DROPOUT)
        self.classifier = nn.Sequential(nn.Linear(self.head_channels, num_classes))
        logger.debug(
            "FairNAS supernet: width %.3g, input %d, %d layers, outputs %s",
            width_mult,
            input_size,
            self.num_layers,
            [spec.out_channels for spec in self.layer_specs],
        )

    @property
    def num_layers(self) -> int:
        """Number of choice layers (19)."""
        return len(self.layer_specs)

    @property
    def num_choices(self) -> int:
        """Candidate blocks per layer (6)."""
        return len(FAIRNAS_CHOICES)

    def check_arch(self, arch: Sequence[int]) -> tuple[int, ...]:
        """Validate an architecture and return it as a tuple of ints.

        Raises:
            ValueError: Wrong length or a choice outside ``[0, 6)``.

        """
        arch = tuple(int(c) for c in arch)
        if len(arch) != self.num_layers:
            raise ValueError(f"arch has {plural(len(arch), 'choice')}, supernet has "
                             f"{plural(self.num_layers, 'layer')}")
        bad = [c for c in arch if not 0 <= c < self.num_choices]
        if bad:
            raise ValueError(f"choices must be in [0, {self.num_choices}), got {bad}")
        return arch

    def forward(self, x: torch.Tensor, arch: Sequence[int]) -> torch.Tensor:
        """Run the single path ``arch`` (one choice index per layer) on images ``x``."""
        arch = self.check_arch(arch)
        x = self.separable_conv(self.first_conv(x))
        for layer, choice in enumerate(arch):
            x = self.block(layer, choice)(x)
        return run_head(self, x)

    def block(self, layer: int, choice: int) -> InvertedResidual:
        """Return candidate ``choice`` of choice layer ``layer``."""
        return cast(InvertedResidual, cast(nn.ModuleList, self.features[layer])[choice])

    def subnet(self, arch: Sequence[int]) -> FairnasSubnet:
        """Return the weight-sharing view of this supernet fixed to ``arch``."""
        return FairnasSubnet(self, arch)


class FairnasSubnet(SubnetView):
    """One path of a :class:`FairnasSupernet`, as a plain ``forward(x)`` module to export.

    It holds references to the supernet's modules, so weights and BN statistics are
    shared, not copied, and ``train()``/``eval()`` here also switch the supernet's chosen
    blocks. Layer ``l`` is registered under ``features.{l}.{choice}``, so state-dict and
    exported initializer names equal the supernet's, e.g. ``features.3.2.conv.0.weight``.
    """

    STEM = ("first_conv", "separable_conv")
