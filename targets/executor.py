"""Functional execution of a plan: proof that the mapping computes what the models compute.

A plan is only useful if running it gives the subnets' outputs. This executor walks the
plan's schedule in time order, writes each programmed tile into a simulated crossbar,
and runs every MVM operator by reading *the crossbars its placements name*, tile by
tile: partial sums of row blocks are added digitally, column blocks concatenated.
Weight values come from the group model's initializers (an MVM operator's node has
the operator's id as its name); digital operators run the node's ONNX semantics.

``mode="ideal"`` does the tiled arithmetic in float64 and must match onnxruntime;
``mode="quantized"`` simulates the crossbar datapath of the target (weight and
activation quantization, bit slicing, bit-serial inputs, ADCs, shift-add), optionally
with conductance variation and stuck-at faults. ``docs/executor.md`` documents the
range policies and limitations.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from enasa_compiler._text import plural
from enasa_compiler.errors import CheckFailedError, InputError
from enasa_compiler.plan import Plan
from enasa_compiler.targets import _node_math as nm
from enasa_compiler.targets._numerics import (
    AdcRange,
    Calibration,
    IdealNumerics,
    QuantizedNumerics,
)
from enasa_compiler.targets._plan_runner import (
    ExecutionError,
    PlanStructure,
    chunks,
    run_chunks,
)
from enasa_compiler.targets.target import Target, target_from_dict

logger = logging.getLogger(__name__)

__all__ = [
    "AdcRange",
    "ExecutionError",
    "ExecutionResult",
    "accuracy",
    "compare_with_onnxruntime",
    "execute_plan",
    "onnxruntime_outputs",
    "top1_agreement",
]

_MODES = ("ideal", "quantized")


@dataclass(frozen=True)
class ExecutionResult:
    """What a plan computed, per subnet, and what the ADCs saw.

    Attributes:
        mode: ``ideal`` or ``quantized``.
        subnet_names: the plan's subnet names, in subnet order.
        outputs: per subnet, output name (group model name) -> array over all images.
        adc_conversions: ADC conversions simulated (quantized mode).
        adc_clipped: conversions whose column sum exceeded the ADC's full scale.
        seconds: wall time of the execution, calibration included.

    """

    mode: str
    subnet_names: tuple[str, ...]
    outputs: tuple[dict[str, np.ndarray], ...]
    adc_conversions: int = 0
    adc_clipped: int = 0
    seconds: float = 0.0

    @property
    def adc_clip_fraction(self) -> float:
        """Share of ADC conversions that clipped."""
        return self.adc_clipped / self.adc_conversions if self.adc_conversions else 0.0

    def logits(self, subnet: int) -> np.ndarray:
        """Return the first output of a subnet (its logits, for a classifier)."""
        return next(iter(self.outputs[subnet].values()))


def _check_options(plan: Plan, images: np.ndarray, mode: str, adc_range: AdcRange,
                   variation_sigma: float, stuck_at_fraction: float, target: Target) -> None:
    if mode not in _MODES:
        raise InputError(f"mode must be one of {', '.join(_MODES)}, not '{mode}'")
    if tuple(images.shape[1:]) != tuple(plan.input_shape[1:]):
        raise InputError(f"images of shape {images.shape} do not match the plan input "
                         f"{plan.input_shape} (any batch size is accepted)")
    if isinstance(adc_range, str):
        if adc_range not in ("full", "calibrated"):
            raise InputError(f"adc_range must be 'full', 'calibrated' or a fraction, "
                             f"not '{adc_range}'")
    elif not 0 < float(adc_range) <= 1:
        raise InputError(f"adc_range as a fraction must lie in (0, 1], not {adc_range}")
    if variation_sigma < 0 or not 0 <= stuck_at_fraction <= 1:
        raise InputError("variation_sigma must be >= 0 and stuck_at_fraction in [0, 1]")
    if mode == "ideal" and (variation_sigma or stuck_at_fraction):
        raise InputError("variation and stuck-at faults need mode='quantized'")
    for matrix in plan.weights:
        if matrix.columns_per_weight != target.columns_per_weight:
            raise InputError(f"weight '{matrix.id}' was tiled with "
                             f"{matrix.columns_per_weight} columns per weight; the target "
                             f"'{target.name}' needs {target.columns_per_weight}: recompile")


def execute_plan(
    plan: Plan,
    group_model: ir.Model,
    images: np.ndarray,
    *,
    mode: Literal["ideal", "quantized"] = "ideal",
    adc_range: AdcRange = "calibrated",
    variation_sigma: float = 0.0,
    stuck_at_fraction: float = 0.0,
    seed: int = 0,
    target: Target | None = None,
    calibration_images: np.ndarray | None = None,
    pipelined: bool = False,
) -> ExecutionResult:
    """Run a plan numerically, operator by operator in schedule order, through its tiles.

    Args:
        plan: the plan (its schedule says which crossbar holds which tile when).
        group_model: the group model the plan was compiled from (weights, attributes).
        images: ``(N, ...)`` inputs, any ``N``; run in chunks of ``plan.batch`` when the
            group model hard-codes its batch size (a constant Reshape, ...).
        mode: ``ideal`` (float64 through the tiles) or ``quantized`` (crossbar datapath).
        adc_range: ADC full scale in quantized mode: ``"full"`` (largest possible column
            sum of the tile's rows), ``"calibrated"`` (per tile, the largest column sum
            seen on the calibration images) or a fraction of ``"full"``.
        variation_sigma: relative Gaussian spread of each cell's conductance.
        stuck_at_fraction: share of each crossbar's cells stuck at level 0 or the top
            level (half each).
        seed: seeds variation (per programming event) and faults (per crossbar).
        target: the precisions to simulate; defaults to the plan's own target. Its
            columns per weight must match the plan's tiles.
        calibration_images: images that fit the activation scales and calibrated ADC
            ranges; defaults to ``images``.
        pipelined: follow the plan's pipelined schedule instead of its batch schedule:
            one image at a time, segment after segment, each segment's writes then its
            slots in offset order, reading the crossbars the slots name.

    Raises:
        InputError: bad options or images.
        ExecutionError: the plan cannot run as written (a compute event reading a
            crossbar that does not hold the tile, an input not yet produced, ...).

    """
    started = time.perf_counter()
    resolved = target if target is not None else target_from_dict(plan.target,
                                                                  origin="plan target")
    images = np.asarray(images, dtype=_input_dtype(group_model))
    _check_options(plan, images, mode, adc_range, variation_sigma, stuck_at_fraction,
                   resolved)
    if pipelined and plan.pipeline is None:
        raise InputError("the plan has no pipelined schedule to execute")
    structure = PlanStructure(plan, group_model,
                              (resolved.crossbar.rows, resolved.crossbar.cols),
                              pipelined=pipelined)
    digital = nm.DigitalNodeRunner(group_model)
    ideal = IdealNumerics(structure.unrolled)
    names = tuple(s.name for s in plan.subnets)
    if mode == "ideal":
        outputs = run_chunks(structure, ideal, digital, images)
        return ExecutionResult("ideal", names, tuple(outputs),
                               seconds=time.perf_counter() - started)
    calibration_set = images if calibration_images is None else np.asarray(
        calibration_images, dtype=images.dtype)
    run_chunks(structure, ideal, digital, calibration_set)
    calibration = Calibration(activation=dict(ideal.calibration.activation))
    options: dict[str, Any] = {
        "adc_range": adc_range, "variation_sigma": variation_sigma,
        "stuck_at_fraction": stuck_at_fraction, "seed": seed}
    if adc_range == "calibrated":
        observer = QuantizedNumerics(structure.unrolled, resolved, calibration,
                                     observe_tiles=True, **options)
        run_chunks(structure, observer, digital, calibration_set)
    numerics = QuantizedNumerics(structure.unrolled, resolved, calibration,
                                 observe_tiles=False, **options)
    outputs = run_chunks(structure, numerics, digital, images)
    logger.info("quantized execution: %d ADC conversions, %.3f%% clipped",
                numerics.conversions, 100 * numerics.clipped / max(1, numerics.conversions))
    return ExecutionResult("quantized", names, tuple(outputs),
                           adc_conversions=numerics.conversions, adc_clipped=numerics.clipped,
                           seconds=time.perf_counter() - started)


ModelLike = str | Path | onnx.ModelProto | ir.Model
# onnxruntime's input type names, for feeding a model the element type it declares.
_ORT_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32, "tensor(double)": np.float64,
    "tensor(float16)": np.float16, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}


def _input_dtype(group_model: ir.Model) -> Any:
    """Return the numpy type of the group's input (float32 when it declares none)."""
    dtype = group_model.graph.inputs[0].dtype if group_model.graph.inputs else None
    return np.float32 if dtype is None else dtype.numpy()


