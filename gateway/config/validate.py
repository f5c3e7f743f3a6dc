"""Load, validate and complete the YAML configuration.

The JSON Schema in ``config/schema.json`` is the single source of truth for the shape of the file
and for its defaults; the few rules a schema cannot say (unique ids, references between sections)
are checked here. Every problem is reported with its path and, where known, its line.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import stat
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from gateway.config.schema_check import SchemaChecker, Violation
from gateway.config.settings import Settings, from_document
from gateway.config.yaml_text import parse_yaml
from gateway.errors import ConfigError, ConfigProblem

EMBEDDED = "<embedded defaults>"

_TYPE_WORDS = {
    "number": "a number",
    "integer": "a whole number",
    "string": "text",
    "boolean": "true or false",
    "null": "null",
    "array": "a list",
    "object": "a mapping",
}


@dataclass(frozen=True)
class Config:
    """A validated configuration with every default filled in: ``settings`` is its typed form,
    ``data`` the document (for the page, which shows the chart views as they are written)."""

    data: dict[str, Any]
    source: str

    @cached_property
    def settings(self) -> Settings:
        # Defaults filled again: a document edited after loading (a test, the page's set-up) may have
        # lost some, and the settings take every value from the schema's defaults, never their own.
        return from_document(fill_defaults(self.data))

    @property
    def gateway_id(self) -> str:
        return self.settings.gateway.id

    @property
    def state_dir(self) -> Path:
        return self.settings.gateway.state_dir


@cache
def schema() -> dict[str, Any]:
    text = resources.files("gateway").joinpath("resources/schema.json").read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


def load(path: str | Path | None = None) -> Config:
    """Read ``path`` (or the embedded demo defaults when None) and return a complete Config.

    Raises ConfigError listing every problem found.
    """
    if path is None:
        text = resources.files("gateway").joinpath("resources/defaults.yaml").read_text(encoding="utf-8")
        source = EMBEDDED
    else:
        source = str(path)
        text = _read(Path(path), source)
    return parse(text, source)


MAX_BYTES = 1024 * 1024  # a config of a hundred riders is 20 KB


def _read(path: Path, source: str) -> str:
    """The file's text: a regular file of at most MAX_BYTES (/dev/zero grew `check-config` to 3.7 GB and
    a FIFO hung it)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(source, [ConfigProblem("", "the file does not exist")]) from None
    except OSError as exc:
        raise ConfigError(source, [ConfigProblem("", f"cannot read the file: {exc.strerror or exc}")]) from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(source, [ConfigProblem("", "not a regular file (a device, a pipe or a directory)")])
    if info.st_size > MAX_BYTES:
        raise ConfigError(source, [ConfigProblem("", f"{info.st_size} bytes: larger than any config "
                                                     f"({MAX_BYTES // 1024} KB at most)")])
    try:
        with path.open("rb") as f:
            return f.read(MAX_BYTES + 1).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [ConfigProblem("", f"cannot read the file: {exc}")]) from None


def parse(text: str, source: str = "<text>") -> Config:
    """Validate YAML text; see ``load``."""
    data = parse_yaml(text, source)
    problems = validate(data)
    if problems:
        lines = _LineFinder(text)
        raise ConfigError(source, [ConfigProblem(p.path, p.message, lines.line_of(p.path)) for p in problems])
    return Config(fill_defaults(data), source)


def validate(data: Any) -> list[ConfigProblem]:
    """Every schema and cross-reference problem of a parsed document, in file order of paths."""
    # JSON Schema compares NaN as neither too small nor too large: a .nan would pass every bound.
    problems: list[ConfigProblem] = [ConfigProblem(path, f"expected a finite number, got {value!r}")
                                     for path, value in _non_finite(data)]
    bad_numbers = {p.path for p in problems}
    for violation in _config_checker().violations(data):
        problems.extend(p for p in _describe(violation) if p.path not in bad_numbers)
    if not problems:
        problems.extend(_cross_checks(fill_defaults(data)))
    return sorted(set(problems), key=lambda p: p.path)


