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
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from tqdm import tqdm

from enasa_compiler.errors import InputError

from ._search_state import SearchState
from .data import ImageDataset
from .export import Supernet, export_subnet
from .sampling import Arch
from .train import check_data_fits, recalibrate_batchnorm

logger = logging.getLogger(__name__)

__all__ = [
    "STRATEGIES",
    "SearchConfig",
    "SearchResult",
    "evaluate_group",
    "onnx_accuracy",
    "search",
]

STRATEGIES = ("uniform", "fair", "evolution", "stagewise")


@dataclass(frozen=True)
class SearchConfig:
    """Options of :func:`search`.

    Attributes:
        strategy: One of :data:`STRATEGIES`.
        generations: Generations (groups) to evaluate.
        group_size: Subnets per generation.
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

    """

    strategy: str = "stagewise"
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

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise InputError(f"unknown strategy '{self.strategy}' (choose from "
                             f"{', '.join(STRATEGIES)})")
        if self.generations < 1 or self.group_size < 1:
            raise InputError(f"need generations >= 1 and group size >= 1, got "
                             f"{self.generations}, {self.group_size}")
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


@dataclass
class SearchResult:
    """What a search evaluated and what it found.

    Attributes:
        config: The options, as JSON-ready data.
        history: One entry per evaluated subnet, in order: ``generation``, ``index`` (in
            its group), ``arch``, ``accuracy``, ``macs``, ``latency_ns``, ``energy_pj``,
            ``attributed_energy_pj``, ``feasible``, ``group_dedup_node_ratio``,
            ``group_dedup_mac_ratio``, ``group_makespan_ns``, ``group_energy_pj``,
            ``group_crossbars_used``.
        best: The history entry of the most accurate feasible subnet (the earliest on a
            tie), or ``None`` when none was feasible.
        seconds: Wall-clock time of the search.

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


def _batch_free_session(path: Path) -> ort.InferenceSession:
    # The exporter fixes the batch; a named batch dimension lets one run score the whole
    # validation split. The graph never mixes images, as the frontend also relies on.
    proto = onnx.load_model(str(path))
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    for output in proto.graph.output:
        output.type.tensor_type.ClearField("shape")
    del proto.graph.value_info[:]
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def onnx_accuracy(path: Path, data: ImageDataset, batch_size: int = 512) -> float:
    """Top-1 accuracy of the exported subnet at ``path`` on ``data``, with onnxruntime."""
    session = _batch_free_session(path)
    name = session.get_inputs()[0].name
    correct = 0
    for images, labels in data.batches(batch_size):
        logits = session.run(None, {name: images.numpy()})[0]
        correct += int((np.argmax(logits, axis=1) == labels.numpy()).sum())
    return correct / max(1, len(data))


def evaluate_group(
    supernet: Supernet,
    archs: list[Arch],
    train: ImageDataset,
    val: ImageDataset,
    folder: Path,
    config: SearchConfig,
) -> list[dict[str, Any]]:
    """Score, export and compile one group; return one record per member.

    Each member's BN statistics are recomputed just before its export, so the file holds
    its own statistics (members sharing a prefix get identical prefix statistics, which
    keeps that prefix deduplicable).
    """
    from enasa_compiler.pipeline import compile_detailed
    from enasa_compiler.report import cost_report

    files = []
    for index, arch in enumerate(archs):
        recalibrate_batchnorm(supernet, arch, train, num_batches=config.calib_batches,
                              batch_size=config.calib_batch_size)
        files.append(export_subnet(supernet, arch, folder / f"subnet_{index:02d}.onnx"))
    plan = compile_detailed(files, config.target).plan
    plan.save(folder / "plan.json")
    report = cost_report(plan)
    dedup = plan.dedup
    group = {
        "group_dedup_node_ratio": dedup["nodes_before"] / max(1, dedup["nodes_after"]),
        "group_dedup_mac_ratio": dedup["macs_before"] / max(1, dedup["macs_after"]),
        "group_makespan_ns": plan.totals.makespan_ns,
        "group_energy_pj": plan.totals.energy_pj,
        "group_crossbars_used": plan.totals.crossbars_used,
    }
    records = []
    for index, (arch, path, costs) in enumerate(
        zip(archs, files, report["subnets"], strict=True)
    ):
        latency = float(costs["latency_ns"])
        records.append({
            "index": index,
            "arch": list(arch),
            "accuracy": onnx_accuracy(path, val),
            "latency_ns": latency,
            "energy_pj": float(costs["energy_pj"]),
            "attributed_energy_pj": float(costs["attributed_energy_pj"]),
            "feasible": config.max_latency_ns is None or latency <= config.max_latency_ns,
            **group,
        })
    return records


def _buffers(supernet: Supernet) -> dict[str, torch.Tensor]:
    return {name: buffer.clone() for name, buffer in supernet.named_buffers()}


def _restore(supernet: Supernet, saved: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, buffer in supernet.named_buffers():
            buffer.copy_(saved[name])


def search(
    supernet: Supernet,
    train: ImageDataset,
    val: ImageDataset,
    config: SearchConfig,
    *,
    out_dir: str | Path | None = None,
    progress: bool = False,
) -> SearchResult:
    """Run the search ``config`` describes on a trained supernet.

    Args:
        supernet: The trained supernet; its BN statistics are restored afterwards.
        train: Images for BN recalibration (the first batches, in stored order).
        val: Images on which accuracy is measured.
        config: Strategy, sizes, seed and constraints.
        out_dir: Keep each generation's ONNX files and plan in ``out_dir/gen_XXX/``;
            ``None`` uses a temporary folder.
        progress: Show a tqdm progress bar on stderr.

    Raises:
        InputError: Data that does not fit the supernet, or no admissible architecture.

    """
    check_data_fits(supernet, train)
    check_data_fits(supernet, val)
    started = time.perf_counter()
    state = SearchState(supernet, config)
    saved, was_training = _buffers(supernet), supernet.training
    bar = tqdm(total=config.generations * config.group_size, disable=not progress,
               desc=f"search {config.strategy}", unit="subnet")
    try:
        with tempfile.TemporaryDirectory(prefix="enasa-search-") as scratch, bar:
            root = Path(out_dir) if out_dir is not None else Path(scratch)
            for generation in range(config.generations):
                group = state.propose(generation)
                folder = root / f"gen_{generation:03d}"
                records = evaluate_group(supernet, group, train, val, folder, config)
                state.record(generation, records)
                ranked = state.ranked()
                bar.update(len(group))
                bar.set_postfix(best=f"{ranked[0]['accuracy']:.3f}" if ranked else "-")
                logger.info("generation %d: best %.4f, dedup %.2fx, makespan %.0f ns",
                            generation, max(r["accuracy"] for r in records),
                            records[0]["group_dedup_node_ratio"],
                            records[0]["group_makespan_ns"])
    finally:
        _restore(supernet, saved)
        supernet.train(was_training)
    ranked = state.ranked()
    best = ranked[0] if ranked else None
    return SearchResult(config=asdict(config), history=state.history, best=best,
                        seconds=time.perf_counter() - started)
