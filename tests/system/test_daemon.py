"""`trackside-gateway run` as a real process: it serves the page, stops on SIGTERM, explains failures."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from harness import ROOT, free_port


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return reply.status, reply.read()


def wait_for_page(url: str, proc: subprocess.Popen[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            get(url)
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "gateway", *args], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_serves_page_and_health_then_stops_on_sigterm(tmp_path: Path, gateway_env: dict[str, str]) -> None:
    port = free_port()
    proc = start(["run", "--state-dir", str(tmp_path / "state"), "--port", str(port)], gateway_env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_page(base + "/healthz", proc)
        status, body = get(base + "/healthz")
        assert status == 200 and json.loads(body)["ok"] is True
        status, page = get(base + "/")
        assert b"Trackside Gateway" in page
        # The page loads nothing from outside the box.
        assert b"http://" not in page and b"https://" not in page
        cfg = json.loads(get(base + "/api/config")[1])
        assert [r["name"] for r in cfg["riders"]][:2] == ["Anna", "Lea"]
        status, svg = get(base + "/qr.svg")
        assert status == 200 and svg.startswith(b"<?xml") and b"<svg" in svg
        state = json.loads(get(base + "/api/status")[1])
        assert state["components"]["daemon"]["state"] == "running"
        # OpenSSL (4.2 MB) stays out of the box until a scrape's library asks for it.
        assert "libcrypto" not in Path(f"/proc/{proc.pid}/maps").read_text()
        status, metrics = get(base + "/metrics")
        assert status == 200 and b"process_resident_memory_bytes" in metrics
        assert "/_ssl." in Path(f"/proc/{proc.pid}/maps").read_text()
        assert (tmp_path / "state").is_dir()
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert time.monotonic() - t0 < 5
        assert "stopping" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_unwritable_state_dir_is_one_clear_line(tmp_path: Path, gateway_env: dict[str, str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = start(["run", "--state-dir", str(blocker / "state"), "--port", "0"], gateway_env)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert "Traceback" not in err
    assert f"trackside-gateway: {blocker / 'state'}: cannot use the state directory" in err
    assert "--state-dir" in err


def test_port_in_use_is_one_clear_line(tmp_path: Path, gateway_env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = start(["run", "--state-dir", str(tmp_path), "--port", str(port)], gateway_env)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert "Traceback" not in err
    assert f"web: cannot listen on 0.0.0.0:{port}" in err
