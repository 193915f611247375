"""The search's unit of work: score, export, compile and cost one group of subnets.

A :class:`GroupTask` says everything a group's result depends on besides the shared
inputs (the supernet's weights and the images): the architectures, the compiler options,
the BN recalibration protocol, the thread count and, for online mapping, the plan whose
crossbars the group starts from. :func:`run_group` turns it into a :class:`GroupResult`
in a private scratch folder and returns the files as bytes, so it runs the same in this
process or on a Ray worker on another machine, and the driver alone writes the output
folder.

Why the thread count is part of the task: torch's CPU reductions split their sums by
thread, so BN statistics (and with them the exported files and the plan) differ in the
last bits between thread counts. Fixing it per task makes a group's bytes a function of
the task, whichever process runs it.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from enasa_compiler.models.data import ImageDataset
from enasa_compiler.models.export import Supernet, export_subnet
from enasa_compiler.models.sampling import Arch
from enasa_compiler.models.train import recalibrate_batchnorm

logger = logging.getLogger(__name__)

__all__ = ["GroupInputs", "GroupResult", "GroupTask", "onnx_accuracy", "run_group"]

PLAN_FILE = "plan.json"


@dataclass(frozen=True)
class GroupTask:
    """One group to evaluate: everything its result depends on but the shared inputs.

    Attributes:
        generation: Generation of the search the group belongs to.
        group: Index of the group in its generation.
        archs: The members, in order (their file and history indices).
        target: Target preset or file for the compiler.
        calib_batches: Training batches for each member's BN recalibration.
        calib_batch_size: Images per recalibration batch.
        max_latency_ns: Members slower than this in the plan are infeasible.
        threads: Torch and onnxruntime threads while the group is evaluated.
        initial_plan: Online mapping: JSON text of the plan whose crossbar contents the
            group starts from, or ``None`` for empty crossbars.

    """

    generation: int
    group: int
    archs: tuple[Arch, ...]
    target: str
    calib_batches: int
    calib_batch_size: int
    max_latency_ns: float | None
    threads: int
    initial_plan: str | None = None


@dataclass(frozen=True)
class GroupResult:
    """What evaluating one :class:`GroupTask` gave.

    Attributes:
        generation: The task's generation.
        group: The task's group index.
        records: One record per member, in order: ``index``, ``arch``, ``accuracy``,
            ``latency_ns``, ``energy_pj``, ``attributed_energy_pj``, ``feasible`` and the
            group's ``group_*`` costs.
        plan_json: The group's plan, as :meth:`~enasa_compiler.plan.Plan.to_json` text.
        files: ``(name, bytes)`` of the exported members, ``subnet_XX.onnx``.

    """

    generation: int
    group: int
    records: list[dict[str, Any]]
    plan_json: str
    files: tuple[tuple[str, bytes], ...]

    def write(self, folder: Path) -> None:
        """Write the members' ONNX files and the plan into ``folder``, atomically each."""
        from enasa_compiler.atomic import write_atomic

        for name, data in self.files:
            write_atomic(folder / name, data)
        write_atomic(folder / PLAN_FILE, self.plan_json)


@dataclass(frozen=True)
class GroupInputs:
    """The inputs every group shares: put once into an executor, never sent per task."""

    supernet: Supernet
    train: ImageDataset
    val: ImageDataset


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    before = torch.get_num_threads()
    if threads != before:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _batch_free_session(path: Path, threads: int) -> ort.InferenceSession:
    # The exporter fixes the batch; a named batch dimension lets one run score the whole
    # validation split. The graph never mixes images, as the frontend also relies on.
    proto = onnx.load_model(str(path))
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    for output in proto.graph.output:
        output.type.tensor_type.ClearField("shape")
    del proto.graph.value_info[:]
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def onnx_accuracy(
    path: Path, data: ImageDataset, batch_size: int = 512, *, threads: int = 0
) -> float:
    """Top-1 accuracy of the exported subnet at ``path`` on ``data``, with onnxruntime.

    ``threads`` is onnxruntime's intra-op thread count (0: its default).
    """
    session = _batch_free_session(path, threads)
    name = session.get_inputs()[0].name
    correct = 0
    for images, labels in data.batches(batch_size):
        logits = session.run(None, {name: images.numpy()})[0]
        correct += int((np.argmax(logits, axis=1) == labels.numpy()).sum())
    return correct / max(1, len(data))


def run_group(task: GroupTask, inputs: GroupInputs) -> GroupResult:
    """Score, export and compile one group; return its records, plan and files.

    Each member's BN statistics are recomputed just before its export, so the file holds
    its own statistics (members sharing a prefix get identical prefix statistics, which
    keeps that prefix deduplicable). Recalibration resets every BN on the member's path
    first, so the result does not depend on what the supernet's buffers held before.
    """
    from enasa_compiler.pipeline import compile_detailed
    from enasa_compiler.plan import Plan
    from enasa_compiler.simulate.cost import cost_report

    supernet, train, val = inputs.supernet, inputs.train, inputs.val
    with _torch_threads(task.threads), tempfile.TemporaryDirectory(
        prefix="enasa-group-"
    ) as scratch:
        folder = Path(scratch)
        paths = []
        for index, arch in enumerate(task.archs):
            recalibrate_batchnorm(supernet, arch, train, num_batches=task.calib_batches,
                                  batch_size=task.calib_batch_size)
            paths.append(export_subnet(supernet, arch, folder / f"subnet_{index:02d}.onnx"))
        initial = (None if task.initial_plan is None
                   else Plan.from_dict(json.loads(task.initial_plan)))
        plan = compile_detailed(paths, task.target, initial_state=initial).plan
        costs = cost_report(plan)["subnets"]
        accuracies = [onnx_accuracy(path, val, threads=task.threads) for path in paths]
        files = tuple((path.name, path.read_bytes()) for path in paths)
    dedup = plan.dedup
    group = {
        "group_dedup_node_ratio": dedup["nodes_before"] / max(1, dedup["nodes_after"]),
        "group_dedup_mac_ratio": dedup["macs_before"] / max(1, dedup["macs_after"]),
        "group_makespan_ns": plan.totals.makespan_ns,
        "group_energy_pj": plan.totals.energy_pj,
        "group_crossbars_used": plan.totals.crossbars_used,
    }
    records = []
    for index, (arch, accuracy, cost) in enumerate(
        zip(task.archs, accuracies, costs, strict=True)
    ):
        latency = float(cost["latency_ns"])
        records.append({
            "index": index,
            "arch": list(arch),
            "accuracy": accuracy,
            "latency_ns": latency,
            "energy_pj": float(cost["energy_pj"]),
            "attributed_energy_pj": float(cost["attributed_energy_pj"]),
            "feasible": task.max_latency_ns is None or latency <= task.max_latency_ns,
            **group,
        })
    logger.debug("generation %d group %d: %d subnets evaluated", task.generation,
                 task.group, len(records))
    return GroupResult(generation=task.generation, group=task.group, records=records,
                       plan_json=plan.to_json(), files=files)
