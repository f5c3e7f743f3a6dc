"""The serial source through a real pseudo-terminal (garbage, an unplug, a 100 KB line) and every
source starting on a machine without adapters."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from harness import Pty, spawn

from gateway.decode.lines import LineFormat, decode_line
from gateway.errors import DecodeError
from gateway.sources.serial import SerialSource


def waiter(source: SerialSource) -> Any:
    """``await until(predicate, what)``: polls for 10 s, then fails saying what and the link's state."""
    async def until(predicate: Any, what: str) -> None:
        for _ in range(1000):
            if predicate():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"timed out waiting for {what}; state {source.link.state}, {source.link.counters}")

    return until


def test_serial_through_a_real_pty_survives_garbage_and_an_unplug(tmp_path: Path) -> None:
    got = []
    link = tmp_path / "ttyGates"
    pty = Pty(link)
    source = SerialSource(got.append, str(link), 9600, LineFormat(), retry_max_s=0.05)
    until = waiter(source)
    t0 = int(time.time())  # a receiver whose clock agrees with the box's

    async def scenario() -> None:
        nonlocal pty
        task = asyncio.create_task(source.run())
        await until(lambda: source.link.state == "connected", "the port to open")
        pty.write(f"BD-1,SF,{t0}.5\r\nBD-2,SF,{t0}".encode())
        pty.write(f".25\n\xff\xfe\x00garbage\nnot,a\nBD-3,TOP,{t0 + 1}\n".encode("latin-1"))
        await until(lambda: len(got) == 3, "three crossings")
        pty.close()  # unplugged
        link.unlink()
        await until(lambda: source.link.state in ("lost", "no adapter"), "the loss to be seen")
        pty = Pty(link)  # plugged in again
        await until(lambda: source.link.state == "connected", "the port to reopen")
        pty.write(f"BD-4,SF,{t0 + 2}\n".encode())
        await until(lambda: len(got) == 4, "the fourth crossing")
        source.stop()
        await asyncio.wait_for(task, 5)

    try:
        asyncio.run(scenario())
    finally:
        pty.close()
    assert [(c.transponder, c.gate, c.wall_time) for c in got] == [
        ("BD-1", "SF", t0 + 0.5), ("BD-2", "SF", t0 + 0.25), ("BD-3", "TOP", t0 + 1.0), ("BD-4", "SF", t0 + 2.0)]
    assert source.link.counters["bad_lines"] == 2 and source.link.counters["unplugged"] == 1
    assert all(c.source == f"serial:{link}" for c in got)


def test_all_three_sources_start_and_say_no_adapter_here(tmp_path: Path, gateway_env) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = {
        "gateway": {"id": "radios", "state_dir": str(tmp_path / "state")},
        "course": {"gates": [{"id": "SF"}]},
        "riders": [{"id": "r1", "name": "A", "transponder": "T1", "power_meters": [{"ant": 1234}]},
                   {"id": "r2", "name": "B", "power_meters": [{"ble": "C4:7F:51:0A:12:9E"}]}],
        "sources": {"ant": {"enabled": True, "retry_max_s": 1}, "ble": {"enabled": True, "scan_timeout_s": 1},
                    "serial": {"enabled": True, "port": str(tmp_path / "no-such-tty")}},
        "web": {"host": "127.0.0.1", "port": port},
    }
    path = tmp_path / "radios.yaml"
    path.write_text(json.dumps(cfg))
    log = tmp_path / "log"
    proc = spawn(["run", "--config", str(path)], gateway_env, log)
    try:
        deadline = time.monotonic() + 40
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2) as reply:
                    parts = json.loads(reply.read())["components"]
                states = {k: v["state"] for k, v in parts.items() if k.startswith("source.")}
            except OSError:
                pass
            if all(states.get(f"source.{k}") == "no adapter" for k in ("ant", "ble", "serial")):
                break
            time.sleep(0.3)
        assert states == {"source.ant": "no adapter", "source.ble": "no adapter", "source.serial": "no adapter"}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    assert "Traceback" not in log.read_text()


def test_a_100_kb_serial_line_is_dropped_whole_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """#28, point 10: it was dropped in 512-byte pieces (a log line each) and its tail accepted as a
    crossing with a 305-character chip id."""
    got = []
    link = tmp_path / "ttyGates"
    pty = Pty(link)
    source = SerialSource(got.append, str(link), 9600, LineFormat(), retry_max_s=0.05)
    until = waiter(source)
    t0 = int(time.time())

    async def scenario() -> None:
        task = asyncio.create_task(source.run())
        await until(lambda: source.link.state == "connected", "the port to open")
        junk = b"X" * (100 * 1024 - 20) + f",SF,{t0}.5\n".encode()  # its tail alone would decode
        for i in range(0, len(junk), 4096):
            pty.write(junk[i:i + 4096])
            await asyncio.sleep(0.001)
        pty.write(f"BD-1,SF,{t0 + 1}\n".encode())
        await until(lambda: bool(got), "the crossing after it")
        source.stop()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    pty.close()
    assert [(c.transponder, c.wall_time) for c in got] == [("BD-1", t0 + 1.0)]
    assert source.link.counters["bad_lines"] == 1
    assert sum("longer than 512 bytes" in m for m in caplog.messages) == 1
    with pytest.raises(DecodeError, match="is 305 characters long"):
        decode_line("X" * 305 + f",SF,{t0}", LineFormat())
