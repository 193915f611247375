"""Train SPOS and FairNAS supernets, recompute subnet BN statistics, keep checkpoints.

The search scores each candidate subnet with weights inherited from one trained
supernet, so this module provides the two published ways of training it (SPOS: one
uniformly drawn path per step; FairNAS strict fairness: ``num_choices`` paths per step
that use every choice of every layer once, gradients summed, one optimizer update) and
SPOS's scoring protocol: the BN statistics a path saw during training belong to many
paths, so they are recomputed for each subnet on training batches before it is scored
or exported.

Checkpoints are loaded with ``torch.load(weights_only=True)``, which unpickles only
tensors and plain containers, so a checkpoint from elsewhere cannot run code; the
supernet is rebuilt from the small JSON config stored next to its state dict.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from tqdm import tqdm

from enasa_compiler.atomic import write_atomic
from enasa_compiler.errors import InputError

from .data import ImageDataset
from .export import Supernet
from .fairnas import FairnasSupernet
from .sampling import sample_strict_fair, sample_uniform
from .spos import SposSupernet

logger = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_FORMAT",
    "SPACES",
    "TRAIN_RULES",
    "SupernetConfig",
    "TrainStats",
    "align_choice_init",
    "build_supernet",
    "check_data_fits",
    "evaluate_accuracy",
    "fair_step",
    "load_checkpoint",
    "recalibrate_batchnorm",
    "save_checkpoint",
    "spos_step",
    "train_supernet",
]

SPACES = ("spos", "fairnas")
TRAIN_RULES = ("spos", "fair")
CHECKPOINT_FORMAT = "enasa-supernet/1"
# A tampered config must not make us build a model that exhausts memory before the
# state dict is checked against it.
_MAX_WIDTH = 4.0
_MAX_INPUT_SIZE = 1024
_MAX_CLASSES = 100_000
_STAGES = 4


@dataclass(frozen=True)
class SupernetConfig:
    """What is needed to rebuild a trained supernet, stored in its checkpoint as JSON.

    Attributes:
        space: ``"spos"`` or ``"fairnas"``.
        width_mult: Channel width multiplier.
        input_size: Image side (a multiple of 32).
        num_classes: Classifier outputs.
        stage_repeats: SPOS choice layers per stage; ``None`` for the default (and for
            FairNAS, which has no such knob).
        seed: Seed of the weight initialisation and of training.
        epochs: Training epochs the weights went through.
        rule: Path sampling of training, ``"spos"`` or ``"fair"``.

    """

    space: str = "spos"
    width_mult: float = 0.25
    input_size: int = 32
    num_classes: int = 10
    stage_repeats: tuple[int, ...] | None = None
    seed: int = 0
    epochs: int = 0
    rule: str = "spos"

    def __post_init__(self) -> None:
        _check_config(self)

    def to_dict(self) -> dict[str, Any]:
        """Return the config as JSON-ready data."""
        data = asdict(self)
        if self.stage_repeats is not None:
            data["stage_repeats"] = list(self.stage_repeats)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> SupernetConfig:
        """Rebuild a config from :meth:`to_dict` output, checking every field.

        Raises:
            InputError: Not a mapping, unknown or missing keys, or a bad value.

        """
        fields = sorted(cls.__dataclass_fields__)
        if not isinstance(data, dict) or sorted(data) != fields:
            raise InputError(f"supernet config must be a JSON object with keys {fields}")
        for key, kinds in _FIELD_TYPES.items():
            if isinstance(data[key], bool) or not isinstance(data[key], kinds):
                raise InputError(f"supernet config: bad {key} {data[key]!r}")
        repeats = data["stage_repeats"]
        if repeats is not None:
            if any(isinstance(r, bool) or not isinstance(r, int) for r in repeats):
                raise InputError(f"supernet config: bad stage_repeats {repeats!r}")
            repeats = tuple(repeats)
        width = float(data["width_mult"])
        return cls(**{**data, "stage_repeats": repeats, "width_mult": width})


_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "space": str, "width_mult": (int, float), "input_size": int, "num_classes": int,
    "stage_repeats": (list, type(None)), "seed": int, "epochs": int, "rule": str,
}


def _check_config(config: SupernetConfig) -> None:
    if config.space not in SPACES:
        raise InputError(f"unknown search space '{config.space}' (choose from spos, fairnas)")
    if config.rule not in TRAIN_RULES:
        raise InputError(f"unknown training rule '{config.rule}' (choose from spos, fair)")
    if not 0.0 < config.width_mult <= _MAX_WIDTH:
        raise InputError(f"width must be in (0, {_MAX_WIDTH}], got {config.width_mult}")
    if not 0 < config.input_size <= _MAX_INPUT_SIZE or config.input_size % 32:
        raise InputError(f"input size must be a multiple of 32 up to 1024, got "
                         f"{config.input_size}")
    if not 1 < config.num_classes <= _MAX_CLASSES:
        raise InputError(f"number of classes must be in 2..{_MAX_CLASSES}, got "
                         f"{config.num_classes}")
    if config.epochs < 0:
        raise InputError(f"epochs must be >= 0, got {config.epochs}")
    repeats = config.stage_repeats
    if repeats is not None:
        if config.space != "spos":
            raise InputError("stage repeats apply to the spos space only")
        if len(repeats) != _STAGES or min(repeats) < 1 or max(repeats) > 64:
            raise InputError(f"stage repeats must be 4 counts in 1..64, got {list(repeats)}")


def build_supernet(config: SupernetConfig, *, align_choices: bool = True) -> Supernet:
    """Build the untrained supernet ``config`` describes, initialised from its seed.

    Args:
        config: Space, sizes and seed.
        align_choices: Start the choices of a layer as the same function where their
            shapes allow (see :func:`align_choice_init`).

    The global torch RNG is left untouched.

    """
    supernet: Supernet
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        if config.space == "fairnas":
            supernet = FairnasSupernet(config.width_mult, config.num_classes,
                                       config.input_size)
        elif config.stage_repeats is None:
            supernet = SposSupernet(config.width_mult, config.num_classes, config.input_size)
        else:
            supernet = SposSupernet(config.width_mult, config.num_classes, config.input_size,
                                    config.stage_repeats)
    if align_choices:
        align_choice_init(supernet)
    return supernet


def _embeddable(source: list[nn.Parameter], target: list[nn.Parameter]) -> bool:
    if len(source) != len(target):
        return False
    for src, dst in zip(source, target, strict=True):
        if src.ndim != dst.ndim or src.shape[:-2] != dst.shape[:-2]:
            return False
        if src.ndim == 4 and (src.shape[-1] > dst.shape[-1] or src.shape[-2] > dst.shape[-2]):
            return False
        if src.ndim != 4 and src.shape != dst.shape:
            return False
    return True


def _embed(source: torch.Tensor, target: torch.Tensor) -> None:
    if source.shape == target.shape:
        target.copy_(source)
        return
    # A centred smaller kernel inside zeros computes the same as the smaller kernel:
    # both convolutions pad by k // 2.
    top = (target.shape[-2] - source.shape[-2]) // 2
    left = (target.shape[-1] - source.shape[-1]) // 2
    target.zero_()
    target[..., top : top + source.shape[-2], left : left + source.shape[-1]] = source


def align_choice_init(supernet: Supernet) -> int:
    """Make the choices of each layer start as the same function where shapes allow.

    Choices that differ only in kernel size (SPOS ShuffleNet k=3/5/7; FairNAS k=3/5/7 at
    the same expansion) take the first such choice's weights, smaller kernels centred in
    zeros. Why: with independent random weights every choice emits its own arbitrary
    channel order, so a layer's successors see a different "language" on each step and
    uniform single-path training on a small dataset plateaus near chance for hundreds of
    steps. Sampling rules are unchanged; the zero borders learn like any weight.

    Returns:
        Number of choice blocks aligned to another.

    """
    aligned = 0
    with torch.no_grad():
        for layer in range(supernet.num_layers):
            references: list[list[nn.Parameter]] = []
            for choice in range(supernet.num_choices):
                params = list(supernet.block(layer, choice).parameters())
                reference = next((r for r in references if _embeddable(r, params)), None)
                if reference is None:
                    references.append(params)
                    continue
                for source, target in zip(reference, params, strict=True):
                    _embed(source, target)
                aligned += 1
    return aligned


@dataclass
class TrainStats:
    """What a training run did.

    Attributes:
        step_losses: Mean loss over the step's subnets, one entry per optimizer update.
        epoch_losses: Mean of ``step_losses`` per epoch.
        optimizer_steps: Optimizer updates made.
        seconds: Wall-clock training time.

    """

    step_losses: list[float] = field(default_factory=list)
    epoch_losses: list[float] = field(default_factory=list)
    optimizer_steps: int = 0
    seconds: float = 0.0


def spos_step(
    supernet: Supernet,
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    rng: random.Random,
) -> float:
    """Train one uniformly drawn path on one batch (one optimizer update); return the loss.

    Gradients are reset to ``None``, so blocks off the path get neither weight decay nor
    momentum, as in SPOS, which drops the gradients of unused blocks for that reason.
    """
    arch = sample_uniform(supernet.num_layers, supernet.num_choices, rng)
    optimizer.zero_grad(set_to_none=True)
    loss = criterion(supernet(images, arch), labels)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def fair_step(
    supernet: Supernet,
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    rng: random.Random,
) -> float:
    """Train the ``num_choices`` paths of one strict-fair step on one batch.

    Every choice of every layer is used by exactly one of the paths; their gradients are
    summed and the optimizer updates once, so no choice is favoured by update order.

    Returns:
        The mean loss over the paths.

    """
    archs = sample_strict_fair(supernet.num_layers, supernet.num_choices, rng)
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for arch in archs:
        loss = criterion(supernet(images, arch), labels)
        loss.backward()
        total += float(loss.detach())
    optimizer.step()
    return total / len(archs)


def train_supernet(
    supernet: Supernet,
    data: ImageDataset,
    *,
    rule: str = "spos",
    epochs: int = 1,
    seed: int = 0,
    batch_size: int = 16,
    lr: float = 0.02,
    momentum: float = 0.9,
    weight_decay: float = 4e-5,
    label_smoothing: float = 0.1,
    optimizer: torch.optim.Optimizer | None = None,
    progress: bool = False,
) -> TrainStats:
    """Train ``supernet`` in place with SPOS's recipe scaled down to small batches.

    SGD with momentum, weight decay and label smoothing, the learning rate decaying
    linearly to zero over the run; ``rule`` picks :func:`spos_step` or :func:`fair_step`.
    Batches are reshuffled every epoch from ``seed``; the global torch RNG (dropout) is
    seeded from it too and restored afterwards, so a run is reproducible.

    Args:
        supernet: The SPOS or FairNAS supernet to train.
        data: Training images; their side must equal the supernet's input size.
        rule: ``"spos"`` (one uniform path per step) or ``"fair"`` (strict fairness).
        epochs: Passes over ``data``.
        seed: Seed of the paths, the shuffling and dropout.
        batch_size: Images per step.
        lr: Initial learning rate.
        momentum: SGD momentum.
        weight_decay: L2 penalty.
        label_smoothing: Cross-entropy label smoothing.
        optimizer: Use this optimizer instead of building SGD (its learning rate still
            follows the linear decay).
        progress: Show a tqdm progress bar on stderr.

    Raises:
        InputError: Unknown rule, bad counts, or data that does not fit the supernet.

    """
    if rule not in TRAIN_RULES:
        raise InputError(f"unknown training rule '{rule}' (choose from spos, fair)")
    if epochs < 0 or batch_size < 1:
        raise InputError(f"need epochs >= 0 and batch size >= 1, got {epochs}, {batch_size}")
    check_data_fits(supernet, data)
    step = spos_step if rule == "spos" else fair_step
    if optimizer is None:
        optimizer = torch.optim.SGD(
            supernet.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
        )
    steps_per_epoch = -(-len(data) // batch_size)
    total_steps = max(1, epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda done: max(0.0, 1.0 - done / total_steps)
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    rng = random.Random(seed)
    stats = TrainStats()
    started = time.perf_counter()
    bar = tqdm(total=epochs * steps_per_epoch, desc=f"train {rule}", disable=not progress,
               unit="step", leave=False)
    with torch.random.fork_rng(devices=[]), bar:
        torch.manual_seed(seed)
        supernet.train()
        for epoch in range(epochs):
            losses = []
            for images, labels in data.batches(batch_size, shuffle_seed=seed * 1000 + epoch):
                losses.append(step(supernet, optimizer, criterion, images, labels, rng))
                scheduler.step()
                bar.update()
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
            stats.step_losses += losses
            stats.epoch_losses.append(sum(losses) / len(losses))
            logger.info("epoch %d/%d: loss %.4f", epoch + 1, epochs, stats.epoch_losses[-1])
    stats.optimizer_steps = len(stats.step_losses)
    stats.seconds = time.perf_counter() - started
    return stats


def check_data_fits(supernet: Supernet, data: ImageDataset) -> None:
    """Raise :class:`InputError` unless ``data`` has the supernet's input size and classes."""
    if data.input_size != supernet.input_size:
        raise InputError(f"images are {data.input_size}x{data.input_size}, the supernet "
                         f"takes {supernet.input_size}x{supernet.input_size}")
    if data.num_classes > supernet.num_classes:
        raise InputError(f"labels go up to {data.num_classes - 1}, the supernet has "
                         f"{supernet.num_classes} classes")


