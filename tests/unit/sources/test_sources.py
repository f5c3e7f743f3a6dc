"""Sources against the fakes at the library boundary (openant's node, bleak's scanner and client),
fed with pages and notifications built to the profiles; the line formats of timing receivers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fakes import FakeClient, FakeNode, FakeScanner, crank

from gateway.decode.lines import LineFormat, decode_line
from gateway.errors import DecodeError
from gateway.model import GateCrossing, PowerSample
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




def test_a_meter_back_in_range_after_a_silence_starts_from_a_new_reference() -> None:
    """#30: a box beside the course hears a rider for seconds a lap; after a minute the 8-bit event
    count may have wrapped, and a difference taken across the silence would be a made-up power."""
    got: list[Any] = []
    source = AntSource(got.append, [7], node_factory=lambda: None)
    source.on_page(7, crank(0, 0, 0), 1.0)
    source.on_page(7, crank(1, 1365, 960), 1.25)
    source.on_page(7, crank(40, 1365 * 300, 960 * 300), 91.0)  # 90 s later, 299 events on: wrapped
    source.on_page(7, crank(41, 1365 * 301, 960 * 301), 91.25)
    assert [round(s.power, 1) for s in got] == [282.8, 282.8]
    assert [s.wall_time for s in got] == [1.25, 91.25]


def test_the_sim_source_plays_what_the_simulator_says_this_box_hears(tmp_path: Path) -> None:
    from gateway.cli.simulate import write_feeds
    from gateway.simulate.ride import simulate
    from gateway.simulate.world import BoxClock, Gate, SimBox, SimCourse, SimRider, World
    from gateway.sources.sim import SimSource

    course = SimCourse(600.0, (Gate("SF", 0.0), Gate("G1", 300.0)), ("climb", "descent"))
    box = SimBox("box-1", 0.0, 40.0, ("SF", "G1"), BoxClock(3.0, 40.0, 5.0))
    session = simulate(World(course, (SimRider("r01", "Anna", 250.0, 10001, "DM-0001"),), (box,), laps=2))
    write_feeds(session, tmp_path)
    (tmp_path / "box-1.jsonl").write_text((tmp_path / "box-1.jsonl").read_text() + "not a feed line\n")
    got: list[Any] = []
    status = StatusBoard()
    source = SimSource(got.append, tmp_path / "box-1.jsonl", status=status)
    asyncio.run(source.run())
    samples = [e for e in got if isinstance(e, PowerSample)]
    crossings = [e for e in got if isinstance(e, GateCrossing)]
    heard = [h for h in session.feeds["box-1"] if h.kind == "ant"]
    assert source.done and status.get("source.sim")["counters"] == {"bad_lines": 1, "crossings": 5}
    # Every page but the first after each silence gives a sample, stamped by the box's clock, with its identity.
    assert len(heard) - 3 <= len(samples) < len(heard)
    assert {s.raw for s in samples} <= {f"ant:10001:{h.page.hex()}" for h in heard}
    assert {s.wall_time for s in samples} <= {h.box_t for h in heard}
    assert [(c.gate, c.receiver_time) for c in crossings] == [(p.gate, p.chip_t) for p in session.riders["r01"].passes]
