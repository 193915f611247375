"""A fast yes/no check of the plan schema, so that large valid plans skip jsonschema.

``jsonschema`` spends about a millisecond per tile of a plan (it builds a validator
object for every value it descends into), so a 100,000-tile plan took a minute and a
half to check. The plan schema uses a dozen keywords; this module compiles them once
into plain Python functions (one per schema node, generated as source and run once)
that answer only *whether* a document conforms. A document
that does not, or a schema keyword it does not know, goes to
:func:`enasa_compiler.plan.schema.check_schema`, whose messages users see: the
fast path never reports anything itself, so the verdicts are the schema's.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import Any

from enasa_compiler.plan.schema import plan_schema

logger = logging.getLogger(__name__)

__all__ = ["conforms"]

Checker = Callable[[Any], bool]

# Keywords that only annotate: they never change a verdict.
_ANNOTATIONS = frozenset({"description", "title", "$schema", "$id", "$defs", "$comment",
                          "examples", "default"})


class _Unsupported(Exception):
    """The schema uses a keyword this module does not implement."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    # As jsonschema's draft 2020-12 type checker: an integral float is an integer.
    return _is_number(value) and (isinstance(value, int) or float(value).is_integer())


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


# A Python test of one JSON type, the common case first (plain ints, plain dicts).
_TYPE_TESTS = {
    "object": "isinstance({v}, dict)",
    "array": "isinstance({v}, list)",
    "string": "isinstance({v}, str)",
    "boolean": "({v} is True or {v} is False)",
    "null": "{v} is None",
    "number": "(type({v}) is int or type({v}) is float or _is_number({v}))",
    "integer": "(type({v}) is int or _is_integer({v}))",
}