def recalibrate_batchnorm(
    supernet: Supernet,
    arch: Sequence[int],
    data: ImageDataset,
    *,
    num_batches: int = 8,
    batch_size: int = 64,
) -> None:
    """Recompute the BN statistics of the path ``arch`` (SPOS's subnet scoring protocol).

    Resets the running statistics of every BN on the path, runs the first
    ``num_batches`` batches of ``data`` (stored order, so every subnet sees the same
    images and subnets that share a prefix get bit-identical prefix statistics) in train
    mode with ``momentum=None`` (a cumulative average over the batches), then leaves the
    supernet in eval mode. Other paths' BNs are untouched; BNs shared with other paths
    now hold this path's statistics.
    """
    if num_batches < 1:
        raise ValueError(f"num_batches must be >= 1, got {num_batches}")
    subnet = supernet.subnet(arch)
    batchnorms = [m for m in subnet.modules() if isinstance(m, _BatchNorm)]
    momenta = [bn.momentum for bn in batchnorms]
    for bn in batchnorms:
        bn.reset_running_stats()
        bn.momentum = None
    subnet.train()
    try:
        with torch.no_grad():
            for index, (images, _) in enumerate(data.batches(batch_size)):
                if index >= num_batches:
                    break
                subnet(images)
    finally:
        for bn, momentum in zip(batchnorms, momenta, strict=True):
            bn.momentum = momentum
        supernet.eval()


