"""Budgets: how much an input may make the toolchain allocate, checked before it does.

A small file can declare a huge size: a 4 MB ``.npz`` whose members inflate to 30 GB,
a 700-byte model whose ``ConstantOfShape`` asks for billions of elements, a tensor
whose external data file is a sparse 4 GiB file. Every such size is read from the
input's own metadata (the zip directory and ``.npy`` headers, a tensor's dims and
data type, a fold's input values) and compared with a budget *before* any memory is
used; exceeding one is an :class:`~enasa_compiler.errors.InputError` (exit 2, one
line) that names the budget and how to raise it.

The budgets (``docs/validation.md`` lists them):

``max_memory_bytes`` (``--max-memory MIB``, ``ENASA_MAX_MEMORY_MB``; default 1024 MiB)
    the most one input-declared thing may take: a tensor of a model (initializer,
    external data, intermediate value at the compiled batch size), the arrays of an
    ``.npz`` together, a constant-folding result.
``max_compression_ratio`` (``ENASA_MAX_COMPRESSION_RATIO``; default 1000)
    the most a compressed ``.npz`` member may inflate (a zip bomb inflates ~1000x).
``max_plan_bytes`` (``ENASA_MAX_PLAN_MB``; default 128 MiB)
    the size of a plan file, checked before it is read.
``max_plan_entries`` (``ENASA_MAX_PLAN_ENTRIES``; default 4,000,000)
    JSON values in a plan (commas and brackets, counted before it is parsed: parsed
    JSON takes up to ~250 bytes a value, so this bounds the parser's memory; a
    100,000-tile plan holds about 1.1 million).

The environment is read at each check, so a test or a wrapper script can raise a
limit with ``ENASA_...``; the CLI's ``--max-memory`` overrides the environment for
the run (:func:`override`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from enasa_compiler.errors import InputError

if TYPE_CHECKING:  # numpy is imported where arrays are read: ``enasa --help`` needs none
    import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "Budgets",
    "check_bytes",
    "check_count",
    "check_fold_budget",
    "check_threads",
    "current",
    "fold_output_elements",
    "override",
    "usable_cores",
]

_MIB = 1 << 20
_ENV = {
    "max_memory_bytes": ("ENASA_MAX_MEMORY_MB", _MIB),
    "max_compression_ratio": ("ENASA_MAX_COMPRESSION_RATIO", 1),
    "max_plan_bytes": ("ENASA_MAX_PLAN_MB", _MIB),
    "max_plan_entries": ("ENASA_MAX_PLAN_ENTRIES", 1),
}
# How a user raises each budget, for the message that refuses an input.
_HOW_TO_RAISE = {
    "max_memory_bytes": "--max-memory MIB or ENASA_MAX_MEMORY_MB",
    "max_compression_ratio": "ENASA_MAX_COMPRESSION_RATIO",
    "max_plan_bytes": "ENASA_MAX_PLAN_MB",
    "max_plan_entries": "ENASA_MAX_PLAN_ENTRIES",
}


@dataclass(frozen=True)
class Budgets:
    """The limits in force; see the module docstring for what each bounds."""

    max_memory_bytes: int = 1024 * _MIB
    max_compression_ratio: int = 1000
    max_plan_bytes: int = 128 * _MIB
    max_plan_entries: int = 4_000_000


_override: dict[str, int] = {}


def current() -> Budgets:
    """Return the budgets in force: defaults, then the environment, then :func:`override`.

    Raises:
        InputError: an ``ENASA_MAX_...`` variable that is not a positive integer.

    """
    values: dict[str, int] = {}
    for name, (variable, unit) in _ENV.items():
        text = os.environ.get(variable)
        if text is None or text == "":
            continue
        try:
            number = int(text)
        except ValueError:
            number = 0
        if number < 1 or number > (1 << 62) // unit:
            raise InputError(f"environment variable {variable} must be a positive integer, "
                             f"got {text[:40]!r}")
        values[name] = number * unit
    return replace(Budgets(), **{**values, **_override})


@contextmanager
def override(*, max_memory_mb: int | None = None) -> Iterator[None]:
    """Raise or lower the memory budget for the duration of a command (``--max-memory``).

    Raises:
        InputError: a budget below 1 MiB or absurdly large.

    """
    if max_memory_mb is None:
        yield
        return
    if not 1 <= max_memory_mb <= (1 << 40):
        raise InputError(f"--max-memory must be between 1 and {1 << 40} MiB, "
                         f"got {max_memory_mb}")
    before = dict(_override)
    _override["max_memory_bytes"] = max_memory_mb * _MIB
    try:
        yield
    finally:
        _override.clear()
        _override.update(before)


def _size(count: float) -> str:
    """Format a byte count for a reader to take in at a glance (``4.0 GiB``)."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", _MIB), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{int(count)} bytes"


