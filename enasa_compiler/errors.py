"""Errors a user can act on.

Every failure caused by the user's input (a corrupt model, a bad target file, a
plan that does not parse) is raised as :class:`InputError`; the CLI turns it into
one line on stderr and exit code 2, with no traceback and no output file.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

__all__ = ["EnasaError", "InputError", "UnsupportedModelError"]


class EnasaError(Exception):
    """Base class of the errors the toolchain reports to users as one line."""

    exit_code: int = 2


class InputError(EnasaError):
    """The user's input cannot be used: unreadable, malformed or out of range."""

    exit_code = 2


class UnsupportedModelError(InputError):
    """The model is valid ONNX but uses something the compiler cannot map."""
