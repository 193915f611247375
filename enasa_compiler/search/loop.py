"""Architecture search whose every generation is compiled and costed as one group.

ENASA's claim is that a search can produce generations that suit a compute-in-memory
chip (members share a prefix to compute once, or top layers to store once) and still
converge as well as plain evolution. To test that, each generation here is handled as
the chip would see it: every member gets SPOS's scoring protocol (BN statistics
recomputed on training batches), is exported to ONNX, the group is compiled by this
toolchain into a plan, and each member's top-1 accuracy is measured with onnxruntime on
the exported file, next to the plan's per-subnet latency and energy and the group's
deduplication and makespan.

Strategies (``SearchConfig.strategy``):

- ``uniform``: every generation is drawn uniformly (random search).
- ``fair``: every generation is made of FairNAS strict-fair draws.
- ``evolution``: SPOS's evolution; after a random first generation, half the children
  mutate a top-k parent (each gene redrawn with ``mutation_prob``), half cross two top-k
  parents gene by gene.
- ``stagewise``: ENASA's variant; after the same random first generation, children come
  from :func:`~.sampling.stagewise_children` with the best subnet so far, the fixed half
  alternating from bottom (generation 1) to top (generation 2) and so on.

Every evaluated architecture is distinct, and architectures over ``max_macs`` are never
evaluated. With ``max_latency_ns`` set, subnets slower than it in their group's plan are
infeasible: they are recorded but never parents or best.

A generation may hold several groups (``groups_per_generation``), proposed one after
another from the search's one random source and evaluated independently, so an executor
(:mod:`.executors`: in this process, or on Ray) can run them in parallel. With
``online`` set, each group starts from the crossbars its same-index group of the
previous generation left (online mapping). Results are collected in submission order and
every input of a group comes from the config, the seed and the shared supernet and data,
so a search gives the same bytes on any executor. With an output folder the state is
checkpointed after every generation, and ``resume=True`` continues from it to the same
result as an uninterrupted run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from enasa_compiler.errors import InputError
from enasa_compiler.models.data import ImageDataset
from enasa_compiler.models.export import Supernet
from enasa_compiler.models.sampling import Arch
from enasa_compiler.models.train import check_data_fits
from enasa_compiler.search.executors import Executor, InProcessExecutor
from enasa_compiler.search.group import (
    PLAN_FILE,
    GroupInputs,
    GroupResult,
    GroupTask,
    onnx_accuracy,
    run_group,
)
from enasa_compiler.search.state import (
    CHECKPOINT_FILE,
    SearchState,
    Strategy,
    inputs_fingerprint,
    read_checkpoint,
    write_checkpoint,
)

logger = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_FILE",
    "STRATEGIES",
    "SearchConfig",
    "SearchResult",
    "Strategy",
    "evaluate_group",
    "onnx_accuracy",
    "read_checkpoint",
    "search",
]




STRATEGIES = tuple(s.value for s in Strategy)
GenerationHook = Callable[[int, list[dict[str, Any]]], None]
"""Called with a generation and its history entries once it is checkpointed."""


@dataclass(frozen=True)
class SearchConfig:
    """Options of :func:`search`.

    Attributes:
        strategy: One of :data:`STRATEGIES`.
        generations: Generations to evaluate.
        group_size: Subnets per group.
        seed: Seed of every random choice of the search.
        top_k: Parents kept for evolution; ``None`` means half the group size (SPOS
            keeps 10 of a population of 50; a group is smaller).
        mutation_prob: Per-gene mutation probability.
        max_macs: Never evaluate architectures with more multiply-accumulates per image.
        max_latency_ns: Subnets with a longer latency in their group's plan are
            infeasible.
        target: Target preset or file for the compiler.
        calib_batches: Training batches for each subnet's BN recalibration.
        calib_batch_size: Images per recalibration batch.
        groups_per_generation: Groups proposed, compiled and evaluated per generation;
            they are independent, so an executor may run them in parallel.
        online: Start each group from the crossbars the same-index group of the previous
            generation left (online mapping) instead of empty ones.
        threads: Torch and onnxruntime threads of one group's evaluation; ``None`` takes
            torch's current setting when the search starts. Part of the config because
            floating-point sums, and so the exported files, depend on it.

    """

    strategy: Strategy = Strategy.STAGEWISE
    generations: int = 4
    group_size: int = 8
    seed: int = 0
    top_k: int | None = None
    mutation_prob: float = 0.1
    max_macs: int | None = None
    max_latency_ns: float | None = None
    target: str = "neurosim-22nm"
    calib_batches: int = 8
    calib_batch_size: int = 64
    groups_per_generation: int = 1
    online: bool = False
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise InputError(f"unknown strategy '{self.strategy}' (choose from "
                             f"{', '.join(STRATEGIES)})")
        object.__setattr__(self, "strategy", Strategy(self.strategy))
        if self.generations < 1 or self.group_size < 1:
            raise InputError(f"need generations >= 1 and group size >= 1, got "
                             f"{self.generations}, {self.group_size}")
        if self.groups_per_generation < 1:
            raise InputError(f"need at least one group per generation, got "
                             f"{self.groups_per_generation}")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"threads must be >= 1, got {self.threads}")
        if self.top_k is not None and self.top_k < 1:
            raise InputError(f"top-k must be >= 1, got {self.top_k}")
        if not 0.0 <= self.mutation_prob <= 1.0:
            raise InputError(f"mutation probability must be in [0, 1], got "
                             f"{self.mutation_prob}")
        if self.max_latency_ns is not None and not self.max_latency_ns > 0:
            raise InputError(f"max latency must be positive, got {self.max_latency_ns}")
        if self.calib_batches < 1 or self.calib_batch_size < 1:
            raise InputError("BN recalibration needs at least one batch of one image")

    @property
    def parents(self) -> int:
        """Number of parents evolution keeps."""
        return self.top_k if self.top_k is not None else max(2, self.group_size // 2)

    def resolved(self) -> SearchConfig:
        """Return the config with ``threads`` fixed to torch's current setting if unset."""
        if self.threads is not None:
            return self
        return replace(self, threads=torch.get_num_threads())