def check_bytes(what: str, declared_bytes: float, budget: str = "max_memory_bytes") -> None:
    """Refuse ``what`` if it declares more bytes than the budget allows.

    Args:
        what: the input and the thing in it, as the message should name them.
        declared_bytes: the size the input's metadata declares (may be astronomically
            large, hence a float is accepted: it is never allocated).
        budget: the :class:`Budgets` field that bounds it.

    Raises:
        InputError: over budget; the message names the limit and how to raise it.

    """
    limit = getattr(current(), budget)
    if declared_bytes > limit:
        raise InputError(f"{what} declares {_size(declared_bytes)}, over the "
                         f"{_size(limit)} budget; refused before allocating it (raise it "
                         f"with {_HOW_TO_RAISE[budget]})")


def check_count(what: str, count: float, budget: str, noun: str) -> None:
    """Refuse ``what`` if a count (entries, a compression ratio) is over its budget.

    Raises:
        InputError: over budget; the message names the limit and how to raise it.

    """
    limit = getattr(current(), budget)
    if count > limit:
        shown = f"{count:.0f}" if count < 1e15 else f"{count:.3g}"
        raise InputError(f"{what} has {shown} {noun}, over the limit of {limit}; refused "
                         f"(raise it with {_HOW_TO_RAISE[budget]})")


# ---- constant folding ----------------------------------------------------------------
def _broadcast(shapes: Sequence[Sequence[int]]) -> list[int]:
    """Numpy broadcasting of shapes, without checking they broadcast (a bound suffices)."""
    rank = max((len(s) for s in shapes), default=0)
    out = [1] * rank
    for shape in shapes:
        for axis, dim in enumerate(shape, start=rank - len(shape)):
            out[axis] = max(out[axis], int(dim))
    return out


def _ints(array: np.ndarray | None) -> list[int] | None:
    if array is None or array.dtype.kind not in "iu":
        return None
    return [int(v) for v in array.reshape(-1)]


def _resize_elements(shape: Sequence[int], inputs: Sequence[np.ndarray | None],
                     scales_index: int, sizes_index: int) -> float | None:
    sizes = _ints(inputs[sizes_index]) if len(inputs) > sizes_index else None
    if sizes:
        return float(math.prod(abs(s) for s in sizes))
    scales = inputs[scales_index] if len(inputs) > scales_index else None
    if scales is None or scales.size != len(shape):
        return None
    return float(math.prod(d * abs(float(s)) for d, s in zip(shape, scales.reshape(-1),
                                                            strict=True)))


