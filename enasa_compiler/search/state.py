"""The state of one architecture search: what was evaluated, and what to try next.

:class:`SearchState` keeps the history of evaluated subnets and proposes each new group
for :func:`~.search.search`: uniform or strict-fair draws, SPOS's evolution (mutation
and crossover of the top-k parents) or ENASA's stage-wise children, never repeating an
evaluated architecture nor one over the MAC budget.

Between generations the state is its history and the state of its one random source (a
``random.Random``; the search draws from nothing else), so :meth:`SearchState.to_dict`
and :meth:`SearchState.restore` save and rebuild it exactly, as JSON, for a search that
resumes where a checkpoint left it.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from enasa_compiler.atomic import json_text, write_atomic
from enasa_compiler.errors import InputError
from enasa_compiler.models.data import ImageDataset
from enasa_compiler.models.export import Supernet
from enasa_compiler.models.flops import count_cost
from enasa_compiler.models.sampling import (
    Arch,
    fixed_half,
    sample_strict_fair,
    sample_uniform,
    stagewise_children,
)

if TYPE_CHECKING:
    from enasa_compiler.search.loop import SearchConfig

logger = logging.getLogger(__name__)


class Strategy(enum.StrEnum):
    """How each generation's architectures are proposed (see :mod:`.loop`)."""

    UNIFORM = "uniform"
    FAIR = "fair"
    EVOLUTION = "evolution"
    STAGEWISE = "stagewise"

__all__ = [
    "CHECKPOINT_FILE",
    "CHECKPOINT_FORMAT",
    "SearchState",
    "Strategy",
    "inputs_fingerprint",
    "random_state_from_json",
    "random_state_to_json",
    "read_checkpoint",
    "write_checkpoint",
]

_TRIES_PER_CHILD = 200  # redraws before a duplicate-prone proposer falls back to random


