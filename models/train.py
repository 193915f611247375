"""Train SPOS and FairNAS supernets and recompute subnet BN statistics.

The search scores each candidate subnet with weights inherited from one trained
supernet, so this module provides the two published ways of training it (SPOS: one
uniformly drawn path per step; FairNAS strict fairness: ``num_choices`` paths per step
that use every choice of every layer once, gradients summed, one optimizer update) and
SPOS's scoring protocol: the BN statistics a path saw during training belong to many
paths, so they are recomputed for each subnet on training batches before it is scored
or exported. Building supernets and keeping checkpoints live in :mod:`.checkpoint`.

Two options make a deep supernet learn on a small set (``tests/test_full_depth.py``;
both off by default). Measured on the 20-layer SPOS supernet at width 0.25 on shapes10:
with plain SGD the gradient of the first layer is about 40x the last one's, so during
the learning-rate warm-up the first layers move by more than their own norm per step,
the kernel-size choices :func:`~.checkpoint.align_choice_init` started equal drift
apart (relative distance 1.5 after 25 steps) and the loss rises above chance and stays
there, although any single path trained alone learns. ``adaptive_clip``
(:func:`adaptive_clip_`) bounds each unit's step relative to its weights;
``path_warmup_epochs`` (:class:`PathWarmup`) opens the layers to sampling deepest
first, so early training sees few paths.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from tqdm import tqdm

from enasa_compiler._text import plural
from enasa_compiler.errors import InputError

from .checkpoint import TRAIN_RULES, align_layer_choices
from .data import ImageDataset
from .export import Supernet
from .sampling import sample_strict_fair, sample_uniform

logger = logging.getLogger(__name__)

__all__ = [
    "ESTIMATE_AFTER_STEPS",
    "SCHEDULES",
    "TrainEstimate",
    "PathWarmup",
    "TrainStats",
    "adaptive_clip_",
    "check_data_fits",
    "evaluate_accuracy",
    "deterministic_algorithms",
    "fair_step",
    "lr_factor",
    "recalibrate_batchnorm",
    "spos_step",
    "train_supernet",
]


@dataclass
class TrainStats:
    """What a training run did.

    Attributes:
        step_losses: Mean loss over the step's subnets, one entry per optimizer update.
        epoch_losses: Mean of ``step_losses`` per epoch.
        optimizer_steps: Optimizer updates made.
        seconds: Wall-clock training time.
        threads: Torch threads the run used; the weights are bitwise reproducible for
            the same seed, data, recipe and thread count (see :func:`train_supernet`).

    """

    step_losses: list[float] = field(default_factory=list)
    epoch_losses: list[float] = field(default_factory=list)
    optimizer_steps: int = 0
    seconds: float = 0.0
    threads: int = 0


SCHEDULES = ("linear", "cosine")
"""Learning-rate schedules of :func:`train_supernet`: SPOS's linear decay to zero, or a
cosine decay to zero; either may follow a linear warm-up."""


def lr_factor(done: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Learning-rate multiplier after ``done`` optimizer updates.

    A linear warm-up from ``1 / warmup_steps`` to 1 over the first ``warmup_steps``
    updates, then ``schedule`` (:data:`SCHEDULES`) from 1 down to 0 at ``total_steps``.
    """
    if done < warmup_steps:
        return (done + 1) / warmup_steps
    remaining = max(1, total_steps - warmup_steps)
    progress = min(1.0, (done - warmup_steps) / remaining)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return max(0.0, 1.0 - progress)


@contextmanager
def deterministic_algorithms() -> Iterator[None]:
    """Make torch refuse nondeterministic kernels inside the block, then restore the mode."""
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


ESTIMATE_AFTER_STEPS = 6
"""Steps :func:`train_supernet` times before it reports how long the run will take: few
enough that a user hears within seconds what a long run costs, more than one because
the first step pays for torch's one-time set-up and is left out of the rate."""


@dataclass(frozen=True)
class TrainEstimate:
    """How long a training run will take, extrapolated from its first steps.

    Attributes:
        total_steps: Optimizer updates the run makes in all.
        timed_steps: Steps done when the estimate was made.
        elapsed_s: Wall-clock time of those steps.
        seconds_per_step: Mean time of the timed steps after the first (of the first
            alone when only one was timed).

    """

    total_steps: int
    timed_steps: int
    elapsed_s: float
    seconds_per_step: float

    @property
    def total_s(self) -> float:
        """Estimated wall-clock time of the whole run, the timed steps included."""
        return self.elapsed_s + (self.total_steps - self.timed_steps) * self.seconds_per_step


