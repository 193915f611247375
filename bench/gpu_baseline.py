"""Baseline (f): the bench's distinct subnets on a GPU, for users who have one.

The evaluation machine has no GPU, so ``enasa bench`` prints "not measured on this
machine" for (f). This script measures it where a CUDA GPU is present: it draws the
same workload as ``enasa bench`` (the distinct subnets of K stage-wise generations of
G full-size subnets, same seed), runs each subnet in onnxruntime's CUDA provider
(or in torch on CUDA when onnxruntime has no CUDA provider), picks the fastest batch
size among a few, repeats the timed runs, extrapolates per image to N images, and
reads the energy from NVML (``pynvml``'s total-energy counter) when it is installed,
otherwise prices it as NVML's power reading x time, else as the board power limit x
time, and says which. It writes its own JSON (default
``bench/results/evaluation/gpu_results.json``); it is not imported by the tests.

Run:  python bench/gpu_baseline.py [--generations 2 --group-size 16 --images 10000]
It exits with status 0 and a message when no GPU is found.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

RESULTS = Path(__file__).resolve().parent / "results" / "evaluation" / "gpu_results.json"


def _nvml() -> Any | None:
    try:
        import pynvml  # type: ignore[import-not-found]

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # noqa: BLE001 - absent or no driver: fall back to power x time
        return None


def _energy_mj(nvml: Any | None) -> int | None:
    if nvml is None:
        return None
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(0)
        return int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
    except Exception:  # noqa: BLE001 - older GPUs have no energy counter
        return None


def _power_w(nvml: Any | None) -> tuple[float | None, str]:
    if nvml is None:
        return None, "no NVML (pip install nvidia-ml-py)"
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    try:
        return nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0, "NVML power reading"
    except Exception:  # noqa: BLE001
        limit = nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0
        return limit, "NVML board power limit (upper bound)"


def _runner(path: Path, batch: int) -> tuple[str, Any]:
    """Return (engine, run(images)) for one subnet at ``batch``, on the GPU."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        import onnx_ir as ir

        from enasa_compiler.frontend import load_subnet

        model = load_subnet(path, batch=batch).model
        session = ort.InferenceSession(ir.to_proto(model).SerializeToString(),
                                       providers=["CUDAExecutionProvider"])
        name = session.get_inputs()[0].name
        return "onnxruntime CUDA", lambda x: session.run(None, {name: x})
    import onnx2torch  # type: ignore[import-not-found]
    import torch

    net = onnx2torch.convert(str(path)).cuda().eval()

    def run(x: np.ndarray) -> None:
        with torch.inference_mode():
            net(torch.from_numpy(x).cuda())
        torch.cuda.synchronize()

    return "torch CUDA (onnx2torch)", run


def _time(run: Any, images: np.ndarray, batch: int) -> float:
    started = time.perf_counter()
    for start in range(0, images.shape[0] - batch + 1, batch):
        run(images[start:start + batch])
    return time.perf_counter() - started


def _gpu_name() -> str | None:
    try:
        import torch

        if torch.cuda.is_available():
            return str(torch.cuda.get_device_name(0))
    except ImportError:
        pass
    try:
        import onnxruntime as ort

        if "CUDAExecutionProvider" in ort.get_available_providers():
            return "CUDA device (onnxruntime)"
    except ImportError:
        pass
    return None


def main(argv: list[str] | None = None) -> int:
    """Measure the bench workload on the GPU and write the JSON; 0 when there is none."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", nargs="+", default=["spos", "fairnas"])
    parser.add_argument("--generations", type=int, default=2)
    parser.add_argument("--group-size", type=int, default=16)
    parser.add_argument("--images", type=int, default=10_000, help="N to extrapolate to")
    parser.add_argument("--measured-images", type=int, default=256)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32, 128])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    device = _gpu_name()
    if device is None:
        print("gpu_baseline: no CUDA GPU found (neither torch.cuda nor onnxruntime's "
              "CUDA provider); nothing measured.")
        return 0
    from enasa_compiler.evaluation.workload import (
        WorkloadSpec,
        build_workload_supernet,
        distinct_generations,
        export_generations,
        generation_archs,
    )

    nvml = _nvml()
    rng = np.random.default_rng(args.seed)
    images = rng.standard_normal((args.measured_images, 3, 224, 224), dtype=np.float32)
    results: dict[str, Any] = {"device": device, "command": " ".join(sys.argv),
                               "images": args.images, "spaces": {}}
    with tempfile.TemporaryDirectory(prefix="enasa-gpu-") as folder:
        for space in args.spaces:
            spec = WorkloadSpec(space, args.generations, args.group_size, seed=args.seed)
            supernet = build_workload_supernet(spec)
            groups = distinct_generations(generation_archs(supernet, spec))
            files = [p for g in export_generations(supernet, groups, Path(folder) / space)
                     for p in g]
            sweep = {}
            for batch in args.batches:
                engine, run = _runner(files[0], batch)
                _time(run, images[:batch], batch)
                sweep[batch] = _time(run, images, batch) / (
                    images.shape[0] // batch * batch)
            batch = min(sweep, key=lambda b: sweep[b])
            measured = images.shape[0] // batch * batch
            repeat_s = [0.0] * args.repeats
            energy_start = _energy_mj(nvml)
            wall = time.perf_counter()
            for path in files:
                engine, run = _runner(path, batch)
                _time(run, images[:batch], batch)
                for k in range(args.repeats):
                    repeat_s[k] += _time(run, images[:measured], batch)
            wall = time.perf_counter() - wall
            energy_end = _energy_mj(nvml)
            scale = args.images / measured
            totals = sorted(s * scale for s in repeat_s)
            if energy_start is not None and energy_end is not None:
                watts = (energy_end - energy_start) / 1000.0 / wall
                energy_is = "measured: NVML total energy over the timed runs"
            else:
                power, source = _power_w(nvml)
                watts = power if power is not None else float("nan")
                energy_is = f"estimated: {source} x time"
            results["spaces"][space] = {
                "engine": engine, "subnets": len(files), "batch": batch,
                "batch_sweep_s_per_image": {str(b): s for b, s in sweep.items()},
                "measured_images": measured, "repeats": args.repeats,
                "time_s": statistics.median(totals), "time_s_spread": totals,
                "energy_j": statistics.median(totals) * watts, "watts": watts,
                "energy_is": energy_is,
                "time_is": f"measured on {measured} images per subnet, x {scale:g}"}
            print(f"{space}: {len(files)} subnets, {statistics.median(totals):.3g} s for "
                  f"{args.images} images each ({engine}, batch {batch}); {energy_is}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
