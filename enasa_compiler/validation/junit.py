"""JUnit XML reports of plan validation, for CI systems that show test results.

CI systems (GitHub Actions test-report actions, GitLab, Jenkins) read JUnit XML and
show each test case as passed or failed. ``enasa validate --junit FILE`` writes one
``<testsuite name="enasa validate">`` with a test case per check the validator runs
(one per violation kind, see :data:`~enasa_compiler.validation.validator.KINDS`), so a reviewer
sees which checks a plan passed, not only that it failed. A failed check carries a
``<failure>`` whose text is the check's violations, one per line.

A plan that cannot be checked at all (unreadable, not JSON, a model file missing)
still gets a report, with a single failing ``load`` test case: CI wants the file in
every case, and a missing report would hide the reason.

>>> check = check_plan("plans/group.plan.json")  # doctest: +SKIP
>>> write_junit("reports/enasa.xml", [check])  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enasa_compiler._text import plural
from enasa_compiler.atomic import write_atomic
from enasa_compiler.errors import EnasaError
from enasa_compiler.plan import Plan
from enasa_compiler.validation.validator import (
    KINDS,
    MODELS,
    SCHEMA,
    Violation,
    unchecked_claims,
    validate,
)

logger = logging.getLogger(__name__)

__all__ = [
    "LOAD_CASE",
    "SUITE_NAME",
    "PlanCheck",
    "check_plan",
    "checks_run",
    "junit_report",
    "write_junit",
]

SUITE_NAME = "enasa validate"
LOAD_CASE = "load"
"""The one test case of a plan that could not be checked at all."""

# XML 1.0 cannot hold these characters even escaped; a hostile plan's ids may.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class PlanCheck:
    """The outcome of validating one plan, as the report needs it.

    Attributes:
        plan: how the plan is named in the report (its path as given, or a label).
        violations: every violation found (empty when valid or when ``error`` is set).
        models_checked: whether the plan was checked against its source models, which
            adds the ``models`` check (without them it is a skipped test case naming
            what could not be proven).
        error: why the plan could not be checked (an input error, or a bug); None when
            it was.
        time_s: how long the check took.
        target_checked: whether a target was given to check the plan's against.
        initial_state_checked: whether a previous plan was given for the initial state.

    """

    plan: str
    violations: tuple[Violation, ...] = ()
    models_checked: bool = False
    error: Exception | None = None
    time_s: float = 0.0
    target_checked: bool = False
    initial_state_checked: bool = False

    @property
    def unchecked(self) -> tuple[str, ...]:
        """What could not be proven for lack of the models (empty with them)."""
        return unchecked_claims(self.models_checked, target_given=self.target_checked,
                                initial_state_given=self.initial_state_checked)

    @property
    def valid(self) -> bool:
        """Whether the plan was checked and no violation was found."""
        return self.error is None and not self.violations


def checks_run(models_checked: bool) -> tuple[str, ...]:
    """List the violation kinds :func:`~.validator.validate` checks for.

    Every kind is checked for every plan, except ``models``, which needs the models.
    """
    return tuple(kind for kind in KINDS if models_checked or kind != MODELS)


def check_plan(
    plan: Plan | dict[str, Any] | str | Path,
    models: Sequence[Any] | None = None,
    *,
    name: str | None = None,
    target: Any = None,
    initial_state: Any = None,
) -> PlanCheck:
    """Validate a plan, keeping an error that stops the check instead of raising it.

    The report must be written even when the plan does not load, so the error is
    kept in the result; callers that want it raised (the CLI, to set its exit code)
    re-raise :attr:`PlanCheck.error` after writing the report.

    Args:
        plan: what :func:`~enasa_compiler.validation.validator.validate` takes.
        models: the plan's source models, or None.
        name: how the report names the plan (default: the path, or ``"plan"``).
        target: the target the plan claims (``validate``'s ``target``).
        initial_state: the previous plan of an online plan (``validate``'s).

    """
    label = name if name is not None else (str(plan) if isinstance(plan, str | Path)
                                           else "plan")
    start = time.perf_counter()
    try:
        given = {key: value for key, value in (("target", target),
                                               ("initial_state", initial_state))
                 if value is not None}
        violations = validate(plan, models=models, **given)
    except Exception as exc:  # noqa: BLE001 - kept for the report; the caller re-raises
        if not isinstance(exc, EnasaError):
            logger.debug("validating %s failed", label, exc_info=True)
        return PlanCheck(label, (), models is not None, exc, time.perf_counter() - start,
                         target is not None, initial_state is not None)
    return PlanCheck(label, tuple(violations), models is not None, None,
                     time.perf_counter() - start, target is not None,
                     initial_state is not None)


def _text(value: str) -> str:
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", value)


def _failure_message(violations: Sequence[Violation]) -> str:
    return _text(f"{plural(len(violations), 'violation')}; first: {violations[0].message}")


def _plan_cases(suite: ET.Element, check: PlanCheck) -> dict[str, int]:
    """Add one plan's test cases to ``suite``; returns its counts by outcome."""
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    classname = _text(check.plan)
    if check.error is not None:
        case = ET.SubElement(suite, "testcase", classname=classname, name=LOAD_CASE,
                             time=f"{check.time_s:.3f}")
        counts["tests"] += 1
        if isinstance(check.error, EnasaError):
            # Bad input is the plan's fault, like a failed check: a failure.
            outcome, kind = "failure", str(getattr(check.error, "kind", "bad-input"))
            counts["failures"] += 1
        else:  # a bug in the toolchain, not in the plan
            outcome, kind = "error", type(check.error).__name__
            counts["errors"] += 1
        message = _text(str(check.error) or kind)
        ET.SubElement(case, outcome, message=message, type=kind).text = message
        return counts
    by_kind: dict[str, list[Violation]] = {}
    for violation in check.violations:
        by_kind.setdefault(violation.kind, []).append(violation)
    # A plan that breaks the schema is checked against the schema only.
    schema_only = SCHEMA in by_kind
    kinds = checks_run(check.models_checked)
    for kind in (*kinds, *(k for k in by_kind if k not in kinds)):
        # The validator is not timed check by check: the suite holds the time.
        case = ET.SubElement(suite, "testcase", classname=classname, name=kind,
                             time="0.000")
        counts["tests"] += 1
        found = by_kind.get(kind)
        if found:
            failure = ET.SubElement(case, "failure", message=_failure_message(found),
                                    type=kind)
            failure.text = _text("\n".join(str(v) for v in found))
            counts["failures"] += 1
        elif schema_only:
            ET.SubElement(case, "skipped", message="not run: the plan does not match the "
                          "plan schema")
            counts["skipped"] += 1
    if not check.models_checked and MODELS not in by_kind:
        # Without the models the plan is consistent, not proven: say what is not.
        case = ET.SubElement(suite, "testcase", classname=classname, name=MODELS,
                             time="0.000")
        message = "not run: no --models; unchecked: " + "; ".join(check.unchecked)
        ET.SubElement(case, "skipped", message=_text(message))
        counts["tests"] += 1
        counts["skipped"] += 1
    return counts


def junit_report(checks: Sequence[PlanCheck]) -> bytes:
    """Build the JUnit XML document of some plans' checks.

    One ``<testsuite name="enasa validate">`` (in a ``<testsuites>`` root) holds, per
    plan (its ``classname``), a test case per check kind, in the validator's order:
    passed, failed with a ``<failure type=KIND>`` listing the violations, or skipped
    (the checks after a schema failure). A plan that could not be checked has a
    single ``load`` case: a ``<failure>`` typed by the error's kind (``bad-input``...),
    or an ``<error>`` for a toolchain bug.

    Returns:
        The document, UTF-8 with an XML declaration.

    """
    # Readers differ on the root (GitLab, Jenkins, test-report actions): a
    # <testsuites> root with the counts and time on both levels suits them all.
    root = ET.Element("testsuites", name=SUITE_NAME)
    suite = ET.SubElement(root, "testsuite", name=SUITE_NAME)
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for check in checks:
        for key, count in _plan_cases(suite, check).items():
            totals[key] += count
    for element in (root, suite):
        for key, count in totals.items():
            element.set(key, str(count))
        element.set("time", f"{sum(c.time_s for c in checks):.3f}")
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write_junit(path: str | Path, checks: Sequence[PlanCheck]) -> Path:
    """Write :func:`junit_report` of ``checks`` to ``path`` atomically.

    Raises:
        InputError: the file cannot be written.

    """
    written = write_atomic(path, junit_report(checks))
    logger.info("wrote JUnit report %s", written)
    return written