def onnxruntime_outputs(model: ModelLike, images: np.ndarray) -> dict[str, np.ndarray]:
    """Run a model in onnxruntime on ``images``, in chunks when its batch size is fixed."""
    if isinstance(model, ir.Model):
        source: Any = ir.serde.serialize_model(model).SerializeToString()
    elif isinstance(model, onnx.ModelProto):
        source = model.SerializeToString()
    else:
        source = str(model)
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    batch = feed.shape[0] if feed.shape and isinstance(feed.shape[0], int) else None
    images = np.asarray(images, dtype=_ORT_DTYPES.get(feed.type, np.float32))
    names = [o.name for o in session.get_outputs()]
    collected: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for chunk, real in chunks(images, batch or max(1, images.shape[0])):
        for name, value in zip(names, session.run(None, {feed.name: chunk}), strict=True):
            collected[name].append(np.asarray(value)[:real])
    return {name: np.concatenate(parts) for name, parts in collected.items()}


def compare_with_onnxruntime(result: ExecutionResult, subnet_models: Sequence[ModelLike],
                             images: np.ndarray) -> list[float]:
    """Largest absolute difference per subnet between the plan's outputs and onnxruntime.

    ``subnet_models`` are the original subnet files or models, in subnet order; their
    outputs are matched to the plan's by position.
    """
    if len(subnet_models) != len(result.outputs):
        raise InputError(f"{plural(len(subnet_models), 'model')} for "
                         f"{plural(len(result.outputs), 'subnet')}")
    errors: list[float] = []
    for outputs, model in zip(result.outputs, subnet_models, strict=True):
        expected = onnxruntime_outputs(model, images)
        worst = 0.0
        for got, want in zip(outputs.values(), expected.values(), strict=True):
            if not (np.isfinite(got).all() and np.isfinite(want).all()):
                # max() would swallow a NaN and report the subnet as exact.
                raise CheckFailedError(
                    f"subnet {len(errors)} gives NaN or infinite outputs (the plan's run: "
                    f"{not np.isfinite(got).all()}, onnxruntime: "
                    f"{not np.isfinite(want).all()}); no error can be measured")
            worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - want))))
        errors.append(worst)
    return errors


