"""The code stays ruff-clean and modules stay small enough to read (DESIGN: ~500 lines at most)."""

from __future__ import annotations

import sys

from harness import ROOT


def test_no_module_is_a_god_module() -> None:
    too_long = {str(p.relative_to(ROOT)): n for p in (ROOT / "gateway").rglob("*.py")
                if (n := len(p.read_text().splitlines())) > 500}
    assert too_long == {}


def test_layers_import_downward_only_and_without_cycles() -> None:
    """The data flow is the import graph: no module imports a layer above its own, and no cycle."""
    import ast

    order = ["errors", "model", "counts", "status", "wire", "config", "decode", "readers", "engine", "spool", "sources",
             "pipeline", "uplink", "results", "debrief", "replay", "watch", "web", "service", "hub", "cli"]
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
    crossing = sorted(f"{m} -> {t}" for m, targets in edges.items() for t in targets
                      if (layer(m) == "engine" and layer(t) in ("config", "wire"))
                      or (layer(m) == "hub" and layer(t) == "service"))  # the hub is no box
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