def _estimate(total_steps: int, step_ends: list[float], started: float) -> TrainEstimate:
    """Extrapolate from the end times of the steps done so far."""
    if not step_ends:
        return TrainEstimate(total_steps, 0, 0.0, 0.0)
    elapsed = step_ends[-1] - started
    if len(step_ends) == 1:
        return TrainEstimate(total_steps, 1, elapsed, elapsed)
    rate = (step_ends[-1] - step_ends[0]) / (len(step_ends) - 1)
    return TrainEstimate(total_steps, len(step_ends), elapsed, rate)


def adaptive_clip_(
    parameters: Iterable[nn.Parameter], ratio: float, eps: float = 1e-3
) -> None:
    """Adaptive gradient clipping (Brock et al. 2021, NFNets), unit-wise, in place.

    Each output unit's gradient (a weight's slice along its first axis; a 1-d parameter
    is one unit) is scaled down so that its norm is at most ``ratio`` times the unit's
    weight norm (floored at ``eps``): no single step moves a unit by more than that
    fraction of itself, however large its raw gradient. Parameters without a gradient
    are skipped.
    """
    if not ratio > 0:
        raise ValueError(f"clipping ratio must be positive, got {ratio}")
    with torch.no_grad():
        for param in parameters:
            if param.grad is None:
                continue
            units = param.shape[0] if param.ndim > 1 else 1
            weight = param.detach().reshape(units, -1)
            grad = param.grad.reshape(units, -1)
            limit = weight.norm(dim=1, keepdim=True).clamp_min(eps) * ratio
            norm = grad.norm(dim=1, keepdim=True).clamp_min(1e-12)
            scale = (limit / norm).clamp_max(1.0)
            param.grad.copy_((grad * scale).reshape(param.grad.shape))


def _clip(supernet: Supernet, adaptive_clip: float | None) -> None:
    if adaptive_clip is not None:
        adaptive_clip_(supernet.parameters(), adaptive_clip)


class PathWarmup:
    """SPOS path sampling that opens the layers to sampling one by one, deepest first.

    For the first ``warmup_steps`` updates only the deepest ``L * done // warmup_steps``
    of the ``L`` layers are drawn uniformly; the others take choice 0, so early training
    sees few distinct paths (a deep supernet whose every layer is drawn from the start
    can sit at chance: each layer's successors see an unrelated channel "language" on
    every step). When a layer opens, its choices are re-aligned to its trained choice 0
    where shapes allow (:func:`~.checkpoint.align_layer_choices`), as progressive
    shrinking lets smaller kernels inherit from the trained one. After the warm-up every
    path is uniform, as in plain SPOS.
    """

    def __init__(self, supernet: Supernet, warmup_steps: int) -> None:
        self.supernet = supernet
        self.warmup_steps = warmup_steps
        self.opened = 0
        self.done = 0

    def open_layers(self) -> int:
        """Return how many layers the current step draws."""
        layers = self.supernet.num_layers
        if self.done >= self.warmup_steps:
            return layers
        return layers * self.done // self.warmup_steps

    def __call__(self, rng: random.Random) -> tuple[int, ...]:
        """Return the path of the next step and advance the warm-up by one step."""
        layers = self.supernet.num_layers
        target = self.open_layers()
        while self.opened < target:
            align_layer_choices(self.supernet, layers - 1 - self.opened)
            self.opened += 1
        self.done += 1
        first_open = layers - target
        return tuple(rng.randrange(self.supernet.num_choices) if layer >= first_open else 0
                     for layer in range(layers))


def spos_step(
    supernet: Supernet,
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    rng: random.Random,
    adaptive_clip: float | None = None,
    arch: Sequence[int] | None = None,
) -> float:
    """Train one uniformly drawn path on one batch (one optimizer update); return the loss.

    Gradients are reset to ``None``, so blocks off the path get neither weight decay nor
    momentum, as in SPOS, which drops the gradients of unused blocks for that reason.
    ``adaptive_clip``: clip the gradients with :func:`adaptive_clip_` at that ratio
    before the update. ``arch``: train this path instead of drawing one (``rng`` unused).
    """
    if arch is None:
        arch = sample_uniform(supernet.num_layers, supernet.num_choices, rng)
    optimizer.zero_grad(set_to_none=True)
    loss = criterion(supernet(images, arch), labels)
    loss.backward()
    _clip(supernet, adaptive_clip)
    optimizer.step()
    return float(loss.detach())


