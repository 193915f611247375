"""Train SPOS and FairNAS supernets and recompute subnet BN statistics.

The search scores each candidate subnet with weights inherited from one trained
supernet, so this module provides the two published ways of training it (SPOS: one
uniformly drawn path per step; FairNAS strict fairness: ``num_choices`` paths per step
that use every choice of every layer once, gradients summed, one optimizer update) and
SPOS's scoring protocol: the BN statistics a path saw during training belong to many
paths, so they are recomputed for each subnet on training batches before it is scored
or exported. Building supernets and keeping checkpoints live in :mod:`.checkpoint`.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from tqdm import tqdm

from enasa_compiler._text import plural
from enasa_compiler.errors import InputError

from .checkpoint import TRAIN_RULES
from .data import ImageDataset
from .export import Supernet
from .sampling import sample_strict_fair, sample_uniform

logger = logging.getLogger(__name__)

__all__ = [
    "ESTIMATE_AFTER_STEPS",
    "SCHEDULES",
    "TrainEstimate",
    "TrainStats",
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
    schedule: str = "linear",
    warmup_epochs: float = 0.0,
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
                losses.append(step(supernet, optimizer, criterion, images, labels, rng))
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
