"""ruff and mypy, run as processes over the tree: both must say nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness import ROOT


def test_ruff_is_clean() -> None:
    ruff = Path(sys.executable).parent / "ruff"
    out = subprocess.run([str(ruff), "check", "--output-format", "concise", "gateway", "tests", "tools"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_type_checker_is_clean() -> None:
    """mypy over the package (strict on the pure layers: engine, decode, readers, wire, config, results)."""
    mypy = Path(sys.executable).parent / "mypy"
    out = subprocess.run([str(mypy)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr


