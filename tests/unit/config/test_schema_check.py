"""The box's own schema checker finds what ``jsonschema`` finds, on the config's schema and the rider
book's, over hundreds of broken documents; and it refuses a schema keyword it would not check."""

from __future__ import annotations

import copy
import random
from typing import Any

import jsonschema
import pytest
import yaml
from harness import ROOT

from gateway.config.schema_check import SchemaChecker
from gateway.config.validate import fill_defaults, schema
from gateway.pipeline.riderbook import BOOK_SCHEMA

BOOK = {
    "riders": {"r01": {"name": "Anna", "squad": "U23",
                       "profile": [{"from": "2026-03-01", "ftp_w": 250, "weight_kg": 58.5, "recorded": 1.7e9}]},
               "r02": {"name": "Tomáš", "squad": None, "profile": []}},
    "pairings": {"ant:4321": {"rider": "r01", "from": 1.7e9}, "chip:T7": {"rider": None}},
    "history": [{"what": "paired"}],
}
# What a value can be turned into: every JSON kind, bounds' edges, keys that break patterns.
ODD = [None, True, False, 0, 1, -1, 3.0, 2.5, -1e9, 1e9, 10**12, "", "x", "ant:", "2026-13-01", "r 01",
       "n" * 80, "n" * 81, [], [1], ["a", "b"], {}, {"unknown": 1}, {"id": "SF"}]


def _paths(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, (*path, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out += _paths(value, (*path, i))
    return out


def _mutate(doc: Any, rng: random.Random) -> Any:
    doc = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(_paths(doc)[1:])
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        action = rng.random()
        if action < 0.6:
            parent[path[-1]] = copy.deepcopy(rng.choice(ODD))
        elif action < 0.8 and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[rng.choice(["bogus", "ant:x y", "r/01", "Riders"])] = copy.deepcopy(rng.choice(ODD))
    return doc


def _found_by_jsonschema(document_schema: dict[str, Any], doc: Any) -> set[tuple[tuple[Any, ...], str]]:
    validator = jsonschema.Draft202012Validator(document_schema)
    return {(tuple(e.absolute_path), str(e.validator)) for e in validator.iter_errors(doc)}


def _found_by_ours(document_schema: dict[str, Any], doc: Any) -> set[tuple[tuple[Any, ...], str]]:
    return {(v.path, v.kind) for v in SchemaChecker(document_schema).violations(doc)}


@pytest.mark.parametrize("which", ["config", "rider book"])
def test_every_broken_document_breaks_the_same_rules_as_jsonschema_says(which: str) -> None:
    if which == "config":
        document_schema = schema()
        example = yaml.safe_load((ROOT / "config" / "gateway.yaml").read_text())
        base = fill_defaults(example)  # every section present, so each can be broken
    else:
        document_schema, base = BOOK_SCHEMA, BOOK
    assert _found_by_ours(document_schema, base) == set() == _found_by_jsonschema(document_schema, base)
    rng = random.Random(35)
    kinds: set[str] = set()
    for _ in range(300):
        doc = _mutate(base, rng)
        want = _found_by_jsonschema(document_schema, doc)
        assert _found_by_ours(document_schema, doc) == want, doc
        kinds |= {kind for _, kind in want}
    # The mutations reached the keywords that matter (not a comparison of empty sets).
    assert {"type", "required", "additionalProperties", "pattern"} <= kinds
    if which == "rider book":
        assert "maxLength" in kinds
    if which == "config":
        assert {"enum", "minimum", "maximum", "minItems"} <= kinds


def test_integers_may_be_written_as_floats_and_bools_are_not_numbers() -> None:
    checker = SchemaChecker({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}})
    assert checker.violations({"n": 3.0}) == []
    assert [(v.path, v.kind) for v in checker.violations({"n": True})] == [(("n",), "type")]
    assert [(v.path, v.kind) for v in checker.violations({"n": 0})] == [(("n",), "minimum")]


def test_a_keyword_it_does_not_check_is_refused_with_the_schema_not_skipped() -> None:
    with pytest.raises(ValueError, match="oneOf"):
        SchemaChecker({"type": "object", "properties": {"a": {"oneOf": [{"type": "string"}]}}})
