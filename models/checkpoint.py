"""Supernet configs and checkpoints: build a supernet from a small config, save and load it.

A trained supernet is stored as its state dict next to the JSON config that rebuilds it
(:class:`SupernetConfig`), so the search can score subnets with the weights training
left. :func:`build_supernet` makes the untrained supernet a config describes, with the
choices of each layer aligned (:func:`align_choice_init`) so training starts well.

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from enasa_compiler.atomic import write_atomic
from enasa_compiler.errors import InputError

from .export import Supernet
from .fairnas import FairnasSupernet
from .spos import SposSupernet

logger = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_FORMAT",
    "SPACES",
    "TRAIN_RULES",
    "SupernetConfig",
    "align_choice_init",
    "align_layer_choices",
    "build_supernet",
    "load_checkpoint",
    "save_checkpoint",
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
_MAX_THREADS = 4096
# What torch.manual_seed accepts.
_MIN_SEED = -(1 << 63)
_MAX_SEED = (1 << 64) - 1


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
        small_input: The small-input stem (fewer stride-2 stages, for 32x32 images; see
            :class:`~.spos.SposSupernet` and :class:`~.fairnas.FairnasSupernet`).
        threads: Torch threads training ran on, ``None`` when not recorded (an untrained
            supernet, or a checkpoint from before this field). Training is bitwise
            reproducible for the same seed, data and thread count only: CPU reductions
            split their sums by thread.

    """

    space: str = "spos"
    width_mult: float = 0.25
    input_size: int = 32
    num_classes: int = 10
    stage_repeats: tuple[int, ...] | None = None
    seed: int = 0
    epochs: int = 0
    rule: str = "spos"
    small_input: bool = False
    threads: int | None = None

    def __post_init__(self) -> None:
        _check_config(self)

    def to_dict(self) -> dict[str, Any]:
        """Return the config as JSON-ready data."""
        data = asdict(self)
        if self.stage_repeats is not None:
            data["stage_repeats"] = list(self.stage_repeats)
        # Optional fields are written only when set, so a default config's JSON (and
        # checkpoint) is what it was before they existed.
        for key, default in _OPTIONAL_FIELDS.items():
            if data[key] == default:
                del data[key]
        return data

    @classmethod
    def from_dict(cls, data: Any) -> SupernetConfig:
        """Rebuild a config from :meth:`to_dict` output, checking every field.

        Raises:
            InputError: Not a mapping, unknown or missing keys, or a bad value.

        """
        fields = sorted(cls.__dataclass_fields__)
        required = sorted(set(fields) - set(_OPTIONAL_FIELDS))
        if not isinstance(data, dict) or not set(required) <= set(data) <= set(fields):
            raise InputError(f"supernet config must be a JSON object with keys {required} "
                             f"and optionally {sorted(_OPTIONAL_FIELDS)}")
        data = {**_OPTIONAL_FIELDS, **data}
        for key, kinds in _FIELD_TYPES.items():
            if isinstance(data[key], bool) or not isinstance(data[key], kinds):
                raise InputError(f"supernet config: bad {key} {data[key]!r}")
        if not isinstance(data["small_input"], bool):
            raise InputError(f"supernet config: bad small_input {data['small_input']!r}")
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
    "threads": (int, type(None)),
}
_OPTIONAL_FIELDS: dict[str, Any] = {"small_input": False, "threads": None}


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
    if not _MIN_SEED <= config.seed <= _MAX_SEED:
        raise InputError(f"seed must fit torch's 64-bit seed, got {config.seed}")
    if config.epochs < 0:
        raise InputError(f"epochs must be >= 0, got {config.epochs}")
    if config.threads is not None and not 1 <= config.threads <= _MAX_THREADS:
        raise InputError(f"threads must be in 1..{_MAX_THREADS}, got {config.threads}")
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
                                       config.input_size, small_input=config.small_input)
        elif config.stage_repeats is None:
            supernet = SposSupernet(config.width_mult, config.num_classes, config.input_size,
                                    small_input=config.small_input)
        else:
            supernet = SposSupernet(config.width_mult, config.num_classes, config.input_size,
                                    config.stage_repeats, small_input=config.small_input)
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
    return sum(align_layer_choices(supernet, layer) for layer in range(supernet.num_layers))


def align_layer_choices(supernet: Supernet, layer: int) -> int:
    """Align the choices of one layer as :func:`align_choice_init` does; how many it set.

    Each choice takes the weights of the first earlier choice it can embed (a smaller
    kernel centred in zeros); it may be called on a trained layer, whose first choice
    then passes its trained weights on (``train_supernet``'s path warm-up does that).
    """
    aligned = 0
    with torch.no_grad():
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
    except RecursionError as exc:
        message = f"{origin}: checkpoint config is not JSON (nested too deeply)"
        raise InputError(message) from exc
    except (TypeError, ValueError) as exc:  # JSONDecodeError, or a 4300-digit integer
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
