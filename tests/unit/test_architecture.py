"""The architecture the suite keeps (the seams issue, #29): layers import downward only and keep
their seams; files, functions and parameter lists stay small enough to read; mypy is strict on
every package."""

from __future__ import annotations

import ast
import sys
import tomllib

from harness import ROOT

MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60
MAX_PARAMETERS = 7  # ``self`` and ``cls`` not counted


def _sources() -> list[tuple[str, ast.Module, int]]:
    return [(str(p.relative_to(ROOT)), ast.parse(text), len(text.splitlines()))
            for p in sorted((ROOT / "gateway").rglob("*.py")) if (text := p.read_text())]


def test_files_functions_and_parameter_lists_stay_small() -> None:
    files, functions, parameters = {}, {}, {}
    for path, tree, lines in _sources():
        if lines > MAX_FILE_LINES:
            files[path] = lines
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            where = f"{path}:{node.lineno} {node.name}"
            assert node.end_lineno is not None
            if (length := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES:
                functions[where] = length
            a = node.args
            names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs, *(v for v in (a.vararg, a.kwarg) if v))]
            if len([n for n in names if n not in ("self", "cls")]) > MAX_PARAMETERS:
                parameters[where] = len(names)
    assert files == {} and functions == {} and parameters == {}


def test_mypy_is_strict_on_every_package() -> None:
    mypy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert mypy["strict"] is True and mypy["packages"] == ["gateway"]
    relaxed = [o for o in mypy.get("overrides", []) if set(o) - {"module", "ignore_missing_imports"}
               or any(not m.endswith(".*") or m.startswith("gateway") for m in o["module"])]
    assert relaxed == []  # only third-party modules without type information are let off


def test_layers_import_downward_only_and_without_cycles() -> None:
    """The data flow is the import graph: no module imports a layer above its own, and no cycle."""
    order = ["errors", "model", "counts", "status", "wire", "config", "decode", "readers", "simulate", "engine",
             "complete", "spool", "sources", "pipeline", "uplink", "results", "debrief", "replay", "watch", "web",
             "service", "hub", "cli"]
    rank = {name: i for i, name in enumerate(order)}

    def layer(module: str) -> str:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 else "__init__"

    upward, edges = [], {}
    for path in (ROOT / "gateway").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gateway."):
                targets.add(node.module)
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("gateway.")}
        edges[module] = targets
        mine = layer(module)
        for target in targets:
            theirs = layer(target)
            if mine in rank and theirs in rank and rank[theirs] > rank[mine]:
                upward.append(f"{module} -> {target}")
    assert upward == []
    # Seams the layers keep (the seams issue, #29): the engine takes typed inputs, never the config
    # nor the wire format; the wire format is read and written by its own package only.
    # The page and the results read the spool through its facade (``spool.store``) and see ingest
    # only through the records it hands over (``pipeline.accepted``).
    readers_may = {"gateway.spool.store", "gateway.pipeline.accepted", "gateway.pipeline.session"}
    crossing = sorted(f"{m} -> {t}" for m, targets in edges.items() for t in targets
                      if (layer(m) == "engine" and layer(t) in ("config", "wire"))
                      or (layer(m) == "hub" and layer(t) == "service")  # the hub is no box
                      or (layer(m) in ("results", "web", "debrief") and layer(t) in ("spool", "pipeline")
                          and t not in readers_may))
    assert crossing == []
    # A cycle between modules (a package's __init__ re-exporting its children is not one).
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in edges.get(m, ()):
            if n.startswith(m + ".") or m.startswith(n + "."):
                continue
            if state.get(n) == 1:
                return [*stack[stack.index(n):], n]
            if not state.get(n) and (found := visit(n, stack)):
                return found
        stack.pop()
        state[m] = 2
        return None

    cycles = [c for m in sorted(edges) if not state.get(m) and (c := visit(m, []))]
    assert cycles == []


def test_every_benchmark_module_imports() -> None:
    """tools/bench is not run by the suite (figures, not tests), but it must not rot unseen."""
    import importlib

    sys.path.insert(0, str(ROOT / "tools"))
    from benchmarks.run import MODULES

    for name in MODULES:
        assert importlib.import_module(name).BENCHMARKS


def test_test_modules_have_unique_names() -> None:
    """pytest imports test modules by basename (rootdir-relative imports are off): two files of one
    name in different folders stop the whole suite at collection."""
    seen: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}
