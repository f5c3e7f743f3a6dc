"""Sources against small fakes at the library boundary (openant node, bleak client) and a real pty."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from harness import Pty, spawn

from gateway.decode.ble_power import MEASUREMENT, SERVICE
from gateway.decode.lines import LineFormat, decode_line
from gateway.errors import DecodeError
from gateway.sources.ant import AntSource
from gateway.sources.ble import BleSource
from gateway.sources.serial import SerialSource
from gateway.status import StatusBoard

ROOT = Path(__file__).resolve().parent.parent


def crank(ev: int, period: int, torque: int) -> list[int]:
    return [0x12, ev & 0xFF, ev & 0xFF, 90, period & 0xFF, period >> 8, torque & 0xFF, torque >> 8]


class FakeNode:
    """openant.easy.node.Node at its boundary: channels get real pages; start() blocks until stop()."""

    def __init__(self, pages: dict[int, list[list[int]]], then_unplug: bool = False) -> None:
        self.pages = pages
        self.then_unplug = then_unplug
        self.channels: list[SimpleNamespace] = []
        self.key = None
        self._stopped = threading.Event()

    def set_network_key(self, network: int, key: list[int]) -> None:
        self.key = key

    def new_channel(self, ctype: int, network: int = 0, ext: int = 0) -> SimpleNamespace:
        ch = SimpleNamespace(on_broadcast_data=None, on_burst_data=None, device=None, opened=False)
        ch.set_id = lambda dev, dtype, tt: setattr(ch, "device", (dev, dtype, tt))
        ch.set_period = ch.set_search_timeout = ch.set_rf_freq = lambda *_: None
        ch.open = lambda: setattr(ch, "opened", True)
        self.channels.append(ch)
        return ch

    def start(self) -> None:
        for ch in self.channels:
            for data in self.pages.get(ch.device[0], []):
                ch.on_broadcast_data(data)
        if self.then_unplug:
            raise OSError("[Errno 19] No such device (the stick was pulled)")
        self._stopped.wait(10)

    def stop(self) -> None:
        self._stopped.set()


def test_ant_meters_on_one_stick_no_adapter_then_data_then_unplug() -> None:
    got = []
    status = StatusBoard()
    pages = {101: [crank(0, 0, 0), crank(1, 1365, 960), crank(2, 2730, 1920)],
             102: [[0x10, 1, 0xFF, 80, 100, 0, 200, 0], [0x10, 3, 0xFF, 82, 0x94, 0x02, 0x2C, 0x01]]}
    attempts = iter([OSError("No ANT devices available"), FakeNode(pages, then_unplug=True), FakeNode(pages)])

    def factory() -> FakeNode:
        item = next(attempts)
        if isinstance(item, Exception):
            raise item
        return item

    source = AntSource(got.append, [101, 102], status=status, node_factory=factory, retry_max_s=0.01)
    states: list[str] = []
    set_state = source.link.set
    source.link.set = lambda state, detail=None: (states.append(state), set_state(state, detail))  # type: ignore[method-assign]

    async def scenario() -> None:
        task = asyncio.create_task(source.run())
        try:
            async with asyncio.timeout(20):  # openant missing or a hung fake: fail, never wait forever
                while len(got) < 6:
                    await asyncio.sleep(0.005)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert states[:7] == ["searching", "no adapter", "searching", "connected", "lost", "searching", "connected"]
    assert status.get("source.ant")["state"] == "connected"
    # Each pairing (before and after the unplug) discards its first page: no power from stale deltas.
    assert [round(s.power, 1) for s in got if s.source == "ant:101"] == [282.8] * 4
    by_meter = {s.source: s for s in got}
    assert by_meter["ant:101"].power == pytest.approx(282.8, abs=0.1)
    assert by_meter["ant:101"].cadence == pytest.approx(90.0, abs=0.05)
    assert by_meter["ant:102"].power == pytest.approx((660 - 100) / 2)
    assert all(s.wall_time > 1e9 for s in got)
    assert source.link.counters["pages"] == 10 and source.link.counters["samples"] == 6
    assert source.link.counters["samples"] == len(got)


def test_ant_a_bad_page_is_counted_not_fatal() -> None:
    got = []
    source = AntSource(got.append, [7], node_factory=lambda: None)
    source.on_page(7, bytes([0x99, 0, 0, 0, 0, 0, 0, 0]), 1.0)
    source.on_page(7, bytes(crank(0, 0, 0)), 1.0)
    source.on_page(7, bytes(crank(1, 1365, 960)), 2.0)
    assert source.link.counters["bad_pages"] == 1 and len(got) == 1


class FakeScanner:
    def __init__(self, device: SimpleNamespace) -> None:
        self.device = device
        self.scans = 0

    async def find_device_by_filter(self, match, timeout: float):
        self.scans += 1
        adv = SimpleNamespace(service_uuids=[SERVICE])
        return self.device if match(self.device, adv) else None


class FakeClient:
    """bleak.BleakClient at its boundary: notifications are real 0x2A63 payloads."""

    instances: ClassVar[list[FakeClient]] = []

    def __init__(self, device, disconnected_callback) -> None:
        self.device = device
        self.on_disconnect = disconnected_callback
        self.is_connected = False
        self.handler = None
        FakeClient.instances.append(self)

    async def connect(self) -> None:
        self.is_connected = True

    async def start_notify(self, uuid: str, handler) -> None:
        assert uuid == MEASUREMENT
        self.handler = handler

    async def disconnect(self) -> None:
        self.is_connected = False

    def notify(self, hex_payload: str) -> None:
        self.handler(None, bytearray(bytes.fromhex(hex_payload)))

    def drop(self) -> None:
        self.is_connected = False
        self.on_disconnect(self)


def test_ble_meter_notifies_reconnects_and_never_doubles() -> None:
    got = []
    FakeClient.instances = []
    device = SimpleNamespace(address="C4:7F:51:0A:12:9E", name="4iiii 12345")
    scanner = FakeScanner(device)
    source = BleSource(got.append, ["4iiii 12345"], scanner=scanner, client_factory=FakeClient, retry_max_s=0.01)

    async def until(predicate) -> None:
        for _ in range(500):
            if predicate():
                return
            await asyncio.sleep(0.005)
        raise AssertionError("timed out")

    async def scenario() -> None:
        task = asyncio.create_task(source.run())
        await until(lambda: FakeClient.instances and FakeClient.instances[-1].handler)
        first = FakeClient.instances[-1]
        first.notify("00 00 D2 04")
        first.notify("2C 00 00 00 9F 00 0C 00 E5 42")
        first.drop()
        await until(lambda: len(FakeClient.instances) == 2 and FakeClient.instances[-1].handler)
        second = FakeClient.instances[-1]
        first.notify("00 00 10 27")  # a late callback of the old subscription: ignored
        second.notify("2C 00 00 00 DF 00 2B 00 39 F6")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert [s.power for s in got] == [1234.0, 0.0, 0.0]
    assert got[-1].cadence == pytest.approx(41.49, abs=0.01)  # cadence state survives the reconnect
    assert {s.source for s in got} == {"ble:c4:7f:51:0a:12:9e"}
    assert scanner.scans == 2 and source.link.counters["disconnects"] == 1


def test_line_formats() -> None:
    assert decode_line("BD-2525,SF,1772445612.5\r\n", LineFormat()) == ("BD-2525", "SF", 1772445612.5)
    fmt = LineFormat(separator=";", transponder=1, gate=None, time=3, time_format="%H:%M:%S.%f", default_gate="TOP")
    import datetime as dt

    day = dt.date(2026, 3, 2)
    assert decode_line("17;BD-1;x;10:00:01.25", fmt, today=day) == ("BD-1", "TOP", 1772445601.25)
    with pytest.raises(DecodeError, match="expected at least 3 fields"):
        decode_line("BD-1,SF", LineFormat())
    with pytest.raises(DecodeError, match=r"field 2 'soon' is not a time \(unix\)"):
        decode_line("BD-1,SF,soon", LineFormat())


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
