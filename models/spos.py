"""The SPOS (Single Path One-Shot) ShuffleNetV2 supernet and its fixed-path subnets.

The compiler needs real ONNX subnets sampled from one supernet, whose weights are
traceable to the supernet, so that operators shared by several subnets of a group can
be recognised by weight name. This module rebuilds the search space of
megvii-model/SinglePathOneShot (``src/Supernet``) layer for layer (see
``docs/domain.md`` section 5), with three knobs that the original lacks: a width
multiplier, the input size and the per-stage repeats, so that small variants run in
tests and demos on a CPU.
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

logger = logging.getLogger(__name__)

__all__ = [
    "SPOS_CHOICES",
    "SPOS_HEAD_CHANNELS",
    "SPOS_KERNEL_SIZES",
    "SPOS_STAGE_OUT_CHANNELS",
    "SPOS_STAGE_REPEATS",
    "SPOS_STEM_CHANNELS",
    "SMALL_INPUT_STEM_STRIDE",
    "LayerSpec",
    "ShuffleBlock",
    "ShuffleXceptionBlock",
    "SposSubnet",
    "SposSupernet",
    "channel_shuffle",
    "scale_channels",
]

SPOS_CHOICES = 4
"""Candidate blocks per choice layer: ShuffleNet k=3, k=5, k=7, then Xception."""
SPOS_KERNEL_SIZES = (3, 5, 7)
"""Depthwise kernel size of ShuffleNet choices 0, 1 and 2."""
SPOS_STAGE_REPEATS = (4, 4, 8, 4)
SPOS_STAGE_OUT_CHANNELS = (64, 160, 320, 640)
SPOS_STEM_CHANNELS = 16
SPOS_HEAD_CHANNELS = 1024
_DROPOUT = 0.1
_INPUT_STRIDE = 32  # stem s2 and four stride-2 stages
SMALL_INPUT_STEM_STRIDE = 1
"""Stem stride with ``small_input``: the CIFAR variants of ShuffleNetV2 drop the stem's
stride (and the max-pool, which SPOS has not), so 32x32 images reach the last stage at
2x2 rather than 1x1."""
_CHANNEL_QUANTUM = 4  # the channel shuffle halves a block input that is itself a half


def scale_channels(channels: int, width_mult: float) -> int:
    """Scale a channel count, rounded half up to a multiple of 4 and at least 4.

    A multiple of 4 keeps ``out // 2`` even, which the stride-1 channel split of the
    next block needs.
    """
    quanta = int(channels * width_mult / _CHANNEL_QUANTUM + 0.5)
    return _CHANNEL_QUANTUM * max(1, quanta)


def channel_shuffle(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split channels into the even ones (passed through) and the odd ones (main branch).

    The original code does this with reshape/permute/reshape; two strided slices give
    the same tensors and export as two ``Slice`` nodes that do not depend on the batch.
    """
    return x[:, 0::2], x[:, 1::2]


def _bn(channels: int) -> nn.BatchNorm2d:
    # Supernet BNs have no affine parameters: their statistics differ per path, and
    # SPOS recomputes them for each subnet before scoring it.
    return nn.BatchNorm2d(channels, affine=False)


def _pointwise(inp: int, out: int) -> nn.Conv2d:
    return nn.Conv2d(inp, out, 1, 1, 0, bias=False)


