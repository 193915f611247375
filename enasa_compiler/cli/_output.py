"""How every ``enasa`` command talks: results, JSON, progress bars, a closed stdout.

One place for the conventions a CI job relies on: ``--json`` prints one JSON object on
stdout (results and errors alike), ``--quiet`` prints only errors, progress bars go to
an interactive stderr only, and a reader that closes stdout early (``| head -1``)
ends nothing but the printing.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
from typing import Any

from enasa_compiler.atomic import json_text

logger = logging.getLogger(__name__)

__all__ = ["PipeSafeStdout", "emit", "print_json_error", "show_progress"]


def emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    """Print a command's result: ``data`` as JSON with ``--json``, else ``text``."""
    if getattr(args, "json", False):
        print(json_text(data, "the --json result", indent=1, sort_keys=True))
    elif not getattr(args, "quiet", False):
        print(text)


def show_progress(args: argparse.Namespace) -> bool:
    """Return whether to draw progress bars: an interactive stderr, no --quiet/--json."""
    return not (getattr(args, "quiet", False) or getattr(args, "json", False)) \
        and sys.stderr.isatty()


def print_json_error(kind: str, message: str, exit_code: int) -> None:
    """Print an error as the one JSON object ``--json`` promises on stdout."""
    print(json.dumps({"error": {"kind": kind, "message": message, "exit_code": exit_code}},
                     indent=1, sort_keys=True))


class PipeSafeStdout(io.TextIOBase):
    """stdout that goes quiet when its reader has gone (``enasa ... | head -1``).

    A closed pipe is the reader's choice, not a failure of the command: the command
    finishes its work and keeps its own exit code, and what it would have printed
    after that point is dropped.
    """

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                self._stream.write(text)
            except BrokenPipeError:
                self._mark_broken()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._mark_broken()

    def isatty(self) -> bool:
        return bool(self._stream.isatty())

    def fileno(self) -> int:
        return int(self._stream.fileno())

    def _mark_broken(self) -> None:
        self.broken = True
        # Python flushes the real stdout again at exit; point its descriptor at
        # /dev/null so that flush does not print "Exception ignored ... BrokenPipe".
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, io.UnsupportedOperation):
            pass
