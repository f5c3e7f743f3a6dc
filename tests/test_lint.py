"""The code stays ruff-clean and modules stay small enough to read (DESIGN: ~500 lines at most)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_is_clean() -> None:
    ruff = Path(sys.executable).parent / "ruff"
    out = subprocess.run([str(ruff), "check", "--output-format", "concise", "gateway", "tests", "tools"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_no_module_is_a_god_module() -> None:
    too_long = {str(p.relative_to(ROOT)): n for p in (ROOT / "gateway").rglob("*.py")
                if (n := len(p.read_text().splitlines())) > 500}
    assert too_long == {}
