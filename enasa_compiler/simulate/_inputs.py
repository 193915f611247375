"""The inputs ``simulate --execute`` feeds a plan: one named array per graph input.

A group has one graph input; its models need not take images. A ``.npz`` for them holds
an array named like that input (``x``, ``input_ids``: any rank, the model's own dtype),
first axis the samples, and optional ``labels`` (N, int64). The old form, ``images``
(N x C x H x W float32) and ``labels``, is still read, by
:func:`enasa_compiler.inputs.read_npz`. Files are read with ``allow_pickle=False``, and
the sizes the archive declares are checked against the memory budget before an array
is read.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Sequence

import numpy as np

from enasa_compiler import budgets
from enasa_compiler.errors import InputError
from enasa_compiler.inputs import read_npz

logger = logging.getLogger(__name__)

__all__ = ["read_model_inputs"]

LEGACY_ARRAY = "images"
LABELS_ARRAY = "labels"


def _archive_names(origin: str) -> list[str]:
    """Return the array names of a ``.npz``, after checking its declared size."""
    if not os.path.isfile(origin):
        raise InputError(f"{origin}: cannot read: no such file")
    if not zipfile.is_zipfile(origin):
        raise InputError(f"{origin}: not a .npz archive (expected numpy.savez output)")
    try:
        with zipfile.ZipFile(origin) as archive:
            members = archive.infolist()
            budgets.check_bytes(f"{origin}: the archive",
                                sum(member.file_size for member in members))
            return [m.filename.removesuffix(".npy") for m in members]
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{origin}: cannot read as .npz: {exc}") from exc


def _read_array(origin: str, name: str) -> np.ndarray:
    try:
        with np.load(origin, allow_pickle=False) as archive:
            return np.asarray(archive[name])
    except ValueError as exc:
        raise InputError(f"{origin}: array '{name}' is a pickled object array ({exc})"
                         ) from exc
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise InputError(f"{origin}: array '{name}' cannot be read: {exc}") from exc


def read_model_inputs(
    path: str | os.PathLike[str], input_name: str, sample_shape: Sequence[int],
    dtype: np.dtype,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read the samples for the graph input ``input_name``, and labels when present.

    Args:
        path: the ``.npz`` file.
        input_name: the group's graph input; an array of that name is read, else the
            old ``images`` array.
        sample_shape: the input's shape without its batch axis.
        dtype: the input's element type; the array must have it (no silent casts).

    Raises:
        InputError: unreadable, no array for the input, wrong dtype or per-sample
            shape, empty, non-finite floats, or labels that do not fit.

    """
    origin = os.fspath(path)
    names = _archive_names(origin)
    if input_name not in names:
        if LEGACY_ARRAY in names:
            images, labels = read_npz(origin, require_labels=False)
            _check_sample_shape(images, LEGACY_ARRAY, sample_shape, origin)
            return images, labels
        raise InputError(f"{origin}: no array '{input_name}' (the models' input) nor "
                         f"'{LEGACY_ARRAY}' (found: {sorted(names)})")
    samples = _read_array(origin, input_name)
    if samples.dtype != dtype:
        raise InputError(f"{origin}: array '{input_name}' must be {dtype} (the models' "
                         f"input type), got {samples.dtype}")
    if samples.ndim == 0 or samples.shape[0] == 0:
        raise InputError(f"{origin}: array '{input_name}' holds no samples")
    _check_sample_shape(samples, input_name, sample_shape, origin)
    if samples.dtype.kind == "f" and not np.isfinite(samples).all():
        raise InputError(f"{origin}: array '{input_name}' holds NaN or infinite values")
    labels = None
    if LABELS_ARRAY in names:
        labels = _read_array(origin, LABELS_ARRAY)
        if labels.dtype != np.int64 or labels.shape != (samples.shape[0],):
            raise InputError(f"{origin}: array '{LABELS_ARRAY}' must be int64 of shape "
                             f"({samples.shape[0]},), got {labels.dtype} {labels.shape}")
    logger.debug("%s: %d samples of %s for '%s'", origin, samples.shape[0],
                 samples.shape[1:], input_name)
    return samples, labels


def _check_sample_shape(samples: np.ndarray, name: str, sample_shape: Sequence[int],
                        origin: str) -> None:
    if tuple(samples.shape[1:]) != tuple(sample_shape):
        raise InputError(f"{origin}: array '{name}' is {tuple(samples.shape[1:])} per "
                         f"sample but the plan's input is {tuple(sample_shape)}")
