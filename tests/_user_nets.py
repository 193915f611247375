"""Tiny torch models of the kinds users bring: MobileNetV3 blocks, U-Net, ViT, MLP.

Each builder returns subnets that share modules (hence weights) the way a supernet's
subnets do, so a group of them has something to deduplicate. Models are a few thousand
parameters, so that exporting and compiling them takes a fraction of a second.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812 - torch's own convention
from torch import nn

INPUT_NAME = "x"


def export(module: nn.Module, example: torch.Tensor, path: Path, *, dynamo: bool) -> Path:
    """Export ``module`` in eval mode with one exporter; return the path."""
    options = {} if dynamo else {"opset_version": 17}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (example,), str(path), dynamo=dynamo,
                          input_names=[INPUT_NAME], **options)
    return path


def randomise_batchnorm(module: nn.Module, seed: int) -> None:
    """Give every BatchNorm statistics and affine weights that are not the identity."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for norm in module.modules():
            if isinstance(norm, nn.BatchNorm2d):
                n = norm.num_features
                norm.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                norm.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                norm.weight.copy_(0.5 + torch.rand(n, generator=generator))
                norm.bias.copy_(0.1 * torch.randn(n, generator=generator))


# ---- MobileNetV3-style blocks ----------------------------------------------------------
class SqueezeExcite(nn.Module):
    """Squeeze-Excitation: global pool, 1x1 reduce, ReLU, 1x1 expand, Hardsigmoid gate."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, max(1, channels // 4), 1)
        self.expand = nn.Conv2d(max(1, channels // 4), channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.expand(F.relu(self.reduce(F.adaptive_avg_pool2d(x, 1))))
        return x * F.hardsigmoid(gate)


class MobileBlock(nn.Module):
    """Inverted residual: pw expand, depthwise kxk, optional SE, pw project; Hardswish."""

    def __init__(self, channels: int, kernel: int, expansion: int, se: bool) -> None:
        super().__init__()
        mid = channels * expansion
        self.expand = nn.Sequential(nn.Conv2d(channels, mid, 1, bias=False),
                                    nn.BatchNorm2d(mid), nn.Hardswish())
        self.depthwise = nn.Sequential(
            nn.Conv2d(mid, mid, kernel, padding=kernel // 2, groups=mid, bias=False),
            nn.BatchNorm2d(mid), nn.Hardswish())
        self.excite = SqueezeExcite(mid) if se else nn.Identity()
        self.project = nn.Sequential(nn.Conv2d(mid, channels, 1, bias=False),
                                     nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(self.excite(self.depthwise(self.expand(x))))


class Chain(nn.Module):
    """stem -> blocks -> global pool -> linear head."""

    def __init__(self, stem: nn.Module, blocks: list[nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.stem, self.blocks, self.head = stem, nn.Sequential(*blocks), head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1).flatten(1))


def mobilenet_group(seed: int = 0, *, trained_batchnorm: bool = True) -> list[nn.Module]:
    """Three subnets of a 2-layer MobileNetV3-style space; 0 and 1 share layer 0.

    ``trained_batchnorm=False`` keeps torch's initial BN statistics: both exporters then
    fold BN into the convs to the same bits. With other statistics their float32
    folding may round a bias differently in the last place, and such a conv is then
    not the same operator under the two exporters.
    """
    torch.manual_seed(seed)
    stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8),
                         nn.Hardswish())
    layer0 = {3: MobileBlock(8, 3, 3, se=True), 5: MobileBlock(8, 5, 3, se=False)}
    layer1 = {3: MobileBlock(8, 3, 2, se=False), 5: MobileBlock(8, 5, 2, se=True)}
    head = nn.Linear(8, 10)
    nets: list[nn.Module] = [Chain(stem, [layer0[a], layer1[b]], head)
                             for a, b in ((3, 3), (3, 5), (5, 3))]
    if trained_batchnorm:
        for net in nets:
            randomise_batchnorm(net, seed)
    return nets


# ---- U-Net-style block -----------------------------------------------------------------
class UNetBlock(nn.Module):
    """Encoder conv, strided down conv, up (ConvTranspose or Resize), Concat skip, decoder.

    ``up``: ``"transpose"`` (ConvTranspose2d) or an ``F.interpolate`` mode (``nearest``,
    ``bilinear``). ``norm``: ``"instance"`` (InstanceNorm2d after the up path) or
    ``"group"`` (GroupNorm after the down path). Activations ELU, Softplus and Mish.
    """

    def __init__(self, up: str, norm: str) -> None:
        super().__init__()
        self.up_mode, self.norm_kind = up, norm
        self.encode = nn.Conv2d(3, 8, 3, padding=1)
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.up = (nn.ConvTranspose2d(16, 8, 2, stride=2) if up == "transpose"
                   else nn.Conv2d(16, 8, 1))
        self.norm = (nn.InstanceNorm2d(8, affine=True) if norm == "instance"
                     else nn.GroupNorm(4, 16))
        self.decode = nn.Conv2d(16, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = F.relu(self.encode(x))
        low = self.down(skip)
        if self.norm_kind == "group":
            low = self.norm(low)
        low = F.elu(low)
        if self.up_mode == "transpose":
            up = self.up(low)
        else:
            up = self.up(F.interpolate(low, scale_factor=2.0, mode=self.up_mode))
        if self.norm_kind == "instance":
            up = self.norm(up)
        return F.mish(self.decode(torch.cat([skip, F.softplus(up)], 1)))


def unet_group(seed: int = 0) -> list[nn.Module]:
    """ConvTranspose+InstanceNorm, nearest Resize+GroupNorm, bilinear Resize+InstanceNorm."""
    torch.manual_seed(seed)
    return [UNetBlock("transpose", "instance"), UNetBlock("nearest", "group"),
            UNetBlock("bilinear", "instance")]


# ---- ViT-style -------------------------------------------------------------------------
class Attention(nn.Module):
    """Multi-head self-attention written out: qkv Linear, MatMul, Softmax, MatMul, proj."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(
            2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5, dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(n, t, d))


