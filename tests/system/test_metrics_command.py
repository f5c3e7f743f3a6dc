"""`trackside-gateway metrics` as a process: a file that is not FIT is one clear line, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness import DATA

FIT = DATA / "fit"


def test_not_a_fit_file_and_no_traceback_from_the_real_command(tmp_path: Path, gateway_env: dict[str, str]) -> None:
    bogus = tmp_path / "ride.fit"
    bogus.write_text("Tour;Rundenzeit\n1;44.76\n")
    out = subprocess.run([sys.executable, "-m", "gateway", "metrics", str(bogus)], capture_output=True,
                         text=True, env=gateway_env, timeout=60)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith(f"trackside-gateway: {bogus}: ")
    assert "not a FIT file" in out.stderr or "truncated" in out.stderr