class _Generator:
    """Writes one Python function per schema node; runs the source once."""

    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs
        self.lines: list[str] = []
        self.names: dict[int, str] = {}  # id(schema node) -> function name
        self.constants: dict[str, Any] = {"_is_number": _is_number,
                                          "_is_integer": _is_integer, "_equal": _equal}

    def constant(self, value: Any) -> str:
        name = f"_c{len(self.constants)}"
        self.constants[name] = value
        return name

    def function(self, schema: Any) -> str:
        if isinstance(schema, dict) and "$ref" in schema and len(
                set(schema) - _ANNOTATIONS) == 1:
            ref = schema["$ref"]
            if not (isinstance(ref, str) and ref.startswith("#/$defs/")):
                raise _Unsupported(ref)
            schema = self.defs[ref.removeprefix("#/$defs/")]
        if id(schema) in self.names:
            return self.names[id(schema)]
        name = self.names[id(schema)] = f"_f{len(self.names)}"
        if schema is True or schema == {}:
            self.lines += [f"def {name}(v):", "    return True"]
            return name
        if not isinstance(schema, dict):
            raise _Unsupported(repr(schema))
        if self.is_closed_record(schema):
            self.lines += self.record(name, schema)
            return name
        body = [f"def {name}(v):"]
        for key, value in schema.items():
            if key not in _ANNOTATIONS:
                body += [f"    {line}" for line in self.keyword(key, value, schema)]
        self.lines += [*body, "    return True"]
        return name

    @staticmethod
    def is_closed_record(schema: dict[str, Any]) -> bool:
        """Tell whether a node is an object of exactly its listed keys, all required."""
        return (set(schema) - _ANNOTATIONS == {"type", "properties", "required",
                                               "additionalProperties"}
                and schema["type"] == "object" and schema["additionalProperties"] is False
                and set(schema["required"]) == set(schema["properties"]))

    def record(self, name: str, schema: dict[str, Any]) -> list[str]:
        """Write a closed record's test: its key set compared once, then each value."""
        keys = self.constant(frozenset(schema["properties"]))
        lines = [f"def {name}(v):",
                 f"    if not isinstance(v, dict) or v.keys() != {keys}: return False"]
        for prop, sub in schema["properties"].items():
            inline = self.leaf_test(sub)
            if inline is not None:
                lines += [f"    x = v[{prop!r}]", f"    if not ({inline}): return False"]
            else:
                lines.append(f"    if not {self.function(sub)}(v[{prop!r}]): return False")
        return [*lines, "    return True"]

    def leaf_test(self, schema: Any) -> str | None:
        """Return an expression testing ``x`` against a one-type schema (and a minimum)."""
        if isinstance(schema, dict) and set(schema) - _ANNOTATIONS == {"$ref"}:
            ref = schema["$ref"]
            if not (isinstance(ref, str) and ref.startswith("#/$defs/")):
                return None
            schema = self.defs.get(ref.removeprefix("#/$defs/"))
        if not isinstance(schema, dict):
            return None
        keys = set(schema) - _ANNOTATIONS
        kind = schema.get("type")
        if not isinstance(kind, str) or kind not in _TYPE_TESTS or not keys <= {
                "type", "minimum"}:
            return None
        test = _TYPE_TESTS[kind].format(v="x")
        if "minimum" in schema and kind in ("integer", "number"):  # x is a number here
            test = f"{test} and x >= {self.constant(schema['minimum'])}"
        return test

    def keyword(self, key: str, value: Any, schema: dict[str, Any]) -> list[str]:
        if key == "$ref":
            return [f"if not {self.function({'$ref': value})}(v): return False"]
        if key == "type":
            names = [value] if isinstance(value, str) else list(value)
            tests = " or ".join(_TYPE_TESTS[n].format(v="v") for n in names)
            return [f"if not ({tests}): return False"]
        if key == "properties":
            lines = ["if isinstance(v, dict):"]
            for prop, sub in value.items():
                inline = self.leaf_test(sub)
                if inline is not None:  # a plain typed value: tested in place, no call
                    lines += [f"    if {prop!r} in v:", f"        x = v[{prop!r}]",
                              f"        if not ({inline}): return False"]
                else:
                    lines.append(f"    if {prop!r} in v and not {self.function(sub)}"
                                 f"(v[{prop!r}]): return False")
            return lines
        if key == "required":
            return [f"if isinstance(v, dict) and not {self.constant(frozenset(value))}"
                    " <= v.keys(): return False"]
        if key == "additionalProperties":
            if "patternProperties" in schema:
                raise _Unsupported(key)
            known = self.constant(frozenset(schema.get("properties", {})))
            if value is False:
                return [f"if isinstance(v, dict) and not v.keys() <= {known}: return False"]
            check = self.function(value)
            return ["if isinstance(v, dict):",
                    f"    for k in v.keys() - {known}:",
                    f"        if not {check}(v[k]): return False"]
        if key == "items":
            check = self.function(value)
            return [f"if isinstance(v, list) and not all(map({check}, v)): return False"]
        if key == "minimum":
            return [f"if _is_number(v) and not v >= {self.constant(value)}: return False"]
        if key == "maximum":
            return [f"if _is_number(v) and not v <= {self.constant(value)}: return False"]
        if key == "minItems":
            return [f"if isinstance(v, list) and len(v) < {self.constant(value)}: "
                    "return False"]
        if key == "const":
            return [f"if not _equal(v, {self.constant(value)}): return False"]
        if key == "enum":
            return [f"if not any(_equal(v, o) for o in {self.constant(list(value))}): "
                    "return False"]
        if key == "oneOf":
            checks = ", ".join(self.function(sub) for sub in value)
            return [f"if sum(1 for f in ({checks},) if f(v)) != 1: return False"]
        if key == "pattern":
            return [f"if isinstance(v, str) and {self.constant(re.compile(value))}"
                    ".search(v) is None: return False"]
        if key == "minLength":
            return [f"if isinstance(v, str) and len(v) < {self.constant(value)}: "
                    "return False"]
        raise _Unsupported(key)


def _compile(schema: dict[str, Any]) -> Checker:
    generator = _Generator(schema.get("$defs", {}))
    root = generator.function(schema)
    namespace = dict(generator.constants)
    exec("\n".join(generator.lines), namespace)  # noqa: S102 - our own source, from the schema
    checker: Checker = namespace[root]
    return checker


@functools.cache
def _checker() -> Checker | None:
    try:
        return _compile(plan_schema())
    except (_Unsupported, KeyError) as exc:
        logger.debug("plan schema keyword %s has no fast check; using jsonschema", exc)
        return None


def conforms(data: Any) -> bool:
    """Tell whether ``data`` surely matches the plan schema (False: ask jsonschema)."""
    checker = _checker()
    try:
        return checker is not None and checker(data)
    except (TypeError, ValueError, RecursionError):
        return False