class Block(nn.Module):
    """Pre-norm transformer block: LayerNorm, attention, LayerNorm, GELU MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, dim * mlp_ratio), nn.Linear(dim * mlp_ratio, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ViT(nn.Module):
    """Patch-embedding conv, transformer blocks, LayerNorm, mean over tokens, head."""

    def __init__(self, patch: nn.Module, blocks: list[nn.Module], norm: nn.Module,
                 head: nn.Module) -> None:
        super().__init__()
        self.patch, self.blocks = patch, nn.ModuleList(blocks)
        self.norm, self.head = norm, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x).mean(1))


def vit_group(seed: int = 0) -> tuple[list[nn.Module], nn.Module]:
    """Three subnets sharing the patch embedding and two blocks, then differing.

    They differ in the MLP ratio of block 3 (1, 4, 2) and in depth (the third has a
    fourth block). Also returned: the shared part alone (patch embedding and the two
    blocks), whose node count is what dedup must remove once per extra subnet.
    """
    torch.manual_seed(seed)
    dim, heads = 16, 2
    patch = nn.Conv2d(3, dim, 4, stride=4)
    shared = [Block(dim, heads, 2), Block(dim, heads, 2)]
    third = {ratio: Block(dim, heads, ratio) for ratio in (1, 2, 4)}
    fourth = Block(dim, heads, 2)
    norm, head = nn.LayerNorm(dim), nn.Linear(dim, 10)
    subnets: list[nn.Module] = [ViT(patch, [*shared, third[1]], norm, head),
                                ViT(patch, [*shared, third[4]], norm, head),
                                ViT(patch, [*shared, third[2], fourth], norm, head)]
    return subnets, ViT(patch, shared, nn.Identity(), nn.Identity())


# ---- MLP -------------------------------------------------------------------------------
class MatMulMLP(nn.Module):
    """x @ W + b (MatMul then a bias Add), ReLU, then a Linear (Gemm)."""

    def __init__(self, hidden: nn.Parameter, bias: nn.Parameter, out: nn.Linear) -> None:
        super().__init__()
        self.hidden, self.bias, self.out = hidden, bias, out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(torch.matmul(x, self.hidden) + self.bias))


def mlp_group(seed: int = 0) -> list[nn.Module]:
    """Two MLPs sharing their hidden layer, with different output layers."""
    torch.manual_seed(seed)
    hidden, bias = nn.Parameter(torch.randn(12, 24) / 4), nn.Parameter(torch.randn(24) / 4)
    return [MatMulMLP(hidden, bias, nn.Linear(24, 5)), MatMulMLP(hidden, bias,
                                                                 nn.Linear(24, 5))]