def _depthwise(channels: int, ksize: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(
        channels, channels, ksize, stride, ksize // 2, groups=channels, bias=False
    )


class _ShuffleUnit(nn.Module):
    """What every SPOS choice block shares: the split/concat around ``branch_main``.

    Stride 1: ``cat(even(x), branch_main(odd(x)))``, with ``inp = out // 2``.
    Stride 2: ``cat(branch_proj(x), branch_main(x))``, ``branch_proj`` = dw kxk s2, BN,
    pw inp->inp, BN, ReLU.
    """

    branch_main: nn.Sequential

    def __init__(self, inp: int, out: int, mid: int, stride: int, proj_ksize: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if out <= inp:
            raise ValueError(f"block needs out > inp, got inp={inp} out={out}")
        self.in_channels = inp
        self.out_channels = out
        self.mid_channels = mid
        self.stride = stride
        self.branch_proj: nn.Sequential | None = None
        if stride == 2:
            self.branch_proj = nn.Sequential(
                _depthwise(inp, proj_ksize, 2),
                _bn(inp),
                _pointwise(inp, inp),
                _bn(inp),
                nn.ReLU(),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the block on ``x`` of shape (N, C, H, W)."""
        if self.branch_proj is None:
            passed, x = channel_shuffle(x)
        else:
            passed = self.branch_proj(x)
        return torch.cat((passed, self.branch_main(x)), 1)


class ShuffleBlock(_ShuffleUnit):
    """SPOS choices 0-2: pw inp->mid, BN, ReLU; dw kxk (stride), BN; pw mid->out-inp, BN, ReLU.

    ``ksize`` is 3, 5 or 7 for choices 0, 1, 2; the stride-2 projection uses it too.
    """

    def __init__(self, inp: int, out: int, mid: int, *, ksize: int, stride: int) -> None:
        super().__init__(inp, out, mid, stride, proj_ksize=ksize)
        self.ksize = ksize
        self.branch_main = nn.Sequential(
            _pointwise(inp, mid),
            _bn(mid),
            nn.ReLU(),
            _depthwise(mid, ksize, stride),
            _bn(mid),
            _pointwise(mid, out - inp),
            _bn(out - inp),
            nn.ReLU(),
        )


class ShuffleXceptionBlock(_ShuffleUnit):
    """SPOS choice 3 (Xception): three dw3x3, BN, pw, BN, ReLU units; the first dw strides."""

    def __init__(self, inp: int, out: int, mid: int, *, stride: int) -> None:
        super().__init__(inp, out, mid, stride, proj_ksize=3)
        self.ksize = 3
        self.branch_main = nn.Sequential(
            _depthwise(inp, 3, stride),
            _bn(inp),
            _pointwise(inp, mid),
            _bn(mid),
            nn.ReLU(),
            _depthwise(mid, 3, 1),
            _bn(mid),
            _pointwise(mid, mid),
            _bn(mid),
            nn.ReLU(),
            _depthwise(mid, 3, 1),
            _bn(mid),
            _pointwise(mid, out - inp),
            _bn(out - inp),
            nn.ReLU(),
        )


@dataclass(frozen=True)
class LayerSpec:
    """Shape of one choice layer; ``in_channels`` is the block input, after the split."""

    index: int
    in_channels: int
    out_channels: int
    mid_channels: int
    stride: int


def _make_choice(spec: LayerSpec, choice: int) -> _ShuffleUnit:
    if choice < len(SPOS_KERNEL_SIZES):
        return ShuffleBlock(
            spec.in_channels,
            spec.out_channels,
            spec.mid_channels,
            ksize=SPOS_KERNEL_SIZES[choice],
            stride=spec.stride,
        )
    return ShuffleXceptionBlock(
        spec.in_channels, spec.out_channels, spec.mid_channels, stride=spec.stride
    )


def _layer_specs(
    stem_channels: int, stage_out_channels: Sequence[int], stage_repeats: Sequence[int]
) -> tuple[LayerSpec, ...]:
    specs: list[LayerSpec] = []
    channels = stem_channels
    for out, repeats in zip(stage_out_channels, stage_repeats, strict=True):
        for i in range(repeats):
            stride = 2 if i == 0 else 1
            inp = channels if stride == 2 else out // 2
            specs.append(LayerSpec(len(specs), inp, out, out // 2, stride))
            channels = out
    return tuple(specs)




class SposSupernet(nn.Module):
    """The SPOS ShuffleNetV2 supernet: 20 choice layers x 4 blocks at the default size.

    Module names match the original (``first_conv``, ``features.{layer}.{choice}``,
    ``conv_last``, ``classifier``) so that its checkpoints load and exported initializer
    names point back here.

    Args:
        width_mult: Scales stem, stage and head channels (see :func:`scale_channels`).
        num_classes: Classifier outputs.
        input_size: Image side; a multiple of 32 because the network strides by 32.
        stage_repeats: Choice layers per stage; smaller values make tiny test variants.
        small_input: Stem stride 1 instead of 2 (:data:`SMALL_INPUT_STEM_STRIDE`), for
            32x32 images; module names, layers and choices are unchanged.

    """

    supernet_name = "spos"

    def __init__(
        self,
        width_mult: float = 1.0,
        num_classes: int = 1000,
        input_size: int = 224,
        stage_repeats: Sequence[int] = SPOS_STAGE_REPEATS,
        small_input: bool = False,
    ) -> None:
        super().__init__()
        if input_size <= 0 or input_size % _INPUT_STRIDE != 0:
            raise ValueError(f"input_size must be a positive multiple of 32, got {input_size}")
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        if num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if len(stage_repeats) != len(SPOS_STAGE_OUT_CHANNELS) or min(stage_repeats) < 1:
            raise ValueError(f"stage_repeats must be 4 counts >= 1, got {list(stage_repeats)}")
        self.width_mult = width_mult
        self.num_classes = num_classes
        self.input_size = input_size
        self.stage_repeats = tuple(stage_repeats)
        self.small_input = small_input
        stem_stride = SMALL_INPUT_STEM_STRIDE if small_input else 2
        self.stem_channels = scale_channels(SPOS_STEM_CHANNELS, width_mult)
        self.stage_out_channels = tuple(
            scale_channels(c, width_mult) for c in SPOS_STAGE_OUT_CHANNELS
        )
        self.head_channels = scale_channels(SPOS_HEAD_CHANNELS, width_mult)
        self.layer_specs = _layer_specs(
            self.stem_channels, self.stage_out_channels, self.stage_repeats
        )

        self.first_conv = nn.Sequential(
            nn.Conv2d(3, self.stem_channels, 3, stem_stride, 1, bias=False),
            _bn(self.stem_channels),
            nn.ReLU(),
        )
        self.features = nn.ModuleList(
            nn.ModuleList(_make_choice(spec, c) for c in range(SPOS_CHOICES))
            for spec in self.layer_specs
        )
        self.conv_last = nn.Sequential(
            _pointwise(self.stage_out_channels[-1], self.head_channels),
            _bn(self.head_channels),
            nn.ReLU(),
        )
        # Adaptive pooling equals the original AvgPool2d(7) at 224 and follows input_size.
        self.globalpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(_DROPOUT)
        self.classifier = nn.Sequential(nn.Linear(self.head_channels, num_classes, bias=False))
        logger.debug(
            "SPOS supernet: width %.3g, input %d%s, %d layers, stages %s",
            width_mult,
            input_size,
            " (small-input stem)" if small_input else "",
            self.num_layers,
            self.stage_out_channels,
        )

    @property
    def num_layers(self) -> int:
        """Number of choice layers (20 at the default repeats)."""
        return len(self.layer_specs)

    @property
    def num_choices(self) -> int:
        """Candidate blocks per layer."""
        return SPOS_CHOICES

    def check_arch(self, arch: Sequence[int]) -> tuple[int, ...]:
        """Validate an architecture and return it as a tuple of ints.

        Raises:
            ValueError: Wrong length or a choice outside ``[0, SPOS_CHOICES)``.

        """
        arch = tuple(int(c) for c in arch)
        if len(arch) != self.num_layers:
            raise ValueError(f"arch has {plural(len(arch), 'choice')}, supernet has "
                             f"{plural(self.num_layers, 'layer')}")
        bad = [c for c in arch if not 0 <= c < SPOS_CHOICES]
        if bad:
            raise ValueError(f"choices must be in [0, {SPOS_CHOICES}), got {bad}")
        return arch

    def forward(self, x: torch.Tensor, arch: Sequence[int]) -> torch.Tensor:
        """Run the single path ``arch`` (one choice index per layer) on images ``x``."""
        arch = self.check_arch(arch)
        x = self.first_conv(x)
        for layer, choice in enumerate(arch):
            x = self.block(layer, choice)(x)
        return run_head(self, x)

    def block(self, layer: int, choice: int) -> nn.Module:
        """Return candidate ``choice`` of choice layer ``layer``."""
        return cast(nn.ModuleList, self.features[layer])[choice]

    def subnet(self, arch: Sequence[int]) -> SposSubnet:
        """Return the weight-sharing view of this supernet fixed to ``arch``."""
        return SposSubnet(self, arch)


class SposSubnet(SubnetView):
    """One path of a :class:`SposSupernet`, as a plain ``forward(x)`` module to export.

    It holds references to the supernet's modules, so weights (and BN statistics) are
    shared, not copied: changing one changes the other, and ``train()``/``eval()`` here
    also switch the supernet's chosen blocks. Layer ``l`` is registered under
    ``features.{l}.{choice}``, so state-dict and exported initializer names equal the
    supernet's, e.g. ``features.3.2.branch_main.0.weight``.
    """

    STEM = ("first_conv",)