@dataclass
class SearchResult:
    """What a search evaluated and what it found.

    Attributes:
        config: The options, as JSON-ready data (``threads`` resolved).
        history: One entry per evaluated subnet, in order (generation, group, index):
            ``generation``, ``group`` (only with several groups per generation),
            ``index`` (in its group), ``arch``, ``accuracy``, ``macs``, ``latency_ns``,
            ``energy_pj``, ``attributed_energy_pj``, ``feasible``,
            ``group_dedup_node_ratio``, ``group_dedup_mac_ratio``,
            ``group_makespan_ns``, ``group_energy_pj``, ``group_crossbars_used``.
        best: The history entry of the most accurate feasible subnet (the earliest on a
            tie), or ``None`` when none was feasible.
        seconds: Wall-clock time of the search (of this run only, when resumed).

    """

    config: dict[str, Any]
    history: list[dict[str, Any]]
    best: dict[str, Any] | None
    seconds: float

    @property
    def best_arch(self) -> Arch | None:
        """The best architecture, or ``None``."""
        return None if self.best is None else tuple(self.best["arch"])

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready data."""
        return asdict(self)


def _task(
    config: SearchConfig, generation: int, group: int, archs: list[Arch],
    initial_plan: str | None,
) -> GroupTask:
    assert config.threads is not None  # resolved by search()
    return GroupTask(generation=generation, group=group, archs=tuple(archs),
                     target=config.target, calib_batches=config.calib_batches,
                     calib_batch_size=config.calib_batch_size,
                     max_latency_ns=config.max_latency_ns, threads=config.threads,
                     initial_plan=initial_plan)


def evaluate_group(
    supernet: Supernet,
    archs: list[Arch],
    train: ImageDataset,
    val: ImageDataset,
    folder: Path,
    config: SearchConfig,
) -> list[dict[str, Any]]:
    """Score, export and compile one group into ``folder``; return one record per member.

    The in-process form of the search's unit of work (:func:`~._group.run_group`).
    """
    task = _task(config.resolved(), 0, 0, archs, None)
    result = run_group(task, GroupInputs(supernet, train, val))
    result.write(Path(folder))
    return result.records


def _buffers(supernet: Supernet) -> dict[str, torch.Tensor]:
    return {name: buffer.clone() for name, buffer in supernet.named_buffers()}


def _restore(supernet: Supernet, saved: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, buffer in supernet.named_buffers():
            buffer.copy_(saved[name])


def _group_folder(root: Path, config: SearchConfig, generation: int, group: int) -> Path:
    folder = root / f"gen_{generation:03d}"
    return folder if config.groups_per_generation == 1 else folder / f"group_{group:02d}"


def _resume(
    root: Path, config: SearchConfig, fingerprint: str, state: SearchState
) -> tuple[int, list[str | None]]:
    """Restore ``state`` from the checkpoint in ``root``; return (next generation, plans)."""
    checkpoint = read_checkpoint(root)
    saved = dict(checkpoint["config"])
    done = checkpoint["generations_done"]
    wanted = asdict(config)
    saved.pop("generations", None)
    wanted.pop("generations")
    if saved != wanted:
        changed = sorted(k for k in wanted.keys() | saved.keys()
                         if saved.get(k) != wanted.get(k))
        raise InputError(f"{root}: the search being resumed has other options "
                         f"({', '.join(changed)})")
    if checkpoint["fingerprint"] != fingerprint:
        raise InputError(f"{root}: the supernet or the data differ from the search "
                         "being resumed")
    if done > config.generations:
        raise InputError(f"{root}: {done} generations already done, more than "
                         f"{config.generations}")
    state.restore(checkpoint["state"])
    plans: list[str | None] = [None] * config.groups_per_generation
    if config.online and done > 0:
        # Where this search wrote them, not where the file says: it names no other file.
        paths = [_group_folder(root, config, done - 1, group) / PLAN_FILE
                 for group in range(config.groups_per_generation)]
        try:
            plans = [path.read_text(encoding="utf-8") for path in paths]
        except OSError as exc:
            raise InputError(f"{root}: cannot read the last generation's plans for "
                             f"online mapping ({exc})") from exc
    logger.info("resuming %s after generation %d", root, done - 1)
    return done, plans


def search(
    supernet: Supernet,
    train: ImageDataset,
    val: ImageDataset,
    config: SearchConfig,
    *,
    out_dir: str | Path | None = None,
    progress: bool = False,
    executor: Executor | None = None,
    resume: bool = False,
    inputs: dict[str, Any] | None = None,
    on_generation: GenerationHook | None = None,
) -> SearchResult:
    """Run the search ``config`` describes on a trained supernet.

    Args:
        supernet: The trained supernet; its BN statistics are restored afterwards.
        train: Images for BN recalibration (the first batches, in stored order).
        val: Images on which accuracy is measured.
        config: Strategy, sizes, seed and constraints.
        out_dir: Keep each group's ONNX files and plan in ``out_dir/gen_XXX/`` (with
            several groups, ``gen_XXX/group_YY/``) and a checkpoint,
            ``out_dir/search_state.json``, rewritten after every generation; ``None``
            keeps nothing.
        progress: Show a tqdm progress bar on stderr.
        executor: Where groups run; ``None`` runs them here, one after another. The
            caller closes an executor it passes.
        resume: Continue from the checkpoint in ``out_dir``; ``config`` must equal the
            saved one but for ``generations``, which may grow.
        inputs: JSON-ready notes kept in the checkpoint (where the supernet and data
            came from), for a caller that resumes.
        on_generation: See :data:`GenerationHook`.

    Raises:
        InputError: Data that does not fit the supernet, no admissible architecture, or
            a checkpoint that does not match.

    """
    check_data_fits(supernet, train)
    check_data_fits(supernet, val)
    started = time.perf_counter()
    config = config.resolved()
    if resume and out_dir is None:
        raise InputError("resuming a search needs its output folder")
    fingerprint = inputs_fingerprint(supernet, train, val) if out_dir is not None else ""
    state = SearchState(supernet, config)
    first = 0
    plans: list[str | None] = [None] * config.groups_per_generation
    if resume:
        first, plans = _resume(Path(str(out_dir)), config, fingerprint, state)
    executor = executor or InProcessExecutor()
    saved, was_training = _buffers(supernet), supernet.training
    per_generation = config.group_size * config.groups_per_generation
    bar = tqdm(total=(config.generations - first) * per_generation, disable=not progress,
               desc=f"search {config.strategy}", unit="subnet")
    try:
        shared = executor.share(GroupInputs(supernet, train, val))
        for generation in range(first, config.generations):
            groups = state.propose_generation(generation, config.groups_per_generation)
            tasks = [_task(config, generation, index, archs,
                           plans[index] if config.online else None)
                     for index, archs in enumerate(groups)]
            sizes = [len(archs) for archs in groups]

            def advance(position: int, sizes: list[int] = sizes) -> None:
                bar.update(sizes[position])

            results: list[GroupResult] = executor.map(run_group, tasks, [shared],
                                                      on_result=advance)
            entries = _record(state, config, generation, results, out_dir)
            plans = [result.plan_json for result in results]  # the next online start
            if out_dir is not None:
                write_checkpoint(
                    Path(out_dir), config=asdict(config), fingerprint=fingerprint,
                    generations_done=generation + 1, inputs=inputs or {},
                    plans=[(_group_folder(Path(), config, generation, r.group)
                            / PLAN_FILE).as_posix() for r in results],
                    state=state.to_dict())
            ranked = state.ranked()
            bar.set_postfix(best=f"{ranked[0]['accuracy']:.3f}" if ranked else "-")
            logger.info("generation %d: best %.4f, dedup %.2fx, makespan %.0f ns",
                        generation, max(e["accuracy"] for e in entries),
                        entries[0]["group_dedup_node_ratio"],
                        entries[0]["group_makespan_ns"])
            if on_generation is not None:
                on_generation(generation, entries)
    finally:
        bar.close()
        _restore(supernet, saved)
        supernet.train(was_training)
    ranked = state.ranked()
    best = ranked[0] if ranked else None
    return SearchResult(config=asdict(config), history=state.history, best=best,
                        seconds=time.perf_counter() - started)


def _record(
    state: SearchState, config: SearchConfig, generation: int,
    results: list[GroupResult], out_dir: str | Path | None,
) -> list[dict[str, Any]]:
    """Write a generation's files and add its records to the history; return the entries."""
    before = len(state.history)
    several = config.groups_per_generation > 1
    for result in results:
        if out_dir is not None:
            result.write(_group_folder(Path(out_dir), config, generation, result.group))
        state.record(generation, result.records, result.group if several else None)
    return state.history[before:]
