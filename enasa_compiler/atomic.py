"""Atomic file writes: a reader, or a crashed run, never sees half a file.

Every output file the toolchain writes (plans, exported subnets, reports) goes
through :func:`write_atomic`: the data goes to a hidden temporary file in the same
folder, is flushed to disk, and is renamed over the final name in one step. A
temporary file still open when the process is told to stop (SIGINT, SIGTERM, SIGHUP:
the CLI turns each into an exception) is removed on the way out, and
:func:`remove_pending` removes any left when a signal lands between two statements.

:func:`check_output_path` refuses, before any work, an output that would clobber
something that is not ours to replace: one of the command's inputs, a device or a
FIFO, or a read-only file.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from enasa_compiler.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["check_output_path", "json_text", "remove_pending", "write_atomic"]

_pending: set[Path] = set()
"""Temporary files opened and not yet renamed or removed."""


def remove_pending() -> None:
    """Remove every temporary file this process has open (on the way out of a signal)."""
    for tmp in list(_pending):
        tmp.unlink(missing_ok=True)
        _pending.discard(tmp)


def check_output_path(
    path: str | Path, inputs: Iterable[str | Path] = (), *, force: bool = False,
    folder: bool = False,
) -> Path:
    """Refuse an output path that writing would turn into a loss.

    Args:
        path: where the command will write.
        inputs: the files the command reads; writing over one would destroy it.
        force: allow replacing a read-only file (never an input, a device or a FIFO).
        folder: the output is a folder (it may exist as one; it must be writable).

    Raises:
        InputError: the path is an input, exists but is not a regular file (or not a
            folder, for ``folder``), is read-only without ``force``, or its folder
            cannot be written.

    """
    path = Path(path)
    for given in inputs:
        try:
            if Path(given).exists() and path.exists() and path.samefile(given):
                raise InputError(f"output {path} is one of the command's inputs; "
                                 "choose another output path")
        except OSError:
            continue
        if Path(os.path.abspath(given)) == Path(os.path.abspath(path)):
            raise InputError(f"output {path} is one of the command's inputs; choose "
                             "another output path")
    if path.exists() or path.is_symlink():
        if folder:
            if not path.is_dir():
                raise InputError(f"output folder {path} exists and is not a folder")
            if not os.access(path, os.W_OK):
                raise InputError(f"output folder {path} is not writable")
            return path
        if not path.is_file():
            raise InputError(f"output {path} exists and is not a regular file (a folder, "
                             "device or FIFO); refusing to replace it")
        read_only = not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
        if (read_only or not os.access(path, os.W_OK)) and not force:
            raise InputError(f"output {path} is read-only; pass --force to replace it")
    parent = path if folder and path.is_dir() else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise InputError(f"cannot write {path}: folder {parent} is not writable")
    return path


def json_text(data: Any, what: str, **options: Any) -> str:
    """``json.dumps`` that refuses NaN and infinities instead of writing them.

    Python writes them as bare ``NaN`` / ``Infinity``, which is not JSON: other
    readers (and this toolchain's own plan reader) reject the file, and a figure that
    is NaN says nothing. ``options`` go to ``json.dumps`` (``indent``, ``sort_keys``).

    Raises:
        InputError: ``data`` holds a NaN or infinite number; the message names
            ``what`` was being written.

    """
    try:
        return json.dumps(data, allow_nan=False, **options)
    except ValueError as exc:
        raise InputError(f"refusing to write {what}: it would hold NaN or Infinity, which "
                         "JSON cannot carry (a figure of the input is out of range)") from exc


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
        _pending.add(tmp)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists() and not path.is_file():
            # Renaming over a FIFO or a device node would replace it, not write to it.
            raise InputError(f"cannot write {path}: it exists and is not a regular file")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        _pending.discard(tmp)
    return path
