"""Sources against the fakes at the library boundary (openant's node, bleak's scanner and client),
fed with pages and notifications built to the profiles; the line formats of timing receivers."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from fakes import FakeClient, FakeNode, FakeScanner, crank

from gateway.decode.lines import LineFormat, decode_line
from gateway.errors import DecodeError
from gateway.sources.ant import AntSource
from gateway.sources.ble import BleSource
from gateway.status import StatusBoard


def test_ant_meters_on_one_stick_no_adapter_then_data_then_unplug() -> None:
    got = []
    status = StatusBoard()
    pages = {101: [crank(0, 0, 0), crank(1, 1365, 960), crank(2, 2730, 1920)],
             102: [bytes([0x10, 1, 0xFF, 80, 100, 0, 200, 0]), bytes([0x10, 3, 0xFF, 82, 0x94, 0x02, 0x2C, 0x01])]}
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
    source.on_page(7, crank(0, 0, 0), 1.0)
    source.on_page(7, crank(1, 1365, 960), 2.0)
    assert source.link.counters["bad_pages"] == 1 and len(got) == 1


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


