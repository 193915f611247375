"""The measured baseline: the same subnets on the same images in onnxruntime.

Wall times are measured on this machine (median of repeats after one warm-up run,
session creation excluded: a NAS loop on a CPU would keep the session for the N
images). The CPU's energy is not measurable here, so it is priced with the power in
``host.json`` (a documented assumption, flagged in every result). A GPU is measured
when onnxruntime offers CUDA; otherwise the result says it was not available.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir
import onnxruntime as ort

from enasa_compiler.frontend import load_subnet

from .systems import SystemRun

__all__ = ["cpu_name", "host_power", "measure_onnxruntime"]


def host_power() -> dict[str, Any]:
    """Return the power assumption of the CPU baseline, with its source."""
    text = resources.files(__package__).joinpath("host.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def cpu_name() -> str:
    """Return the CPU model as the OS reports it (``/proc/cpuinfo`` on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _session(path: Path, images: int, provider: str, threads: int) -> ort.InferenceSession:
    model = load_subnet(path, batch=images).model
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(ir.to_proto(model).SerializeToString(), options,
                                providers=[provider])


def measure_onnxruntime(
    generations: Sequence[Sequence[Path]],
    images: np.ndarray,
    *,
    provider: str = "CPUExecutionProvider",
    repeats: int = 3,
    threads: int | None = None,
) -> SystemRun | None:
    """Time every subnet on ``images`` with onnxruntime; ``None`` if the provider is absent.

    Args:
        generations: the workload's ONNX files, generation by generation.
        images: N x 3 x S x S float32, the same N images the modeled systems price.
        provider: ``CPUExecutionProvider`` (d) or ``CUDAExecutionProvider``.
        repeats: timed runs per subnet after a warm-up; the median counts.
        threads: intra-op threads (default: every core of this machine).

    """
    if provider not in ort.get_available_providers():
        return None
    threads = threads or os.cpu_count() or 1
    files = [path for group in generations for path in group]
    on_gpu = provider != "CPUExecutionProvider"
    system, label = ("gpu", "(d) GPU measured") if on_gpu else ("cpu", "(d) CPU measured")
    run = SystemRun(system, label, "measured", len(files), int(images.shape[0]))
    per_subnet = []
    for path in files:
        session = _session(path, int(images.shape[0]), provider, threads)
        feed = {session.get_inputs()[0].name: images}
        session.run(None, feed)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            session.run(None, feed)
            times.append(time.perf_counter() - started)
        per_subnet.append(statistics.median(times))
    run.time_s = float(sum(per_subnet))
    run.cell_writes = None
    if on_gpu:
        run.energy_j = None
        run.extra["device"] = "CUDA (onnxruntime)"
    else:
        power = host_power()
        watts = power["cpu_watts_per_core"] * threads
        run.energy_j = run.time_s * watts
        run.extra.update(device=cpu_name(), threads=threads, assumed_watts=watts,
                         energy_is="estimated: measured time x assumed power",
                         power_source=power["sources"][0])
    run.extra["repeats"] = repeats
    return run
