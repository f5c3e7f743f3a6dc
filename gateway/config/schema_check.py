"""The JSON Schema (draft 2020-12) keywords our schemas use, checked in plain Python.

The box validated its config and its rider book with ``jsonschema``, which with its dependencies
(``referencing``, ``rpds``, ``attrs``) cost 5 MB of the box's memory and 40 ms of its start-up
(``tools/bench daemon``) for some twenty keywords. This checks exactly those, with the library's
meaning (an integer may be written 3.0, a bool is not a number, a keyword checks only the kind of
value it is about); a keyword it does not know is an error in the schema, raised at once, never a
rule silently skipped. ``tests/unit/config/test_schema_check.py`` holds it against ``jsonschema``
on many broken documents.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

# Keywords that only annotate (or hold subschemas reached through another keyword).
ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "$defs", "title", "description", "default", "examples",
                         "deprecated", "readOnly", "writeOnly"})
CHECKED = frozenset({"type", "enum", "$ref", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                     "minLength", "maxLength", "pattern", "items", "minItems", "maxItems", "properties",
                     "additionalProperties", "required", "minProperties", "maxProperties", "propertyNames"})


@dataclass(frozen=True)
class Violation:
    """One rule a value breaks: where (``path`` of keys and indexes), which keyword (``kind``), the value
    (``instance``), the keyword's value (``rule``) and the schema that holds it."""

    path: tuple[str | int, ...]
    kind: str
    instance: Any
    rule: Any
    schema: dict[str, Any]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return _number(value) and (isinstance(value, int) or float(value).is_integer())
    if name == "number":
        return _number(value)
    kinds: dict[str, type | tuple[type, ...]] = {"string": str, "boolean": bool, "array": list, "object": dict,
                                                 "null": type(None)}
    return isinstance(value, kinds[name])


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1 (Python says it is), 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


@cache
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text)


class SchemaChecker:
    """``violations(document)``: every rule of ``schema`` the document breaks, in document order."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self._check_keywords(schema)

    def _check_keywords(self, node: Any) -> None:
        if not isinstance(node, dict):
            return
        unknown = set(node) - CHECKED - ANNOTATIONS
        if unknown:
            raise ValueError(f"schema keyword(s) {sorted(unknown)} are not checked by gateway.config.schema_check")
        for key in ("properties", "$defs"):
            for sub in node.get(key, {}).values():
                self._check_keywords(sub)
        for key in ("items", "additionalProperties", "propertyNames"):
            self._check_keywords(node.get(key))

    def violations(self, document: Any) -> list[Violation]:
        return list(self._walk(document, self.schema, ()))

    def _resolve(self, ref: str) -> dict[str, Any]:
        if not ref.startswith("#/"):
            raise ValueError(f"only references within the schema are checked, not {ref!r}")
        target: Any = self.schema
        for part in ref[2:].split("/"):
            target = target[part]
        return dict(target)

    def _walk(self, value: Any, node: dict[str, Any], path: tuple[str | int, ...]) -> Iterator[Violation]:
        if "$ref" in node:
            yield from self._walk(value, self._resolve(node["$ref"]), path)
        types = node.get("type")
        if types is not None and not any(is_type(value, t) for t in ([types] if isinstance(types, str) else types)):
            yield Violation(path, "type", value, types, node)
        if "enum" in node and not any(_equal(value, choice) for choice in node["enum"]):
            yield Violation(path, "enum", value, node["enum"], node)
        if _number(value):
            yield from _bounds(value, node, path)
        elif isinstance(value, str):
            yield from _text(value, node, path)
        elif isinstance(value, list):
            yield from self._items(value, node, path)
        elif isinstance(value, dict):
            yield from self._mapping(value, node, path)

    def _items(self, value: list[Any], node: dict[str, Any], path: tuple[str | int, ...]) -> Iterator[Violation]:
        if "minItems" in node and len(value) < node["minItems"]:
            yield Violation(path, "minItems", value, node["minItems"], node)
        if "maxItems" in node and len(value) > node["maxItems"]:
            yield Violation(path, "maxItems", value, node["maxItems"], node)
        if isinstance(node.get("items"), dict):
            for i, item in enumerate(value):
                yield from self._walk(item, node["items"], (*path, i))

    def _mapping(self, value: dict[str, Any], node: dict[str, Any],
                 path: tuple[str | int, ...]) -> Iterator[Violation]:
        for kind, too_few in (("minProperties", True), ("maxProperties", False)):
            if kind in node and (len(value) < node[kind] if too_few else len(value) > node[kind]):
                yield Violation(path, kind, value, node[kind], node)
        if "required" in node and any(key not in value for key in node["required"]):
            yield Violation(path, "required", value, node["required"], node)
        names = node.get("propertyNames")
        if isinstance(names, dict):
            for key in value:  # a key's problem is its mapping's: the key has no path of its own
                yield from self._walk(key, names, path)
        properties: dict[str, Any] = node.get("properties", {})
        extra = node.get("additionalProperties", True)
        if extra is False and any(key not in properties for key in value):
            yield Violation(path, "additionalProperties", value, False, node)
        for key, item in value.items():
            if key in properties:
                yield from self._walk(item, properties[key], (*path, key))
            elif isinstance(extra, dict):
                yield from self._walk(item, extra, (*path, key))


def _bounds(value: float, node: dict[str, Any], path: tuple[str | int, ...]) -> Iterator[Violation]:
    broken = {"minimum": lambda rule: value < rule, "maximum": lambda rule: value > rule,
              "exclusiveMinimum": lambda rule: value <= rule, "exclusiveMaximum": lambda rule: value >= rule}
    for kind in [k for k in broken if k in node]:
        if broken[kind](node[kind]):
            yield Violation(path, kind, value, node[kind], node)


def _text(value: str, node: dict[str, Any], path: tuple[str | int, ...]) -> Iterator[Violation]:
    if "minLength" in node and len(value) < node["minLength"]:
        yield Violation(path, "minLength", value, node["minLength"], node)
    if "maxLength" in node and len(value) > node["maxLength"]:
        yield Violation(path, "maxLength", value, node["maxLength"], node)
    if "pattern" in node and not _pattern(node["pattern"]).search(value):
        yield Violation(path, "pattern", value, node["pattern"], node)
