"""``enasa validate``: a plan checked as a claim, not trusted as the compiler's output.

:mod:`.validator` runs the checks and returns every violation; :mod:`.junit` writes
them as JUnit XML for CI systems.
"""

from __future__ import annotations

from enasa_compiler.validation.validator import (
    KINDS,
    Violation,
    ViolationKind,
    describe_violations,
    validate,
)

__all__ = ["KINDS", "Violation", "ViolationKind", "describe_violations", "validate"]
