"""The daemon as systemd runs it: the real sd_notify protocol, watchdog, stop, kill -9, install."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from harness import ROOT, free_port, spawn


class NotifySocket:
    """A test-owned NOTIFY_SOCKET: collects what the daemon tells systemd, with arrival times."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []

    def poll(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((time.monotonic(), fields))

    def wait_for(self, key: str, value: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, fields in self.messages:
                if fields.get(key) == value:
                    return at
            self.poll(0.2)
        raise AssertionError(f"no {key}={value} within {timeout} s; got {self.messages[-5:]}")

    def count(self, key: str) -> int:
        return sum(1 for _, f in self.messages if key in f)

    def close(self) -> None:
        self.sock.close()


def config_file(tmp_path: Path, port: int, load: bool = False) -> Path:
    cfg = {
        "gateway": {"id": "svc", "state_dir": str(tmp_path / "state")},
        "course": {"gates": [{"id": "SF"}, {"id": "G1"}]},
        "riders": [{"id": f"r{i}", "name": f"R{i}", "transponder": f"T{i}", "power_meters": [{"ant": 20 + i}]}
                   for i in range(8)],
        "sources": {"load": {"enabled": load, "rate_hz": 25, "segment_s": 3}},
        "web": {"host": "127.0.0.1", "port": port},
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(json.dumps(cfg))
    return path


def start(config: Path, env: dict[str, str], notify: Path | None, log: Path) -> subprocess.Popen[bytes]:
    env = dict(env)
    if notify is not None:
        env.update(NOTIFY_SOCKET=str(notify), WATCHDOG_USEC="600000")
    return spawn(["run", "--config", str(config)], env, log)


def test_ready_watchdog_status_and_stopping(tmp_path: Path, gateway_env) -> None:
    notify = NotifySocket(tmp_path / "notify.sock")
    port = free_port()
    proc = start(config_file(tmp_path, port), gateway_env, notify.path, tmp_path / "log")
    try:
        notify.wait_for("READY", "1", 30)
        # READY only once the page answers: it must answer right now.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
            health = json.loads(reply.read())
        assert reply.status == 200 and health["ok"] and health["checks"]["spool"]
        notify.poll(2.0)
        assert notify.count("WATCHDOG") >= 4  # WATCHDOG_USEC=0.6 s: pinged every 0.3 s from the loop
        status = [f["STATUS"] for _, f in notify.messages if "STATUS" in f]
        assert status[-1].startswith("riders seen 0, backlog 0, uplink off")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING", "1", 10)
        assert proc.wait(15) == 0
        assert time.monotonic() - t0 < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()


def test_status_command_reads_the_running_daemon(tmp_path: Path, gateway_env) -> None:
    port = free_port()
    proc = start(config_file(tmp_path, port, load=True), gateway_env, None, tmp_path / "log")
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "state" / "status.json").exists():
            assert time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(1.5)
        out = subprocess.run([sys.executable, "-m", "gateway", "status", "--state-dir", str(tmp_path / "state")],
                             capture_output=True, text=True, env=gateway_env, timeout=30, cwd=ROOT)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0].startswith("trackside-gateway: running, pid ")
        assert "sources: load connected" in out.stdout
        assert "uplink: off" in out.stdout and "disk: " in out.stdout and "clock: " in out.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    # A clean stop is said at once (before: "running" for up to 10 s after it).
    out = subprocess.run([sys.executable, "-m", "gateway", "status", "--state-dir", str(tmp_path / "state")],
                         capture_output=True, text=True, env=gateway_env, timeout=30, cwd=ROOT)
    assert out.returncode == 3 and out.stdout.startswith("trackside-gateway: NOT RUNNING (last seen "), out.stdout
    out = subprocess.run([sys.executable, "-m", "gateway", "status", "--state-dir", str(tmp_path / "elsewhere")],
                         capture_output=True, text=True, env=gateway_env, timeout=30, cwd=ROOT)
    assert out.returncode == 3
    assert out.stdout.startswith("trackside-gateway is not running here: no status in ")


def test_invalid_config_exits_2_with_the_path_and_never_ready(tmp_path: Path, gateway_env) -> None:
    notify = NotifySocket(tmp_path / "notify.sock")
    bad = tmp_path / "bad.yaml"
    bad.write_text("gateway: {id: x}\ncourse: {gates: []}\nriders: []\n")
    proc = start(bad, gateway_env, notify.path, tmp_path / "log")
    try:
        assert proc.wait(30) == 2
        notify.poll(0.5)
        assert not any("READY" in f for _, f in notify.messages)
        assert f"{bad}:2: course.gates: expected at least 1 item(s), got 0" in (tmp_path / "log").read_text()
    finally:
        notify.close()


def spool_ids(path: Path) -> set[str]:
    from gateway.errors import SpoolError
    from gateway.spool.store import Spool

    try:
        spool = Spool(path, "reader", readonly=True).open()
    except SpoolError:  # the daemon is still creating its spool's tables
        return set()
    try:
        return {json.loads(r.payload)["event_id"] for r in spool.queries.since(0)}
    except sqlite3.OperationalError:
        return set()
    finally:
        spool.close()


def test_kill_9_then_restart_loses_no_accepted_event(tmp_path: Path, gateway_env) -> None:
    config = config_file(tmp_path, free_port(), load=True)
    spool = tmp_path / "state" / "spool.sqlite"
    proc = start(config, gateway_env, None, tmp_path / "log")
    deadline = time.monotonic() + 30
    while not spool.exists() or len(spool_ids(spool)) < 1000:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    before = spool_ids(spool)
    proc = start(config, gateway_env, None, tmp_path / "log")
    try:
        deadline = time.monotonic() + 30
        while len(spool_ids(spool)) < len(before) + 500:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    after = spool_ids(spool)
    assert before <= after
    seqs = sorted(int(e.rsplit(":", 1)[1]) for e in after)
    assert seqs == list(range(1, len(seqs) + 1))  # no gap, no reuse across the kill
    assert "Traceback" not in (tmp_path / "log").read_text()


def test_install_into_a_directory_tree(tmp_path: Path) -> None:
    root = tmp_path / "root"
    run = [str(ROOT / "tools" / "install"), "--root", str(root), "--no-venv"]
    subprocess.run(run, check=True, capture_output=True, timeout=60)
    modes = {str(p.relative_to(root)): oct(p.stat().st_mode & 0o777) for p in root.rglob("*") if p.is_file()}
    assert modes == {
        "etc/trackside-gateway/gateway.yaml": "0o640",
        "etc/trackside-gateway/gateway.yaml.example": "0o640",
        "etc/systemd/system/trackside-gateway.service": "0o644",
        "etc/udev/rules.d/60-trackside-ant.rules": "0o644",
        "usr/lib/sysusers.d/trackside-gateway.conf": "0o644",
        "opt/trackside-gateway/README.md": "0o644",
    }
    assert oct((root / "etc/trackside-gateway").stat().st_mode & 0o777) == "0o750"
    rules = (root / "etc/udev/rules.d/60-trackside-ant.rules").read_text()
    assert 'ATTRS{idVendor}=="0fcf", ATTRS{idProduct}=="1008"' in rules and "1009" in rules
    # An upgrade keeps the config the operator edited.
    (root / "etc/trackside-gateway/gateway.yaml").write_text("# edited on the box\n")
    out = subprocess.run(run, check=True, capture_output=True, text=True, timeout=60)
    assert "kept your" in out.stdout
    assert (root / "etc/trackside-gateway/gateway.yaml").read_text() == "# edited on the box\n"
    subprocess.run([*run, "--uninstall"], check=True, capture_output=True, timeout=60)
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert left == ["etc/trackside-gateway/gateway.yaml", "etc/trackside-gateway/gateway.yaml.example"]


def test_the_unit_verifies(tmp_path: Path) -> None:
    # verify checks that ExecStart exists; point it at a stand-in, everything else is the real unit.
    text = (ROOT / "systemd" / "trackside-gateway.service").read_text()
    unit = tmp_path / "trackside-gateway.service"
    unit.write_text(text.replace("ExecStart=/opt/trackside-gateway/venv/bin/trackside-gateway",
                                 "ExecStart=/usr/bin/true"))
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == ""
    env = dict(os.environ, SYSTEMD_COLORS="0")
    sec = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)], capture_output=True,
                         text=True, timeout=60, env=env)
    exposure = float(sec.stdout.split("Overall exposure level for trackside-gateway.service:")[1].split()[0])
    assert exposure < 3.0, sec.stdout[-500:]