class SearchState:
    """The state of one search: what was evaluated, and how to propose the next group."""

    def __init__(self, supernet: Supernet, config: SearchConfig) -> None:
        self.supernet = supernet
        self.config = config
        self.rng = random.Random(config.seed)
        self.layers = supernet.num_layers
        self.choices = supernet.num_choices
        self.history: list[dict[str, Any]] = []
        self.seen: set[Arch] = set()  # evaluated, or proposed in this generation
        self.evaluated: dict[Arch, dict[str, Any]] = {}  # each one's record, its cache
        self._macs: dict[Arch, int] = {}
        size = supernet.input_size
        self._example = torch.zeros(1, 3, size, size)

    def macs(self, arch: Arch) -> int:
        """Return the multiply-accumulates of ``arch`` (counted once, then cached)."""
        if arch not in self._macs:
            self._macs[arch] = count_cost(self.supernet, self._example, arch).macs
        return self._macs[arch]

    def accuracy(self, arch: Arch) -> float | None:
        """Return the accuracy ``arch`` was measured at, or ``None`` if never evaluated.

        The search's cache: an architecture is evaluated once, and every later proposal
        of it is refused (:meth:`admissible`) rather than scored again.
        """
        record = self.evaluated.get(tuple(arch))
        return None if record is None else float(record["accuracy"])

    def admissible(self, arch: Arch, group: list[Arch]) -> bool:
        """Return whether ``arch`` is new to the search and the group, and within budget."""
        if arch in self.seen or arch in group:
            return False
        return self.config.max_macs is None or self.macs(arch) <= self.config.max_macs

    def ranked(self) -> list[dict[str, Any]]:
        """Feasible records by accuracy (earliest first on ties)."""
        feasible = [r for r in self.history if r["feasible"]]
        return sorted(feasible, key=lambda r: -r["accuracy"])

    def parents(self) -> list[Arch]:
        """Return the top-k architectures the next children are bred from."""
        ranked = self.ranked()
        if not ranked:
            # Nothing meets the latency bound yet: breed from the fastest to move there.
            ranked = sorted(self.history, key=lambda r: r["latency_ns"])
        return [tuple(r["arch"]) for r in ranked[: self.config.parents]]

    def fill(
        self,
        group: list[Arch],
        draw: Callable[[], list[Arch]],
        count: int,
        fallback: Callable[[], Arch] | None = None,
    ) -> list[Arch]:
        """Add drawn architectures until ``group`` holds ``count``.

        When draws keep repeating evaluated architectures, ``fallback`` draws (uniform by
        default) fill the rest.
        """
        for source in (draw, lambda: [(fallback or self._uniform)()]):
            tries = 0
            while len(group) < count and tries < _TRIES_PER_CHILD * count:
                for arch in source():
                    tries += 1
                    if len(group) < count and self.admissible(arch, group):
                        group.append(arch)
            if len(group) == count:
                return group
            logger.info("proposer found %d of %d new architectures", len(group), count)
        if not group:
            raise InputError("no architecture left to evaluate (all seen, or over --max-macs)")
        return group

    def _uniform(self) -> Arch:
        return sample_uniform(self.layers, self.choices, self.rng)

    def propose(self, generation: int) -> list[Arch]:
        """Return the architectures of one group of ``generation``, by the strategy."""
        size = self.config.group_size
        strategy = self.config.strategy
        if strategy == Strategy.FAIR:
            return self.fill([], lambda: sample_strict_fair(self.layers, self.choices,
                                                            self.rng), size)
        if strategy == Strategy.UNIFORM or generation == 0:
            return self.fill([], lambda: [self._uniform()], size)
        parents = self.parents()
        if strategy == Strategy.STAGEWISE:
            return self._stagewise(parents, generation)
        return self._evolution(parents)

    def propose_generation(self, generation: int, groups: int) -> list[list[Arch]]:
        """Propose ``groups`` groups for ``generation``, no architecture in two of them.

        The groups are drawn one after another from the one random source, so a single
        group per generation draws exactly what :meth:`propose` does.
        """
        proposed = []
        for _ in range(groups):
            group = self.propose(generation)
            self.seen.update(group)
            proposed.append(group)
        return proposed

    def _stagewise(self, parents: list[Arch], generation: int) -> list[Arch]:
        # Generation 1 fixes the bottom half (compute-shared), generation 2 the top...
        half = generation - 1
        best = parents[0]
        fixed = set(fixed_half(self.layers, half))

        def children() -> list[Arch]:
            return stagewise_children(best, parents, 1, half, self.rng,
                                      num_choices=self.choices,
                                      mutation_prob=self.config.mutation_prob)

        def sharing_random() -> Arch:
            # When children keep repeating, random free layers still share the half.
            return tuple(best[i] if i in fixed else c for i, c in enumerate(self._uniform()))

        return self.fill([], children, self.config.group_size, sharing_random)

    def _mutate(self, parent: Arch) -> Arch:
        return tuple(
            self.rng.randrange(self.choices)
            if self.rng.random() < self.config.mutation_prob else gene
            for gene in parent
        )

    def _cross(self, first: Arch, second: Arch) -> Arch:
        return tuple(a if self.rng.random() < 0.5 else b
                     for a, b in zip(first, second, strict=True))

    def _evolution(self, parents: list[Arch]) -> list[Arch]:
        size = self.config.group_size
        group = self.fill([], lambda: [self._mutate(self.rng.choice(parents))], size // 2)

        def crossed() -> list[Arch]:
            first, second = self.rng.sample(parents, 2) if len(parents) > 1 else parents * 2
            return [self._cross(first, second)]

        return self.fill(group, crossed, size)

    def record(
        self, generation: int, records: list[dict[str, Any]], group: int | None = None
    ) -> None:
        """Append a group's records to the history (with ``group`` when given)."""
        where = {"generation": generation} if group is None else {
            "generation": generation, "group": group}
        for entry in records:
            arch = tuple(entry["arch"])
            if arch in self.evaluated:
                raise ValueError(f"architecture {list(arch)} evaluated twice")
            self.seen.add(arch)
            self.history.append({**where, **entry, "macs": self.macs(arch)})
            self.evaluated[arch] = self.history[-1]

    def to_dict(self) -> dict[str, Any]:
        """Return what :meth:`restore` needs, as JSON-ready data."""
        return {"history": self.history, "random_state": random_state_to_json(self.rng)}

    def restore(self, data: dict[str, Any]) -> None:
        """Continue from :meth:`to_dict` output, taken between two generations.

        Raises:
            InputError: Data that is not such output.

        """
        history = data.get("history") if isinstance(data, dict) else None
        if not isinstance(history, list) or not all(
            isinstance(entry, dict) and isinstance(entry.get("arch"), list)
            and isinstance(entry.get("macs"), int) for entry in history
        ):
            raise InputError("search state: history is not a list of records")
        self.rng.setstate(random_state_from_json(data.get("random_state")))
        self.history = history
        self.seen = {tuple(entry["arch"]) for entry in history}
        self.evaluated = {tuple(entry["arch"]): entry for entry in history}
        self._macs.update((tuple(entry["arch"]), entry["macs"]) for entry in history)


def random_state_to_json(rng: random.Random) -> list[Any]:
    """Return ``rng.getstate()`` as JSON-ready data (version, 625 words, Gaussian)."""
    version, words, gauss_next = rng.getstate()
    return [version, list(words), gauss_next]


def random_state_from_json(data: Any) -> tuple[Any, ...]:
    """Rebuild a ``random.Random`` state from :func:`random_state_to_json` output.

    Raises:
        InputError: Not such output.

    """
    if not (
        isinstance(data, list) and len(data) == 3 and isinstance(data[1], list)
        and all(isinstance(word, int) and not isinstance(word, bool) for word in data[1])
        and (data[2] is None or isinstance(data[2], float))
    ):
        raise InputError("search state: bad random state")
    state = (data[0], tuple(data[1]), data[2])
    try:
        random.Random().setstate(state)
    except (TypeError, ValueError) as exc:
        raise InputError(f"search state: bad random state ({exc})") from exc
    return state


# --- checkpoints -------------------------------------------------------------------------

CHECKPOINT_FILE = "search_state.json"
"""The checkpoint a search with an output folder rewrites after every generation."""
CHECKPOINT_FORMAT = "enasa-search-state/1"
_CHECKPOINT_KEYS = ("config", "fingerprint", "generations_done", "inputs", "plans", "state")


def inputs_fingerprint(supernet: Supernet, train: ImageDataset, val: ImageDataset) -> str:
    """SHA-256 of what a search's results depend on besides its config.

    That is the supernet's kind and parameters and both image sets. BN buffers are left
    out: every member's path statistics are recomputed before use, so they never reach
    a result, while scoring subnets elsewhere changes them.
    """
    digest = hashlib.sha256(type(supernet).__name__.encode())
    for name, parameter in sorted(supernet.named_parameters()):
        tensor = parameter.detach().contiguous().cpu()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.numpy().tobytes())
    for data in (train, val):
        digest.update(f"{tuple(data.images.shape)}:{data.num_classes}".encode())
        digest.update(data.images.contiguous().numpy().tobytes())
        digest.update(data.labels.contiguous().numpy().tobytes())
    return digest.hexdigest()


