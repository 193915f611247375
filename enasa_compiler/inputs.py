"""User input data: the ``.npz`` format every command that takes images reads.

A file holds ``images`` (N x C x H x W, float32) and, where a command measures
accuracy, ``labels`` (N, int64). It is read with ``allow_pickle=False``: an object
array is refused before anything is unpickled. Problems are one-line
:class:`~enasa_compiler.errors.InputError` messages naming the array.
"""

from __future__ import annotations

import logging
import os
import zipfile

import numpy as np

from enasa_compiler._text import plural
from enasa_compiler.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["read_npz"]


def _array(archive: np.lib.npyio.NpzFile, name: str, origin: str) -> np.ndarray:
    if name not in archive.files:
        raise InputError(f"{origin}: missing array '{name}' (found: {sorted(archive.files)})")
    try:
        return np.asarray(archive[name])
    except ValueError as exc:
        # allow_pickle=False refuses object arrays here, before anything is unpickled.
        message = f"{origin}: array '{name}' is a pickled object array ({exc})"
        raise InputError(message) from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{origin}: array '{name}' cannot be read: {exc}") from exc


def _check_images(images: np.ndarray, origin: str) -> None:
    if images.dtype != np.float32:
        raise InputError(f"{origin}: array 'images' must be float32, got {images.dtype}")
    if images.ndim != 4:
        raise InputError(f"{origin}: array 'images' must be N x C x H x W, got {images.shape}")
    if images.shape[0] == 0:
        raise InputError(f"{origin}: array 'images' is empty")
    if not np.isfinite(images).all():
        raise InputError(f"{origin}: array 'images' holds NaN or infinite values")


def _check_labels(labels: np.ndarray, count: int, origin: str) -> None:
    if labels.dtype != np.int64:
        raise InputError(f"{origin}: array 'labels' must be int64, got {labels.dtype}")
    if labels.ndim != 1:
        raise InputError(f"{origin}: array 'labels' must be 1-D, got shape {labels.shape}")
    if labels.shape[0] != count:
        raise InputError(
            f"{origin}: arrays 'images' and 'labels' differ in length "
            f"({plural(count, 'image')}, {plural(labels.shape[0], 'label')})"
        )
    if count and labels.min() < 0:
        raise InputError(f"{origin}: array 'labels' holds negative class indices")


def read_npz(
    path: str | os.PathLike[str], *, require_labels: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read ``images`` and ``labels`` from a ``.npz`` file, checked.

    Args:
        path: the file.
        require_labels: when False, a file without ``labels`` is accepted (for
            commands that only compare outputs) and ``None`` is returned for them.

    Raises:
        InputError: unreadable, not a ``.npz``, an array missing, pickled, of the
            wrong dtype or shape, empty, non-finite, or lengths that differ.

    """
    origin = os.fspath(path)
    if not os.path.isfile(origin):
        raise InputError(f"{origin}: cannot read: no such file")
    if not zipfile.is_zipfile(origin):
        raise InputError(f"{origin}: not a .npz archive (expected numpy.savez output)")
    try:
        archive = np.load(origin, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{origin}: cannot read as .npz: {exc}") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise InputError(f"{origin}: not a .npz archive (expected numpy.savez output)")
    with archive:
        images = _array(archive, "images", origin)
        labels = (_array(archive, "labels", origin)
                  if require_labels or "labels" in archive.files else None)
    _check_images(images, origin)
    if labels is not None:
        _check_labels(labels, images.shape[0], origin)
    logger.debug("%s: %d images of %s", origin, images.shape[0], images.shape[1:])
    return images, labels