def fold_output_elements(op_type: str, inputs: Sequence[np.ndarray | None],
                         attributes: dict[str, Any]) -> float | None:
    """Elements a fold of ``op_type`` on these constant inputs would produce, at most.

    Computed from the inputs' values and shapes alone, so a fold that would allocate
    gigabytes is refused before it runs. Exact for the operators whose output size
    depends on input *values* (ConstantOfShape, Expand, Tile, Range, Pad, Resize,
    Upsample, OneHot) and for outer products (MatMul, Gemm, Gather); for every other
    operator the inputs' broadcast shape (their summed sizes for Concat), which bounds
    elementwise, reshaping, slicing and reducing operators.

    Returns:
        The element count (a float: it may be far beyond any integer type), or None
        where the inputs do not say (an operator this function cannot bound).

    """
    shapes = [list(a.shape) if a is not None else [] for a in inputs]
    first = inputs[0] if inputs else None
    if op_type == "ConstantOfShape":
        dims = _ints(first)
        return None if dims is None else float(math.prod(abs(d) for d in dims))
    if op_type == "Expand" and len(inputs) > 1:
        target = _ints(inputs[1])
        return None if target is None else float(math.prod(
            _broadcast([shapes[0], [abs(d) for d in target]])))
    if op_type == "Tile" and len(inputs) > 1:
        repeats = _ints(inputs[1])
        if repeats is None or len(repeats) != len(shapes[0]):
            return None
        return float(math.prod(d * abs(r) for d, r in zip(shapes[0], repeats, strict=True)))
    if op_type == "Range" and len(inputs) == 3 and all(a is not None for a in inputs):
        import numpy as np

        start, limit, delta = (float(np.asarray(a).reshape(-1)[0]) for a in inputs)
        if delta == 0 or not all(map(math.isfinite, (start, limit, delta))):
            return None
        return max(0.0, math.ceil((limit - start) / delta))
    if op_type == "Pad" and len(inputs) > 1:
        pads = _ints(inputs[1])
        if pads is None:
            return None
        rank = len(shapes[0])
        axes = _ints(inputs[3]) if len(inputs) > 3 and inputs[3] is not None else None
        axes = [a % rank for a in axes] if axes and rank else list(range(rank))
        grown = list(shapes[0])
        for i, axis in enumerate(axes):
            if i + len(axes) < len(pads):
                grown[axis] += abs(pads[i]) + abs(pads[i + len(axes)])
        return float(math.prod(grown))
    if op_type == "Resize" and inputs:
        return _resize_elements(shapes[0], inputs, 2, 3)
    if op_type == "Upsample" and len(inputs) > 1:
        return _resize_elements(shapes[0], inputs, 1, 99)
    if op_type == "OneHot" and len(inputs) > 1:
        depth = _ints(inputs[1])
        return None if not depth else float(math.prod(shapes[0]) * abs(depth[0]))
    if op_type in ("MatMul", "Gemm") and len(inputs) > 1 and shapes[0] and shapes[1]:
        a, b = shapes[0], shapes[1]
        rows = a[-2] if len(a) > 1 else 1
        cols = b[-1] if len(b) > 1 else 1
        if op_type == "Gemm":
            rows = a[1] if attributes.get("transA") else a[0]
            cols = b[0] if attributes.get("transB") else b[-1]
        batch = _broadcast([a[:-2], b[:-2]])
        return float(math.prod(batch) * rows * cols)
    if op_type == "Gather" and len(inputs) > 1 and shapes[0]:
        axis = int(attributes.get("axis", 0)) % len(shapes[0])
        return float(math.prod(shapes[0]) / max(1, shapes[0][axis]) * math.prod(shapes[1]))
    if op_type in ("Einsum", "GatherND", "Col2Im", "CenterCropPad"):
        return None
    present = [s for s, a in zip(shapes, inputs, strict=True) if a is not None]
    if op_type == "Concat":
        return float(sum(math.prod(s) for s in present))
    return float(math.prod(_broadcast(present)))


def check_fold_budget(node: Any, max_elements: int) -> None:
    """Refuse to fold an ``onnx_ir`` node whose result would be over budget.

    Called by the canonicalizer just before it evaluates a node whose inputs are all
    constant and whose result shape inference could not tell (it hangs on values
    an earlier fold computed): the element count comes from
    :func:`fold_output_elements` (the inputs' values and shapes), so nothing of the
    result is allocated. Its element count must stay within ``max_elements`` (the
    pass's fold limit) and its bytes within ``max_memory_bytes``. A node with all
    inputs constant that is not folded stays a computation nothing downstream maps, so
    refusing it here, with its name, is the clear end of the road.

    Raises:
        InputError: the fold would produce more than either limit allows.

    """
    import numpy as np
    import onnx_ir as ir

    if all(v.shape is not None and v.shape.is_static() for v in node.outputs):
        return  # shape inference knew the result's size, and the caller checked it
    arrays: list[np.ndarray | None] = []
    for value in node.inputs:
        tensor = None
        if value is not None and not value.is_graph_input():
            try:
                tensor = ir.convenience.get_const_tensor(value)
            except ValueError:
                tensor = None
        arrays.append(None if tensor is None else np.asarray(tensor.numpy()))
    attributes = {name: attr.value for name, attr in node.attributes.items()}
    elements = fold_output_elements(node.op_type, arrays, attributes)
    if elements is None:
        return
    what = f"node '{node.name}' ({node.op_type})"
    if elements > max_elements:
        raise InputError(f"{what} would produce {elements:.4g} elements when folded, over "
                         f"the {max_elements} element limit of constant folding; refused "
                         "before computing it")
    check_bytes(f"{what} folded", elements * 8)


# ---- threads ---------------------------------------------------------------------------
def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers narrow)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def check_threads(count: int | None, flag: str) -> int | None:
    """Return a thread or worker count, refused past the cores this process may use.

    More threads than cores only slow a run down, and a huge count makes OpenMP abort
    while allocating its pool (``--threads 1000000000`` ended inside libgomp with two
    lines of its own); ``None`` (the library's default) passes through.

    Raises:
        InputError: a count below 1 or above :func:`usable_cores`.

    """
    if count is None:
        return None
    cores = usable_cores()
    if not 1 <= count <= cores:
        raise InputError(f"{flag} must be between 1 and {cores} (the cores this process may "
                         f"use), got {count}")
    return count
