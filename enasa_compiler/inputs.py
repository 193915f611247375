"""User input data: the ``.npz`` format every command that takes images reads.

A file holds ``images`` (N x C x H x W, float32) and, where a command measures
accuracy, ``labels`` (N, int64). It is read with ``allow_pickle=False``: an object
array is refused before anything is unpickled. Before any array is read, the sizes
the archive declares (the zip directory's uncompressed sizes and compression ratios,
each ``.npy`` header's shape and dtype) are checked against the budgets of
:mod:`enasa_compiler.budgets`, so a zip bomb is refused in milliseconds. Problems are
one-line :class:`~enasa_compiler.errors.InputError` messages naming the array.
"""

from __future__ import annotations

import logging
import os
import zipfile

import numpy as np

from enasa_compiler import budgets
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


def _check_declared_sizes(origin: str) -> None:
    """Check what the archive declares, reading only its directory and array headers.

    Raises:
        InputError: a member inflating past the compression-ratio budget, arrays
            together over the memory budget, or a header declaring more data than its
            member holds (numpy would allocate the declared size before reading).

    """
    try:
        with zipfile.ZipFile(origin) as archive:
            members = archive.infolist()
            declared = sum(member.file_size for member in members)
            budgets.check_bytes(f"{origin}: the archive", declared)
            for member in members:
                _check_member(archive, member, origin)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError,
            NotImplementedError) as exc:
        raise InputError(f"{origin}: cannot read as .npz: {exc}") from exc


def _check_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, origin: str) -> None:
    name = member.filename.removesuffix(".npy")
    if member.compress_size and member.file_size > member.compress_size:
        budgets.check_count(f"{origin}: array '{name}'",
                            member.file_size / member.compress_size,
                            "max_compression_ratio", "times compression")
    if not member.filename.endswith(".npy") or member.file_size == 0:
        return
    with archive.open(member) as stream:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
    if dtype.hasobject:
        return  # refused as a pickled object array when read, before unpickling
    needed = float(np.prod([float(d) for d in shape])) * dtype.itemsize
    budgets.check_bytes(f"{origin}: array '{name}'", needed)
    if needed > member.file_size:
        raise InputError(f"{origin}: array '{name}' declares shape {tuple(shape)} "
                         f"({needed:.0f} bytes) but its member holds {member.file_size} "
                         "bytes")


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
        InputError: unreadable, not a ``.npz``, over a budget (declared sizes), an
            array missing, pickled, of the wrong dtype or shape, empty, non-finite, or
            lengths that differ.

    """
    origin = os.fspath(path)
    if not os.path.isfile(origin):
        raise InputError(f"{origin}: cannot read: no such file")
    if not zipfile.is_zipfile(origin):
        raise InputError(f"{origin}: not a .npz archive (expected numpy.savez output)")
    _check_declared_sizes(origin)
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