def check_against(data: Any, document_schema: dict[str, Any], text: str) -> list[ConfigProblem]:
    """Every problem of ``data`` against ``document_schema`` (a JSON Schema), with its line in ``text``
    (YAML or JSON: YAML reads both) where known; the coach's rider book is checked as the config is."""
    problems = [ConfigProblem(path, f"expected a finite number, got {value!r}") for path, value in _non_finite(data)]
    for violation in SchemaChecker(document_schema).violations(data):
        problems.extend(_describe(violation))
    lines = _LineFinder(text)
    ordered = sorted(set(problems), key=lambda p: p.path)
    return [ConfigProblem(p.path, p.message, lines.line_of(p.path)) for p in ordered]


def _non_finite(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[str, float]]:
    if isinstance(data, float) and not math.isfinite(data):
        return [(format_path(path), data)]
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in _non_finite(v, (*path, k))]
    if isinstance(data, list):
        return [p for i, v in enumerate(data) for p in _non_finite(v, (*path, i))]
    return []


def format_path(parts: list[Any] | tuple[Any, ...]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _found(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return repr(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _expected_types(types: str | list[str]) -> str:
    names = [types] if isinstance(types, str) else list(types)
    words = [_TYPE_WORDS.get(t, t) for t in names]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


@cache
def _config_checker() -> SchemaChecker:
    return SchemaChecker(schema())


def _describe(violation: Violation) -> list[ConfigProblem]:
    path = list(violation.path)
    kind, value, rule = violation.kind, violation.instance, violation.rule
    if kind == "type":
        return [ConfigProblem(format_path(path), f"expected {_expected_types(rule)}, got {_found(value)}")]
    if kind == "required":
        missing = [k for k in rule if isinstance(value, dict) and k not in value]
        return [ConfigProblem(format_path([*path, k]), "required key is missing") for k in missing]
    if kind == "additionalProperties" and isinstance(value, dict):
        allowed = sorted(violation.schema.get("properties", {}))
        out = []
        for key in value:
            if key in allowed:
                continue
            near = difflib.get_close_matches(str(key), allowed, n=1)
            tip = f"did you mean '{near[0]}'? " if near else ""
            out.append(ConfigProblem(format_path([*path, key]),
                                     f"unknown key ({tip}allowed here: {', '.join(allowed)})"))
        return out
    if kind == "enum":
        choices = ", ".join(repr(c) for c in rule)
        return [ConfigProblem(format_path(path), f"expected one of {choices}, got {_found(value)}")]
    if kind in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        sign = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[kind]
        return [ConfigProblem(format_path(path), f"expected a number {sign} {rule}, got {_found(value)}")]
    if kind == "pattern":
        return [ConfigProblem(format_path(path), f"expected text matching {rule}, got {_found(value)}")]
    if kind == "minLength":
        return [ConfigProblem(format_path(path), f"expected at least {rule} character(s), got {_found(value)}")]
    if kind == "maxLength":
        return [ConfigProblem(format_path(path), f"expected at most {rule} character(s), got {len(value)}")]
    if kind == "minItems":
        return [ConfigProblem(format_path(path), f"expected at least {rule} item(s), got {len(value)}")]
    if kind == "maxItems":
        return [ConfigProblem(format_path(path), f"expected at most {rule} item(s), got {len(value)}")]
    if kind in ("minProperties", "maxProperties"):
        keys = ", ".join(repr(k) for k in violation.schema.get("properties", {}))
        return [ConfigProblem(format_path(path), f"expected exactly one of {keys}")]
    return [ConfigProblem(format_path(path), f"breaks the schema's rule {kind}: {rule!r}, got {_found(value)}")]


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if not ref:
        return node
    target: Any = schema()
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return _resolve(merged) if "$ref" in target else merged


def fill_defaults(data: Any, node: dict[str, Any] | None = None) -> Any:
    """A copy of ``data`` with every missing key that has a schema default filled in, recursively."""
    node = _resolve(schema() if node is None else node)
    if isinstance(data, dict) and "properties" in node:
        properties = node["properties"]
        # Each value copied once, where it is reached (a copy of the whole at every level was 30 ms
        # of the box's start-up with a hundred riders).
        out = {key: fill_defaults(value, properties[key]) if key in properties else copy.deepcopy(value)
               for key, value in data.items()}
        for key, sub in properties.items():
            sub = _resolve(sub)
            if key not in out and "default" in sub:
                out[key] = fill_defaults(sub["default"], sub)
        return out
    if isinstance(data, list) and isinstance(node.get("items"), dict):
        return [fill_defaults(item, node["items"]) for item in data]
    return copy.deepcopy(data)


def _duplicates(items: list[tuple[str, Any]], what: str) -> list[ConfigProblem]:
    seen: dict[Any, str] = {}
    out = []
    for path, value in items:
        if value is None:
            continue
        if value in seen:
            out.append(ConfigProblem(path, f"duplicate {what} {value!r} (already used at {seen[value]})"))
        else:
            seen[value] = path
    return out


def _cross_checks(cfg: dict[str, Any]) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    gates = cfg["course"]["gates"]
    problems += _duplicates([(f"course.gates[{i}].id", g["id"]) for i, g in enumerate(gates)], "gate id")
    segments = cfg["course"].get("segments")
    if segments is not None and len(segments) != len(gates):
        problems.append(ConfigProblem(
            "course.segments",
            f"expected {len(gates)} segments for {len(gates)} gates (segment k runs from gate k-1 to gate k, "
            f"the last back to the start), got {len(segments)}"))
    riders = cfg["riders"]
    problems += _duplicates([(f"riders[{i}].id", r["id"]) for i, r in enumerate(riders)], "rider id")
    problems += _duplicates([(f"riders[{i}].transponder", r["transponder"]) for i, r in enumerate(riders)],
                            "transponder")
    meters = [(f"riders[{i}].power_meters[{j}]", next(iter(m.items())))
              for i, r in enumerate(riders) for j, m in enumerate(r["power_meters"])]
    problems += _duplicates(meters, "power meter")
    for name, (lo, hi) in cfg["sources"]["plausible"].items():
        if lo > hi:
            problems.append(ConfigProblem(f"sources.plausible.{name}", f"expected [lowest, highest], got [{lo}, {hi}]"))
    views = cfg["web"]["chart"]["views"]
    problems += _duplicates([(f"web.chart.views[{i}].id", v["id"]) for i, v in enumerate(views)], "view id")
    known = {v["id"] for v in views}
    for name, ids in cfg["web"]["view_sets"].items():
        for j, vid in enumerate(ids):
            if vid not in known:
                near = difflib.get_close_matches(vid, sorted(known), n=1)
                tip = f" (did you mean '{near[0]}'?)" if near else ""
                problems.append(ConfigProblem(f"web.view_sets.{name}[{j}]",
                                              f"no view with id {vid!r} in web.chart.views{tip}"))
    return problems


class _LineFinder:
    """Maps a config path back to its line in the YAML text, for messages a person can act on."""

    def __init__(self, text: str) -> None:
        try:
            self.root: yaml.Node | None = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            self.root = None

    def line_of(self, path: str) -> int | None:
        node = self.root
        line = None
        for part in _split_path(path):
            if isinstance(node, yaml.MappingNode):
                match = [(k, v) for k, v in node.value if k.value == part]
                if not match:
                    break
                line = match[0][0].start_mark.line + 1
                node = match[0][1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                break
        return line


def _split_path(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for chunk in path.replace("]", "").split("."):
        if not chunk:
            continue
        name, *indexes = chunk.split("[")
        if name:
            parts.append(name)
        parts.extend(int(i) for i in indexes)
    return parts
