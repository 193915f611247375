"""Errors a user can act on.

Every failure caused by the user's input (a corrupt model, a bad target file, a
plan that does not parse) is raised as :class:`InputError`; the CLI turns it into
one line on stderr and exit code 2, with no traceback and no output file.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

__all__ = ["CheckFailedError", "EnasaError", "InputError", "UnsupportedModelError"]


class EnasaError(Exception):
    """Base class of the errors the toolchain reports to users as one line."""

    exit_code: int = 2
    kind: str = "error"
    """A stable name of the error class, for ``--json`` output that CI jobs parse."""


class InputError(EnasaError):
    """The user's input cannot be used: unreadable, malformed or out of range."""

    exit_code = 2
    kind = "bad-input"


class UnsupportedModelError(InputError):
    """The model is valid ONNX but uses something the compiler cannot map."""

    kind = "unsupported-model"


class CheckFailedError(EnasaError):
    """A check the user asked for failed: an invalid plan, a numeric mismatch.

    Not bad input (the files were readable), so exit code 1, as ``enasa validate``
    uses for an invalid plan.
    """

    exit_code = 1
    kind = "check-failed"