def write_checkpoint(folder: Path, **fields: Any) -> Path:
    """Write ``folder/search_state.json`` atomically with ``fields`` (see read_checkpoint)."""
    if sorted(fields) != sorted(_CHECKPOINT_KEYS):
        raise ValueError(f"checkpoint needs exactly the fields {_CHECKPOINT_KEYS}")
    payload = {"format": CHECKPOINT_FORMAT, **{key: fields[key] for key in _CHECKPOINT_KEYS}}
    # Keys keep their order (no sort_keys): a resumed history must print as the original.
    text = json_text(payload, "the search checkpoint", indent=1)
    return write_atomic(folder / CHECKPOINT_FILE, text + "\n")


def read_checkpoint(folder: str | Path) -> dict[str, Any]:
    """Read the checkpoint a search left in ``folder``.

    Returns:
        ``config`` (the search options), ``fingerprint`` (:func:`inputs_fingerprint`),
        ``generations_done``, ``inputs`` (the caller's notes on where the supernet and
        data came from), ``plans`` (each group's last plan, relative to ``folder``) and
        ``state`` (:meth:`SearchState.to_dict`).

    Raises:
        InputError: No checkpoint there, or not one this version wrote.

    """
    path = Path(folder) / CHECKPOINT_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{folder}: no {CHECKPOINT_FILE} to resume from") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except RecursionError as exc:
        raise InputError(f"{path} is not JSON (nested too deeply)") from exc
    except ValueError as exc:  # not JSON, not UTF-8, or an integer of over 4300 digits
        raise InputError(f"{path} is not JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path} is not an {CHECKPOINT_FORMAT} checkpoint")
    missing = [key for key in _CHECKPOINT_KEYS if key not in data]
    done = data.get("generations_done")
    if missing or not isinstance(data["config"], dict) or not isinstance(done, int) \
            or isinstance(done, bool) or done < 0 or not isinstance(data["plans"], list):
        raise InputError(f"{path}: damaged checkpoint ({', '.join(missing) or 'bad field'})")
    return data