def _first_output(reference: Any) -> np.ndarray:
    if isinstance(reference, Mapping):
        return np.asarray(next(iter(reference.values())))
    if isinstance(reference, list | tuple):
        return np.asarray(reference[0])
    return np.asarray(reference)


def top1_agreement(result: ExecutionResult,
                   reference_outputs: ExecutionResult | Sequence[Any]) -> list[float]:
    """Per subnet, the share of images whose arg-max class matches the reference's.

    Args:
        result: the execution to score.
        reference_outputs: another result (e.g. ideal mode), or per subnet its logits
            (an array, a list of outputs, or a name -> array mapping: the first is used).

    """
    if isinstance(reference_outputs, ExecutionResult):
        references = [reference_outputs.logits(i)
                      for i in range(len(reference_outputs.outputs))]
    else:
        references = [_first_output(r) for r in reference_outputs]
    if len(references) != len(result.outputs):
        raise InputError(f"{plural(len(references), 'reference')} for "
                         f"{plural(len(result.outputs), 'subnet')}")
    return [float(np.mean(_classes(result.logits(i)) == _classes(ref)))
            for i, ref in enumerate(references)]


def accuracy(result: ExecutionResult, labels: np.ndarray | Sequence[int]) -> list[float]:
    """Per subnet, the share of images whose arg-max class equals its label."""
    truth = np.asarray(labels).reshape(-1)
    return [float(np.mean(_classes(result.logits(i)) == truth))
            for i in range(len(result.outputs))]


def _classes(logits: np.ndarray) -> np.ndarray:
    return np.argmax(logits.reshape(logits.shape[0], -1), axis=1)
