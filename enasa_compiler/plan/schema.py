"""The plan's JSON Schema and the one function that applies it.

The schema (``schemas/plan.schema.json``) fixes the *shape* of a plan document:
keys, types, ranges. It ships inside the package so a plan can be checked without
the compiler that wrote it. What the values *mean* (references resolve, the schedule
holds) is the validator's job; :func:`check_schema` is its first step and the gate
:meth:`enasa_compiler.plan.Plan.load` passes a file through before parsing it.
"""

from __future__ import annotations

import functools
import json
import logging
from importlib import resources
from typing import Any

import jsonschema

logger = logging.getLogger(__name__)

__all__ = ["check_schema", "plan_schema"]

_SCHEMA_PACKAGE = "enasa_compiler.plan"
_SCHEMA_PATH = "schemas/plan.schema.json"
# A message may quote the offending value; a whole target or tile list would drown it.
_MAX_MESSAGE_CHARS = 200

_PathKey = tuple[tuple[int, int, str], ...]


@functools.cache
def _cached_schema() -> dict[str, Any]:
    text = resources.files(_SCHEMA_PACKAGE).joinpath(_SCHEMA_PATH).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def plan_schema() -> dict[str, Any]:
    """Return a copy of the plan JSON Schema (draft 2020-12) shipped with the package."""
    return json.loads(json.dumps(_cached_schema()))


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    """Replace every local ``{"$ref": "#/$defs/x"}`` by a copy of ``x``.

    jsonschema resolves a ``$ref`` on every instance it checks, which made checking a
    large plan (thousands of events) take seconds; the plan schema has no recursive
    definitions, so inlining them once gives the same verdicts several times faster.
    """
    if isinstance(node, list):
        return [_inline_refs(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    inlined = {key: _inline_refs(value, defs) for key, value in node.items()
               if key not in ("$defs", "$ref")}
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        # Keys beside the reference (a description) are annotations; they stay.
        return {**_inline_refs(defs[ref.removeprefix("#/$defs/")], defs), **inlined}
    return inlined


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = _cached_schema()
    return jsonschema.Draft202012Validator(_inline_refs(schema, schema.get("$defs", {})))


def _field_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "(top level)"


def _sort_key(error: jsonschema.ValidationError) -> tuple[_PathKey, str]:
    # Indices sort numerically (operators.2 before operators.10); keys by name.
    parts = tuple((0, part, "") if isinstance(part, int) else (1, 0, str(part))
                  for part in error.absolute_path)
    return parts, error.message


def _short(message: str) -> str:
    if len(message) <= _MAX_MESSAGE_CHARS:
        return message
    return message[: _MAX_MESSAGE_CHARS - 3] + "..."


def check_schema(data: Any) -> list[str]:
    """Check parsed plan JSON against the plan schema.

    Args:
        data: the parsed JSON document (any value; a non-object is itself a violation).

    Returns:
        One line per violation, ``"field <path>: <message>"`` with a dotted path
        (``operators.3.latency_ns``, ``(top level)`` for the root), sorted by path.
        Empty when the document has the plan's shape.

    """
    errors = sorted(_validator().iter_errors(data), key=_sort_key)
    return [f"field {_field_path(e)}: {_short(e.message)}" for e in errors]
