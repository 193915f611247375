"""Atomic file writes: a reader, or a crashed run, never sees half a file.

Every output file the toolchain writes (plans, exported subnets, reports) goes
through :func:`write_atomic`: the data goes to a hidden temporary file in the same
folder, is flushed to disk, and is renamed over the final name in one step.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

from enasa_compiler.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["write_atomic"]


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    The temporary file is opened exclusively with a plain ``open`` (not ``mkstemp``,
    whose files are 0600), so the result has the permissions the umask gives.

    Raises:
        InputError: the folder cannot be created or written.

    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(tmp, "xb")  # noqa: SIM115 - closed below, before the rename
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