def fair_step(
    supernet: Supernet,
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    rng: random.Random,
    adaptive_clip: float | None = None,
) -> float:
    """Train the ``num_choices`` paths of one strict-fair step on one batch.

    Every choice of every layer is used by exactly one of the paths; their gradients are
    summed and the optimizer updates once, so no choice is favoured by update order.
    ``adaptive_clip``: clip the summed gradients with :func:`adaptive_clip_` at that
    ratio before the update.

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
    _clip(supernet, adaptive_clip)
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
    schedule: str = "linear",
    warmup_epochs: float = 0.0,
    adaptive_clip: float | None = None,
    path_warmup_epochs: float = 0.0,
    optimizer: torch.optim.Optimizer | None = None,
    progress: bool = False,
    on_estimate: Callable[[TrainEstimate], None] | None = None,
) -> TrainStats:
    """Train ``supernet`` in place with SPOS's recipe scaled down to small batches.

    SGD with momentum, weight decay and label smoothing, the learning rate decaying
    to zero over the run (linearly, as SPOS, or on a cosine; after an optional linear
    warm-up); ``rule`` picks :func:`spos_step` or :func:`fair_step`. Batches are
    reshuffled every epoch from ``seed``; the global torch RNG (dropout) is seeded from
    it too and restored afterwards, and torch's deterministic algorithms are required
    during the run.

    What is reproducible: the same seed, data, recipe and torch thread count give
    bitwise the same weights (``tests/test_nas_evidence.py``). A different thread
    count gives a different supernet: CPU kernels split their sums by thread, the last
    bits differ after the first step and training amplifies them. The thread count is
    returned in :class:`TrainStats` so a checkpoint can record it.

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
        schedule: Decay after the warm-up, one of :data:`SCHEDULES`.
        warmup_epochs: Epochs (may be fractional) of linear warm-up before the decay.
        adaptive_clip: Clip each update's gradients unit-wise to this fraction of the
            weights (:func:`adaptive_clip_`); ``None`` (the default) does not clip.
        path_warmup_epochs: Epochs (may be fractional) over which the SPOS rule opens
            the layers to path sampling one by one (:class:`PathWarmup`); 0, the
            default, samples every layer from the first step. SPOS rule only.
        optimizer: Use this optimizer instead of building SGD (its learning rate still
            follows the schedule).
        progress: Show a tqdm progress bar on stderr.
        on_estimate: Called once, after the first :data:`ESTIMATE_AFTER_STEPS` steps
            (or all of them, in a shorter run), with how long the run will take; a
            caller can tell its user before the wait rather than after.

    Raises:
        InputError: Unknown rule, bad counts, or data that does not fit the supernet.

    """
    if rule not in TRAIN_RULES:
        raise InputError(f"unknown training rule '{rule}' (choose from spos, fair)")
    if epochs < 0 or batch_size < 1:
        raise InputError(f"need epochs >= 0 and batch size >= 1, got {epochs}, {batch_size}")
    if schedule not in SCHEDULES:
        raise InputError(f"unknown schedule '{schedule}' (choose from linear, cosine)")
    if not 0.0 <= warmup_epochs <= max(epochs, 0):
        raise InputError(f"warm-up must be in [0, epochs], got {warmup_epochs}")
    if not 0.0 <= path_warmup_epochs <= max(epochs, 0):
        raise InputError(f"path warm-up must be in [0, epochs], got {path_warmup_epochs}")
    if path_warmup_epochs and rule != "spos":
        raise InputError("path warm-up applies to the spos rule only")
    if adaptive_clip is not None and not adaptive_clip > 0:
        raise InputError(f"gradient clipping ratio must be positive, got {adaptive_clip}")
    check_data_fits(supernet, data)
    step = spos_step if rule == "spos" else fair_step
    if optimizer is None:
        optimizer = torch.optim.SGD(
            supernet.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
        )
    steps_per_epoch = -(-len(data) // batch_size)
    planned_steps = epochs * steps_per_epoch
    total_steps = max(1, planned_steps)
    warmup_steps = round(warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda done: lr_factor(done, total_steps, warmup_steps, schedule)
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    rng = random.Random(seed)
    path_warmup = PathWarmup(supernet, round(path_warmup_epochs * steps_per_epoch))
    stats = TrainStats()
    timed = min(ESTIMATE_AFTER_STEPS, planned_steps)
    step_ends: list[float] = []
    started = time.perf_counter()
    if on_estimate is not None and timed == 0:
        on_estimate(_estimate(planned_steps, step_ends, started))
    bar = tqdm(total=planned_steps, desc=f"train {rule}", disable=not progress,
               unit="step", leave=False)
    stats.threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]), deterministic_algorithms(), bar:
        torch.manual_seed(seed)
        supernet.train()
        for epoch in range(epochs):
            losses = []
            for images, labels in data.batches(batch_size, shuffle_seed=seed * 1000 + epoch):
                if path_warmup.warmup_steps:
                    losses.append(spos_step(supernet, optimizer, criterion, images, labels,
                                            rng, adaptive_clip, path_warmup(rng)))
                else:
                    losses.append(step(supernet, optimizer, criterion, images, labels, rng,
                                       adaptive_clip))
                scheduler.step()
                bar.update()
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
                if len(step_ends) < timed:
                    step_ends.append(time.perf_counter())
                    if len(step_ends) == timed and on_estimate is not None:
                        on_estimate(_estimate(planned_steps, step_ends, started))
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
                         f"{plural(supernet.num_classes, 'class', 'classes')}")


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
