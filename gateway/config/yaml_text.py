"""YAML text into Python values for the config (and the files shaped like it): libyaml's parser where
it is installed, PyYAML's own for the words of an error; a key twice, or a key that is not text, is
an error, never a silent choice."""

from __future__ import annotations

from typing import Any

import yaml

from gateway.errors import ConfigError, ConfigProblem


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, which PyYAML would otherwise let the last one win."""


def _construct_mapping(loader: _StrictLoader | _FastStrictLoader, node: yaml.MappingNode,
                       deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, str):
            # `yes:` is the boolean true in YAML 1.1, `? [a]` a list: neither names a setting.
            what = (f"the key {key_node.value!r} is not text (put it in quotes if it is meant as a name)"
                    if isinstance(key_node, yaml.ScalarNode) else f"a {key_node.id} cannot be a key")
            raise yaml.constructor.ConstructorError("while reading a mapping", node.start_mark, what,
                                                    key_node.start_mark)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping", node.start_mark,
                f"found the key {key!r} twice (first on line {seen[key].start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _FastStrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The same rules on libyaml's parser: a 100-rider file in 7 ms instead of 44 (a third of the box's
    start-up went to reading its config). Its messages are libyaml's; a file it refuses is read again
    by ``_StrictLoader`` for the words the coach sees."""


_FastStrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text: str, source: str) -> Any:
    try:
        data = yaml.load(text, Loader=_FastStrictLoader)
    except yaml.YAMLError:
        return _parse_yaml_slowly(text, source)
    if data is None:
        raise ConfigError(source, [ConfigProblem("", "the file is empty")])
    return data


def _parse_yaml_slowly(text: str, source: str) -> Any:
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "unreadable YAML"
        if "'\\t'" in problem:  # an editor's tab, where YAML's indentation takes spaces only
            problem += " (indent with spaces: YAML takes no tabs there)"
        if mark is None:
            raise ConfigError(source, [ConfigProblem("", f"invalid YAML: {problem}")]) from None
        raise ConfigError(source, [ConfigProblem(
            "", f"invalid YAML: {problem}",
            mark.line + 1, mark.column + 1)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, [ConfigProblem("", f"invalid YAML: {exc}")]) from None
    if data is None:
        raise ConfigError(source, [ConfigProblem("", "the file is empty")])
    return data
