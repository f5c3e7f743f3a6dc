"""Runs the benchmark modules of tools/benchmarks and reports a table and JSON.

Each module exposes ``BENCHMARKS``: a list of (name, function) where the function returns a dict
of figures, including ``target`` (text) and ``ok`` (bool) where the project has a target.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

MODULES = ["benchmarks.engine", "benchmarks.spool", "benchmarks.replay", "benchmarks.page", "benchmarks.daemon",
           "benchmarks.hub", "benchmarks.debrief", "benchmarks.course", "benchmarks.complete", "benchmarks.schema",
           "benchmarks.hubscale"]


def main() -> int:
    parser = argparse.ArgumentParser(description="Trackside Gateway benchmarks")
    parser.add_argument("names", nargs="*", help="run only benchmarks whose name starts with one of these")
    parser.add_argument("--json", type=Path, default=ROOT / "var" / "bench.json")
    args = parser.parse_args()
    results = []
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name, func in module.BENCHMARKS:
            if args.names and not any(name.startswith(n) for n in args.names):
                continue
            t0 = time.perf_counter()
            figures = func()
            wall = round(time.perf_counter() - t0, 2)
            # A benchmark returns its figures, or several named rows of figures.
            for row_name, row in figures if isinstance(figures, list) else [(name, figures)]:
                results.append({"name": row_name, "wall_s": wall, **row})
                print_row(results[-1])
    doc = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "results": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nJSON: {args.json}")
    return 0 if all(r.get("ok", True) for r in results) else 1


def print_row(result: dict[str, object]) -> None:
    if not getattr(print_row, "header", False):
        print(f"{'benchmark':44} {'figure':>14} {'unit':8} {'target':18} ok")
        print_row.header = True  # type: ignore[attr-defined]
    print(f"{result['name']:44} {result['value']:>14} {result['unit']:8} {result.get('target', ''):18} "
          f"{'yes' if result.get('ok', True) else 'NO'}")


if __name__ == "__main__":
    sys.exit(main())
