"""A timing receiver whose clock is two hours ahead, through a real pseudo-terminal: its crossings
still yield segments on the box's timeline, and the status counts every line."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.config import riders
from gateway.decode.lines import LineFormat
from gateway.engine.course import Course
from gateway.engine.segments import SegmentEngine
from gateway.model import PowerSample, SegmentResult
from gateway.pipeline.build import rider_infos
from gateway.pipeline.ingest import Batching, Ingest
from gateway.pipeline.roster import Roster
from gateway.pipeline.runner import EngineRunner
from gateway.spool.store import Spool

NOW = 1_790_000_000.0
COURSE = Course(("SF", "TOP"), max_segment_s=3600.0)
RIDERS = [{"id": "r01", "name": "Anna", "transponder": "BD-1", "ftp_w": 250, "weight_kg": 58,
           "power_meters": [{"ant": 23456}]}]




# -- clocks --------------------------------------------------------------------------------------------


# -- implausible values --------------------------------------------------------------------------------


# -- the serial receiver end to end: skewed clock, fresh counters --------------------------------------


def test_a_receiver_two_hours_ahead_still_yields_segments_and_current_counters(spool: Spool, tmp_path: Path) -> None:
    """Before: a receiver clock 2 h off the box's never produced a segment, and the status said
    "lines: 1, crossings: 1" after four lines."""
    import asyncio

    from harness import Pty

    from gateway.sources.serial import SerialSource
    from gateway.status import StatusBoard

    board = StatusBoard()
    eng = SegmentEngine(COURSE, rider_infos(riders(RIDERS)), "s1", grace_s=0.5)
    results: list[SegmentResult] = []
    ingest = Ingest(spool, Roster(riders(RIDERS)), "s1", batching=Batching(0.01))
    runner = EngineRunner(eng, ingest.submit)
    ingest.subscribe(runner.on_accepted)
    ingest.subscribe(lambda batch: results.extend(a.event for a in batch if isinstance(a.event, SegmentResult)))
    link = tmp_path / "ttyGates"
    pty = Pty(link)
    source = SerialSource(ingest.submit, str(link), 9600, LineFormat(), status=board, retry_max_s=0.05)

    async def scenario() -> None:
        task = asyncio.create_task(source.run())
        while source.link.state != "connected":
            await asyncio.sleep(0.01)
        t0 = time.time()
        for i in range(4):  # SF, TOP, SF, TOP, one every 0.6 s, on a receiver clock 2 h ahead
            box = t0 + 0.6 * i
            for k in range(6):
                ingest.submit(PowerSample("ant:23456", "23456", box + 0.1 * k, 200.0 + 10 * i, 90.0))
            pty.write(f"BD-1,{('SF', 'TOP')[i % 2]},{box + 7200.0:.3f}\n".encode())
            await asyncio.sleep(0.6)
        for _ in range(200):
            runner.tick()
            if len(results) >= 3 and board.get("source.serial")["counters"].get("crossings") == 4:
                break
            await asyncio.sleep(0.02)
        source.stop()
        await asyncio.wait_for(task, 5)

    ingest.start()
    try:
        asyncio.run(scenario())
        assert ingest.flush()
    finally:
        ingest.stop()
        pty.close()
    part = board.get("source.serial")
    assert part["counters"]["lines"] == 4 and part["counters"]["crossings"] == 4
    assert part["clock_offset_s"] == pytest.approx(-7200.0, abs=1.0) and part["clock_aligned"] is True
    assert [r.number for r in results] == ["1.1", "1.2", "2.1"]
    assert all(r.duration == pytest.approx(0.6, abs=0.05) and r.power_avg is not None for r in results)
    crossings = [r.message for r in spool.queries.since(0, kinds=("crossing",))]
    assert all(abs(c["receiverTime"] - c["wallTime"] - 7200.0) < 1.0 for c in crossings)
