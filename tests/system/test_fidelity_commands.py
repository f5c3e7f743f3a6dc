"""Files keep their own meaning through the command line: a configured course that disagrees with
a file is one line naming the file, the lap and the counts; exports and the page say which NP window."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from harness import DATA, ROOT
from replay_files import axiamo_export

from gateway.errors import InputFileError
from gateway.replay.files import FileSpec, load_session

FIT = DATA / "fit"
DEFAULT_GATES = ["SF", "G1", "G2", "G3"]  # the embedded defaults' four-gate course
T0 = 1_781_427_600.0


# -- 1. Axiamo numbers are the truth ------------------------------------------------------------------


def test_a_configured_course_that_disagrees_is_one_line_naming_file_lap_and_counts(
        tmp_path: Path, gateway_env: dict[str, str]) -> None:
    f = axiamo_export(tmp_path / "r01_two.xlsx", ["1.1", "1.2", "2.1", "2.2"])
    with pytest.raises(InputFileError, match="lap 1 has 2 segments, but the configured course has 4"):
        load_session([FileSpec(str(f))], DEFAULT_GATES, [], from_file=False)
    cfg = tmp_path / "box.yaml"
    cfg.write_text(json.dumps({"gateway": {"id": "b", "state_dir": str(tmp_path / "state")},
                               "course": {"gates": [{"id": g} for g in DEFAULT_GATES]}, "riders": []}))
    out = subprocess.run([sys.executable, "-m", "gateway", "replay", str(f), "--config", str(cfg), "--no-web",
                          "--speed", "0"], env=gateway_env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        f"trackside-gateway: {f}: lap 1 has 2 segments, but the configured course has 4 (one per gate) "
        "(configure a course of 2 gates, or replay with --course-from-file)")
    assert not (tmp_path / "state" / "spool.sqlite").exists() or _rows(tmp_path / "state") == 0
    # The flag takes the course from the file instead.
    out = subprocess.run([sys.executable, "-m", "gateway", "replay", str(f), "--config", str(cfg), "--no-web",
                          "--speed", "0", "--course-from-file"], env=gateway_env, cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def _rows(state: Path) -> int:
    import sqlite3

    return sqlite3.connect(state / "spool.sqlite").execute("SELECT COUNT(*) FROM events").fetchone()[0]


# -- 2. TSS duration -----------------------------------------------------------------------------------


# -- 3. lap NP: segment window (the seed's) and ride window (the head units') ---------------------------


def test_exports_and_the_page_say_which_window(tmp_path: Path, gateway_env: dict[str, str]) -> None:
    cfg = tmp_path / "box.yaml"
    cfg.write_text(json.dumps({"gateway": {"id": "b", "state_dir": str(tmp_path / "state")},
                               "course": {"gates": [{"id": g} for g in DEFAULT_GATES]}, "riders": [],
                               "metrics": {"np_window": "ride"}}))
    out = subprocess.run([sys.executable, "-m", "gateway", "replay", "@sample", "--config", str(cfg), "--no-web",
                          "--speed", "0"], env=gateway_env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    out = subprocess.run([sys.executable, "-m", "gateway", "export", "--state-dir", str(tmp_path / "state"),
                          "--format", "json"], env=gateway_env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    rows = json.loads(out.stdout)["results"]
    assert rows and {r["np_window"] for r in rows} == {"ride"}
    assert all(isinstance(r["flags"], list) for r in rows)  # a list in JSON, not a comma-joined text
    assert "np_window" in (ROOT / "gateway" / "web" / "static" / "index.html").read_text()


# -- 4. FIT files from other head units ----------------------------------------------------------------


