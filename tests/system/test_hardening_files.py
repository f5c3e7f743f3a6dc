"""Hardening around files: the spool at start-up, the state directory's lock, a full disk, exports,
bad recordings, and the install on a machine that cannot run the gateway."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest
from harness import DATA, ROOT, fill, free_port, tmpfs
from harness import power_event as power
from test_daemon import get, start, wait_for_page

from gateway.errors import SpoolError
from gateway.spool.store import Spool


def cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def one_line_exit_2(out: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("trackside-gateway:")]
    assert len(lines) == 1, out.stderr
    for text in expected:
        assert text in lines[0], lines[0]


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 3 MB filesystem (tmpfs)."""
    yield from tmpfs(tmp_path / "disk", "3m")


# -- the spool at start-up -----------------------------------------------------------------------------


def test_a_locked_spool_is_not_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    sp = Spool(path, "box1").open()
    sp.appender.append([power(i) for i in range(10)])
    sp.close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(SpoolError, match="database is locked"):
            Spool(path, "box1").open()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not list(tmp_path.glob("*.corrupt-*"))
    assert Spool(path, "box1").open().ledger.backlog()[0] == 10


def test_a_spool_this_user_cannot_open_is_left_alone(gateway_env: dict[str, str]) -> None:
    """The probe: spool owned by another user with mode 600. The daemon runs as root without the
    capabilities that let root read anyone's file, so it meets the file as another user would, and
    still reads the checkout wherever it is (run as another user, it could not import the package
    from a home directory of mode 700, or from a `mktemp -d`)."""
    base = Path(tempfile.mkdtemp(prefix="trackside-perm-"))
    try:
        base.chmod(0o755)
        state = base / "state"
        state.mkdir()
        sp = Spool(state / "spool.sqlite", "box1").open()
        sp.appender.append([power(i) for i in range(50)])
        sp.close()
        os.chown(state / "spool.sqlite", 65534, 65534)
        (state / "spool.sqlite").chmod(0o600)
        before = sorted(p.name for p in state.iterdir())
        out = subprocess.run(["setpriv", "--bounding-set", "-dac_override,-dac_read_search", sys.executable, "-m",
                              "gateway", "run", "--state-dir", str(state), "--port", "0"],
                             env=gateway_env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        one_line_exit_2(out, "cannot open the spool", "no permission", "mode 600", "left as it is")
        after = sorted(p.name for p in state.iterdir() if p.name not in ("gateway.lock",))
        assert after == before  # nothing moved aside
        sp = Spool(state / "spool.sqlite", "box1").open()
        assert sp.ledger.backlog()[0] == 50
        sp.close()
    finally:
        shutil.rmtree(base)


def test_export_never_writes_to_the_spool(tmp_path: Path, gateway_env: dict[str, str]) -> None:
    path = tmp_path / "spool.sqlite"
    sp = Spool(path, "box1").open()
    sp.appender.append([power(i) for i in range(10)])
    sp.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=1")  # an older schema: a writer would migrate it
    conn.close()
    path.chmod(0o444)
    stamp = path.stat().st_mtime_ns
    out = cli("export", "--state-dir", str(tmp_path), "--session", "list", env=gateway_env)
    assert out.returncode == 0, out.stderr
    assert path.stat().st_mtime_ns == stamp
    assert sqlite3.connect(f"file:{path}?mode=ro", uri=True).execute("PRAGMA user_version").fetchone()[0] == 1


def test_a_second_daemon_on_the_same_state_directory_is_refused(tmp_path: Path, gateway_env: dict[str, str]) -> None:
    port = free_port()
    first = start(["run", "--state-dir", str(tmp_path), "--port", str(port)], gateway_env)
    try:
        wait_for_page(f"http://127.0.0.1:{port}/healthz", first)
        out = cli("run", "--state-dir", str(tmp_path), "--port", "0", env=gateway_env)
        one_line_exit_2(out, f"another trackside-gateway (pid {first.pid})", str(tmp_path))
    finally:
        first.terminate()
        first.communicate(timeout=20)


# -- a full disk ---------------------------------------------------------------------------------------


def test_a_full_disk_at_start_up_is_a_degraded_start(tiny_disk: Path, gateway_env: dict[str, str]) -> None:
    """Before: "cannot use the state directory", and under Restart=always a loop that never drained."""
    state = tiny_disk / "state"
    port = free_port()
    cfg = tiny_disk.parent / "box.yaml"
    cfg.write_text(json.dumps({
        "gateway": {"id": "box1", "state_dir": str(state)}, "course": {"gates": [{"id": "SF"}]},
        "riders": [{"id": "r01", "name": "A"}], "web": {"host": "127.0.0.1", "port": port},
        "spool": {"reserve_mb": 0.25}, "sources": {"load": {"enabled": True, "rate_hz": 4}}}))
    proc = start(["run", "--config", str(cfg)], gateway_env)  # a first run keeps its reserve
    wait_for_page(f"http://127.0.0.1:{port}/healthz", proc)
    proc.terminate()
    proc.communicate(timeout=30)
    assert (state / "reserve.bin").stat().st_size == 2**18
    fill(tiny_disk / "filler")  # something else filled the disk meanwhile
    proc = start(["run", "--config", str(cfg)], gateway_env)
    try:
        wait_for_page(f"http://127.0.0.1:{port}/healthz", proc)
        deadline = time.monotonic() + 10
        status = json.loads(get(f"http://127.0.0.1:{port}/api/status")[1])
        while "health" not in status["components"] and time.monotonic() < deadline:  # posted at the first tick
            time.sleep(0.2)
            status = json.loads(get(f"http://127.0.0.1:{port}/api/status")[1])
        warnings = status["components"]["health"]["warnings"]
        assert any(w.startswith("degraded: disk full at start-up") for w in warnings), warnings
        deadline = time.monotonic() + 10
        while status["components"]["spool"]["rejected"] == 0 and time.monotonic() < deadline:
            time.sleep(0.3)
            status = json.loads(get(f"http://127.0.0.1:{port}/api/status")[1])
        assert status["components"]["spool"]["rejected"] > 0  # the load source's events: refused, counted
        (tiny_disk / "filler").unlink()  # space again: intake resumes by itself
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            parts = json.loads(get(f"http://127.0.0.1:{port}/api/status")[1])["components"]
            if parts["spool"]["appended"] > 0 and not parts.get("degraded", {}).get("reason"):
                break
            time.sleep(0.3)
        assert parts["spool"]["appended"] > 0 and not parts["degraded"]["reason"]
        assert (state / "reserve.bin").exists()  # kept again
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "starting degraded" in err


def test_disk_full_during_a_replay_says_what_was_refused(tiny_disk: Path, gateway_env: dict[str, str]) -> None:
    # The sample's events take about 650 kB once stored (a replay's large commits keep its WAL about
    # that size too): leave half a megabyte.
    (tiny_disk / "other-files").write_bytes(b"\0" * (2560 * 1024))
    out = cli("replay", "@sample", "--speed", "0", "--no-web", "--state-dir", str(tiny_disk / "state"),
              env=gateway_env, timeout=300)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    line = next(x for x in out.stderr.splitlines() if x.startswith("trackside-gateway: replay"))
    assert "events were refused by the spool" in line and "disk full" in line
    assert "REFUSED" in out.stdout


# -- exports -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    state = tmp_path_factory.mktemp("replayed")
    out = cli("replay", "@sample", "--speed", "0", "--no-web", "--state-dir", str(state), env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return state


@pytest.mark.parametrize("target, expected", [
    ("{dir}", "is a directory"), ("{dir}/missing/out.csv", "no such directory"), ("/dev/full", "No space left")])
def test_an_export_that_cannot_be_written_is_one_line(replayed: Path, tmp_path: Path, gateway_env: dict[str, str],
                                                      target: str, expected: str) -> None:
    out = cli("export", "--state-dir", str(replayed), "--output", target.format(dir=tmp_path), env=gateway_env)
    one_line_exit_2(out, expected)
    assert list(tmp_path.iterdir()) == []


def test_an_export_to_a_nearly_full_disk_leaves_no_half_file(replayed: Path, tiny_disk: Path,
                                                             gateway_env: dict[str, str]) -> None:
    filler = tiny_disk / "filler"
    fill(filler)
    with filler.open("r+b") as f:
        f.truncate(filler.stat().st_size - 8192)  # a few KB left: less than the export needs
    for fmt in ("json", "xlsx", "csv"):
        out = cli("export", "--state-dir", str(replayed), "--format", fmt, "--output", str(tiny_disk / f"out.{fmt}"),
                  env=gateway_env)
        one_line_exit_2(out, "cannot write the export", "nothing was written")
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler"]


# -- bad recordings: one line, exit 2, nothing stored --------------------------------------------------


def freelap_csv(path: Path, date: str, lap: str) -> Path:
    rows = [f"Entraînement - {date} n3", f"Date;{date}", "N;ID;TEMPS;;L1;L2"]
    rows += [f"{i};BD-2525;50.{i:02d};;20.00;30.{i:02d}" for i in range(1, 10)] + [f"10;BD-2525;{lap};;20.00;30.00"]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def axiamo(path: Path, watts: object) -> Path:
    wb = openpyxl.Workbook()
    seg = wb.active
    seg.title = "Segments"
    seg.append(["Number", "StartTime", "Duration"])
    seg.append([1.1, 1_772_445_600.0, 60.0])
    data = wb.create_sheet("PowerData")
    data.append(["Frame", "WallTime", "InstantPower"])
    for i in range(60):
        data.append([i, 1_772_445_600.0 + i, watts if i == 30 else 200.0])
    wb.save(path)
    return path


def bad_recordings(tmp_path: Path) -> list[tuple[Path, str]]:
    fit = (DATA / "fit" / "Edge810-Vector-2013-08-16-15-35-10.fit").read_bytes()
    bad_crc = tmp_path / "r01_bad_crc.fit"
    bad_crc.write_bytes(fit[:-2] + bytes([fit[-2] ^ 0xFF, fit[-1]]))
    fifo = tmp_path / "r01_fifo.xlsx"
    os.mkfifo(fifo)
    return [
        (freelap_csv(tmp_path / "feb31.csv", "31.02.2026", "50.10"), "is not a date"),
        (freelap_csv(tmp_path / "huge.csv", "02.03.2026", "99999999:00.00"), "under 24 h"),
        (axiamo(tmp_path / "r01_nan.xlsx", float("nan")), "row 32"),
        (axiamo(tmp_path / "r01_neg.xlsx", -50.0), "row 32"),
        (axiamo(tmp_path / "r01_huge.xlsx", 1e300), "row 32"),
        (bad_crc, "checksum"),
        (fifo, "is not a regular file"),
    ]


def test_bad_recordings_are_one_line_and_nothing_is_stored(tmp_path: Path, gateway_env: dict[str, str]) -> None:
    for path, expected in bad_recordings(tmp_path):
        state = tmp_path / f"state-{path.stem}"
        out = cli("replay", str(path), "--speed", "0", "--no-web", "--state-dir", str(state), env=gateway_env,
                  timeout=60)
        one_line_exit_2(out, path.name, expected)
        spool = state / "spool.sqlite"
        if spool.exists():
            assert sqlite3.connect(spool).execute("SELECT COUNT(*) FROM events").fetchone()[0] == 0


# -- the install on a machine that cannot run it -------------------------------------------------------


@pytest.mark.parametrize("machine, python, expected", [
    ("armv7l", "3.11", "32-bit"), ("armv6l", "3.11", "32-bit"), ("aarch64", "3.9", "Python 3.11 or newer")])
def test_install_says_what_the_machine_lacks_first(tmp_path: Path, machine: str, python: str, expected: str) -> None:
    env = dict(os.environ, TRACKSIDE_MACHINE=machine, TRACKSIDE_PYTHON_VERSION=python)
    out = subprocess.run([str(ROOT / "tools" / "install"), "--root", str(tmp_path / "root"), "--no-venv"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and expected in out.stderr
    assert "64-bit Raspberry Pi OS" in out.stderr
    assert not (tmp_path / "root").exists()  # checked before anything is written


def test_the_permission_probe_passes_from_a_checkout_others_cannot_read(tmp_path: Path) -> None:
    """`make test` from a home directory of mode 700 or a `mktemp -d`: the probe above ran the daemon
    as another user, who could not import the package from there ("No module named gateway")."""
    private = Path(tempfile.mkdtemp(prefix="trackside-private-"))
    try:
        assert private.stat().st_mode & 0o777 == 0o700
        for name in ("gateway", "tests", "tools"):
            shutil.copytree(ROOT / name, private / name, ignore=shutil.ignore_patterns("__pycache__", "artifacts"))
        shutil.copy(ROOT / "pyproject.toml", private)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              "tests/system/test_hardening_files.py", "-k", "cannot_open"],
                             cwd=private, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and "1 passed" in out.stdout, out.stdout[-3000:] + out.stderr[-2000:]
    finally:
        shutil.rmtree(private)