def evaluate_accuracy(
    supernet: Supernet, arch: Sequence[int], data: ImageDataset, batch_size: int = 256
) -> float:
    """Top-1 accuracy of the path ``arch`` on ``data`` in eval mode, with torch."""
    supernet.eval()
    correct = 0
    with torch.no_grad():
        for images, labels in data.batches(batch_size):
            correct += int((supernet(images, arch).argmax(1) == labels).sum())
    return correct / max(1, len(data))


def save_checkpoint(
    path: str | os.PathLike[str], supernet: Supernet, config: SupernetConfig
) -> None:
    """Write the supernet's state dict and ``config`` to ``path`` atomically."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": json.dumps(config.to_dict(), sort_keys=True),
        "state_dict": supernet.state_dict(),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_atomic(Path(path), buffer.getvalue())
    logger.info("saved %s supernet checkpoint to %s", config.space, os.fspath(path))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[Supernet, SupernetConfig]:
    """Load a checkpoint written by :func:`save_checkpoint` and rebuild its supernet.

    Raises:
        InputError: Unreadable file, a file ``weights_only`` loading refuses (arbitrary
            pickled objects), another format, a bad config, or a state dict that does
            not match the config.

    """
    origin = os.fspath(path)
    try:
        payload = torch.load(origin, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise InputError(f"{origin}: cannot read checkpoint: {exc.strerror or exc}") from exc
    except pickle.UnpicklingError as exc:
        message = (f"{origin}: not a loadable supernet checkpoint (weights-only loading "
                   "refused it: not a torch file, or it holds arbitrary Python objects)")
        raise InputError(message) from exc
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        message = f"{origin}: not a loadable supernet checkpoint ({_first_line(exc)})"
        raise InputError(message) from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{origin}: not an {CHECKPOINT_FORMAT} checkpoint")
    try:
        config = SupernetConfig.from_dict(json.loads(payload.get("config", "")))
    except (TypeError, json.JSONDecodeError) as exc:
        raise InputError(f"{origin}: checkpoint config is not JSON ({exc})") from exc
    except InputError as exc:
        raise InputError(f"{origin}: {exc}") from exc
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise InputError(f"{origin}: checkpoint state_dict is not a mapping of tensors")
    supernet = build_supernet(config, align_choices=False)
    try:
        supernet.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        message = f"{origin}: state dict does not match its config ({_first_line(exc)})"
        raise InputError(message) from exc
    supernet.eval()
    return supernet, config
