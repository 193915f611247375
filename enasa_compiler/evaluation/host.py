"""Baseline (d): the same distinct subnets in onnxruntime on this machine's CPU.

Time is measured: for each subnet a session at the batch size found fastest (per
image, among a few candidates on the first subnet), one warm-up batch, then
``repeats`` timed runs over ``measured_images`` images (session creation excluded: a
NAS loop keeps the session for its N images). The per-image time of each repeat is
extrapolated to N images, and the row says so. Energy comes from the RAPL counters
(``/sys/class/powercap/intel-rapl*``) when this machine exposes them; otherwise it is
the measured time times the power assumed in ``host.json``, and the row's label says
it is an estimate. The load average is recorded before and after: other processes
share the cores, which slows the CPU and so favours the accelerators.
"""

from __future__ import annotations

import json
import logging
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

from enasa_compiler._text import plural
from enasa_compiler.frontend import load_subnet

from .systems import SystemRun

logger = logging.getLogger(__name__)

__all__ = ["cpu_name", "host_power", "measure_cpu", "rapl_energy_uj"]

_RAPL = Path("/sys/class/powercap")


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


def rapl_energy_uj() -> int | None:
    """Sum of the package RAPL energy counters in microjoules, or ``None`` if unreadable."""
    try:
        counters = sorted(_RAPL.glob("intel-rapl:*/energy_uj"))
        if not counters:
            return None
        return sum(int(path.read_text()) for path in counters)
    except (OSError, ValueError):
        return None


def _load() -> list[float]:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return []


def _session(path: Path, batch: int, threads: int) -> ort.InferenceSession:
    model = load_subnet(path, batch=batch).model
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(ir.to_proto(model).SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def _time_images(session: ort.InferenceSession, images: np.ndarray, batch: int) -> float:
    """Seconds to run ``images`` through ``session`` in batches of ``batch``."""
    name = session.get_inputs()[0].name
    started = time.perf_counter()
    for start in range(0, images.shape[0] - batch + 1, batch):
        session.run(None, {name: images[start:start + batch]})
    return time.perf_counter() - started


def _fastest_batch(path: Path, images: np.ndarray, batches: Sequence[int],
                   threads: int) -> tuple[int, dict[int, float]]:
    per_image: dict[int, float] = {}
    for batch in batches:
        if batch > images.shape[0]:
            continue
        session = _session(path, batch, threads)
        _time_images(session, images[:batch], batch)  # warm-up
        runs = max(1, images.shape[0] // batch)
        per_image[batch] = _time_images(session, images[:runs * batch], batch) / (
            runs * batch)
    best = min(per_image, key=lambda b: (per_image[b], b))
    return best, per_image


def measure_cpu(
    generations: Sequence[Sequence[Path]],
    images: np.ndarray,
    target_images: int,
    *,
    batches: Sequence[int] = (1, 8, 32),
    repeats: int = 3,
    threads: int | None = None,
) -> SystemRun:
    """Time every distinct subnet in onnxruntime and extrapolate to ``target_images``.

    Args:
        generations: the workload's ONNX files (distinct subnets), generation by
            generation.
        images: M x 3 x S x S float32, the images measured (M small, e.g. 64).
        target_images: N, the images the result is extrapolated to (per image).
        batches: candidate batch sizes; the fastest per image on the first subnet is
            used for all.
        repeats: timed runs per subnet; the spread over them is reported.
        threads: intra-op threads (default: every core of this machine).

    """
    threads = threads or os.cpu_count() or 1
    files = [path for group in generations for path in group]
    measured = int(images.shape[0])
    load_before = _load()
    batch, sweep = _fastest_batch(files[0], images, batches, threads)
    measured = measured - measured % batch
    rapl_start = rapl_energy_uj()
    repeat_s = [0.0] * repeats
    wall_started = time.perf_counter()
    for path in files:
        session = _session(path, batch, threads)
        _time_images(session, images[:batch], batch)  # warm-up
        for k in range(repeats):
            repeat_s[k] += _time_images(session, images[:measured], batch)
    wall_s = time.perf_counter() - wall_started
    rapl_end = rapl_energy_uj()
    scale = target_images / measured
    totals = sorted(seconds * scale for seconds in repeat_s)
    power = host_power()
    if rapl_start is not None and rapl_end is not None and rapl_end > rapl_start:
        joules_per_s = (rapl_end - rapl_start) * 1e-6 / wall_s
        energy_is = "measured: RAPL package energy over the timed runs"
        energy_label = "energy from RAPL"
    else:
        joules_per_s = power["cpu_watts_per_core"] * threads
        energy_is = (f"estimated: no readable RAPL counters; time x "
                     f"{power['cpu_watts_per_core']} W/core x {threads} cores assumed")
        energy_label = (f"energy estimated: {power['cpu_watts_per_core']} W/core x "
                        f"{threads} cores assumed, no RAPL")
    energies = [seconds * joules_per_s for seconds in totals]
    label = (f"(d) CPU onnxruntime, batch {batch}, {threads} threads, measured on "
             f"{plural(measured, 'image')}/subnet, extrapolated to {target_images:,}; "
             f"{energy_label}")
    run = SystemRun("cpu", label, "estimated", len(files), target_images,
                    time_s=statistics.median(totals),
                    energy_j=statistics.median(energies), cell_writes=None)
    run.spread = {"time_s": [totals[0], statistics.median(totals), totals[-1]],
                  "energy_j": [energies[0], statistics.median(energies), energies[-1]]}
    run.extra.update(
        device=cpu_name(), threads=threads, batch=batch,
        batch_sweep_s_per_image={str(b): s for b, s in sweep.items()},
        measured_images=measured, repeats=repeats, energy_is=energy_is,
        watts=joules_per_s, power_source=power["sources"][0],
        load_average_before=load_before, load_average_after=_load(),
        time_is=f"measured on {measured} images per subnet, x {scale:g} per image")
    return run
