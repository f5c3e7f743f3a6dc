"""Ingest: riders mapped, events committed in batches before anyone sees them, engine restored after a crash."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from gateway.config import riders
from gateway.engine.course import Course
from gateway.engine.metrics import Stretch, power_metrics
from gateway.engine.segments import SegmentEngine
from gateway.model import GateCrossing, PowerSample, SegmentResult
from gateway.pipeline.build import rider_infos
from gateway.pipeline.ingest import Accepted, Batching, Ingest, events_in
from gateway.pipeline.roster import Roster
from gateway.pipeline.runner import EngineRunner
from gateway.pipeline.runs import PowerRun
from gateway.spool.store import Spool

RIDERS = [
    {"id": "r01", "name": "Anna", "ftp_w": 250, "weight_kg": 58, "transponder": "BD-1",
     "power_meters": [{"ant": 23456}]},
    {"id": "r02", "name": "Lea", "transponder": "BD-2", "power_meters": [{"ble": "C4:7F:51:0A:12:9E"}]},
]
COURSE = Course(("SF", "TOP"))




def test_sensors_and_transponders_map_to_riders(spool: Spool) -> None:
    seen: list[Accepted] = []
    ingest = Ingest(spool, Roster(riders(RIDERS)), "s1", batching=Batching(0.01))
    ingest.subscribe(seen.extend)
    ingest.start()
    try:
        ingest.submit(PowerSample("ant:23456", "23456", 10.0, 250.0, 90.0))
        ingest.submit(PowerSample("ble:c4:7f:51:0a:12:9e", "c4:7f:51:0a:12:9e", 10.0, 180.0))
        ingest.submit(GateCrossing("serial:/dev/ttyUSB0", "BD-2", "SF", 11.0))
        ingest.submit(GateCrossing("serial:/dev/ttyUSB0", "BD-9", "SF", 12.0))
        ingest.submit(PowerSample("ant:777", "777", 12.0, 100.0))
        assert ingest.flush()
    finally:
        ingest.stop()
    assert [a.rider_id for a in seen] == ["r01", "r02", "r02", None, None]
    messages = [row.message for row in spool.queries.since(0)]
    assert messages[0]["name"] == "Anna" and messages[0]["instantPower"] == 250.0
    assert messages[0]["source"] == "ant:23456" and messages[0]["normalizedPower"] == 250.0
    assert messages[3]["transponder"] == "BD-9" and messages[3]["rider_id"] is None
    # Unknown sensors are kept and forwarded, and counted for the status page.
    assert ingest.unmapped == {"transponder:BD-9": 1, "ant:777": 1}
    assert spool.ledger.last_seq() == 5


def test_subscribers_see_only_committed_events_in_batches(spool: Spool) -> None:
    committed_when_seen: list[bool] = []
    batches: list[int] = []

    def check(batch: list[Accepted]) -> None:
        batches.append(events_in(batch))  # one meter's samples in a batch come as one run
        last = batch[-1]
        end = last.seq + (len(last.event.walls) - 1 if isinstance(last.event, PowerRun) else 0)
        committed_when_seen.append(spool.ledger.last_seq() >= end)

    ingest = Ingest(spool, Roster(riders(RIDERS)), "s1", batching=Batching(0.05, 100))
    ingest.subscribe(check)
    ingest.start()
    try:
        for i in range(1000):
            ingest.submit(PowerSample("ant:23456", "23456", float(i), 200.0))
        assert ingest.flush()
    finally:
        ingest.stop()
    assert all(committed_when_seen)
    assert sum(batches) == 1000 and max(batches) == 100
    assert len(batches) <= 20


def test_stop_commits_everything_queued(spool: Spool) -> None:
    ingest = Ingest(spool, Roster(riders(RIDERS)), "s1", batching=Batching(5.0, 10_000)).start()
    for i in range(300):
        ingest.submit(PowerSample("ant:23456", "23456", float(i), 200.0))
    ingest.stop()
    assert spool.ledger.last_seq() == 300


def test_rolling_30s_power_is_the_seed_normalized_power_field(spool: Spool) -> None:
    ingest = Ingest(spool, Roster(riders(RIDERS)), "s1", batching=Batching(0.01))
    ingest.start()
    for i in range(60):
        ingest.submit(PowerSample("ant:23456", "23456", float(i), 100.0 if i < 30 else 300.0))
    ingest.flush()
    ingest.stop()
    rolling = [row.message["normalizedPower"] for row in spool.queries.since(0)]
    assert rolling[29] == pytest.approx(100.0) and rolling[59] == pytest.approx(300.0)
    assert rolling[44] == pytest.approx((15 * 100 + 15 * 300) / 30)


def test_a_meter_paired_mid_session_is_its_riders_from_the_next_batch_on(spool: Spool) -> None:
    ingest = Ingest(spool, Roster(riders(RIDERS)), "s1", batching=Batching(0.01))
    ingest.start()
    for i in range(40):
        ingest.submit(PowerSample("ant:777", "777", float(i), 100.0))
    ingest.flush()
    paired = [*RIDERS, {"id": "r03", "name": "Mia", "power_meters": [{"ant": 777}]}]
    ingest.call(lambda: setattr(ingest, "roster", Roster(riders(paired))))
    for i in range(40, 50):
        ingest.submit(PowerSample("ant:777", "777", float(i), 300.0))
    ingest.flush()
    ingest.stop()
    seen = list(spool.queries.since(0))
    assert [row.rider_id for row in seen] == [None] * 40 + ["r03"] * 10
    assert seen[-1].message["name"] == "Mia" and ingest.unmapped == {"ant:777": 40}
    # The meter's own rolling window (while nobody's) is not the rider's: hers starts with her samples.
    assert seen[-1].message["normalizedPower"] == pytest.approx(300.0)


def test_a_crossing_queued_behind_a_full_batch_is_committed_without_the_batch_delay(spool: Spool) -> None:
    crossed = threading.Event()
    ingest = Ingest(spool, Roster(riders(RIDERS)), "s1", batching=Batching(5.0, 10))
    ingest.subscribe(lambda batch: crossed.set() if any(isinstance(a.event, GateCrossing) for a in batch) else None)
    for i in range(25):  # more than two batches before it
        ingest.submit(PowerSample("ant:23456", "23456", float(i), 200.0))
    ingest.submit(GateCrossing("serial:x", "BD-1", "SF", 25.0))
    ingest.start()
    try:
        assert crossed.wait(2.0), "the crossing waited for its batch to fill"
    finally:
        ingest.stop()
    assert spool.ledger.last_seq() == 26


def test_the_sample_a_closed_segment_waits_for_is_committed_without_the_batch_delay(spool: Spool) -> None:
    """A crossing is committed at once, but its segment's result needs the rider's next sample
    (past the gate): that sample must not wait out the spool's interval either."""
    got: list[SegmentResult] = []
    ingest = Ingest(spool, Roster(riders(RIDERS)), "s1", batching=Batching(30.0))
    engine = SegmentEngine(COURSE, rider_infos(riders(RIDERS)), "s1")
    arrived = threading.Event()

    def emit(result: SegmentResult) -> None:
        got.append(result)
        arrived.set()

    runner = EngineRunner(engine, emit, ingest.await_riders)
    ingest.subscribe(runner.on_accepted)
    ingest.start()
    try:
        ingest.submit(GateCrossing("serial:x", "BD-1", "SF", 0.0))
        for i in range(40):
            ingest.submit(PowerSample("ant:23456", "23456", i * 0.25, 200.0))
        ingest.submit(GateCrossing("serial:x", "BD-1", "TOP", 9.9))  # commits the samples before it
        assert not arrived.wait(0.3), "the result came before a sample past its end"
        ingest.submit(PowerSample("ant:23456", "23456", 10.0, 200.0))
        assert arrived.wait(10.0), "the sample past the gate waited for the 30 s batch"
        # Other meters' samples still wait for their batch: the spool's SD-card interval stands.
        ingest.submit(PowerSample("ble:c4:7f:51:0a:12:9e", "c4:7f:51:0a:12:9e", 10.0, 180.0))
        committed = spool.ledger.last_seq()
        threading.Event().wait(0.5)
        assert spool.ledger.last_seq() == committed
    finally:
        ingest.stop()
    assert [(r.number, r.end) for r in got] == [("1.1", 9.9)]
    assert spool.ledger.last_seq() == 44


def run_pipeline(spool: Spool, events: list, results: list[SegmentResult]) -> tuple[Ingest, EngineRunner]:
    ingest = Ingest(spool, Roster(riders(RIDERS)), "s1", batching=Batching(0.01))
    engine = SegmentEngine(COURSE, rider_infos(riders(RIDERS)), "s1")
    lock = threading.Lock()

    def emit(result: SegmentResult) -> None:
        with lock:
            results.append(result)
        ingest.submit(result)

    runner = EngineRunner(engine, emit)
    ingest.subscribe(runner.on_accepted)
    runner.restore(spool)
    ingest.start()
    for ev in events:
        ingest.submit(ev)
    ingest.flush()
    return ingest, runner


def test_a_restart_mid_segment_still_yields_the_full_result(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    t = np.arange(0.0, 400.0, 0.25)
    p = rng.normal(250, 50, t.size).clip(0)
    samples = [PowerSample("ant:23456", "23456", float(ti), float(pi)) for ti, pi in zip(t, p, strict=True)]
    crossings = {0.0: "SF", 180.0: "TOP", 390.0: "SF"}
    events: list = []
    for s in samples:
        if s.wall_time in crossings:
            events.append(GateCrossing("serial", "BD-1", crossings[s.wall_time], s.wall_time))
        events.append(s)
    cut = next(i for i, e in enumerate(events) if isinstance(e, PowerSample) and e.wall_time == 300.0)

    before: list[SegmentResult] = []
    sp = Spool(tmp_path / "spool.sqlite", "box1").open()
    ingest, _ = run_pipeline(sp, events[:cut], before)
    ingest.stop()
    sp.close()  # the process dies here, mid-segment 1.2
    assert [r.number for r in before] == ["1.1"]

    after: list[SegmentResult] = []
    sp = Spool(tmp_path / "spool.sqlite", "box1").open()
    ingest, runner = run_pipeline(sp, events[cut:], after)
    runner.flush()
    ingest.flush()
    ingest.stop()
    assert [r.number for r in after] == ["1.2"]
    m = power_metrics(Stretch(t, p, None, 180.0, 390.0), ftp_w=250.0, weight_kg=58.0)
    assert after[0].samples == m.samples == 840
    assert after[0].normalized_power == pytest.approx(m.normalized_power)
    # Both results are in the spool once each, to be forwarded.
    stored = [r.message["number"] for r in sp.queries.since(0, kinds=("segment",))]
    assert stored == ["1.1", "1.2"]
    sp.close()


def test_the_committer_alone_commits_a_batch_and_a_records_meta_with_it(spool: Spool) -> None:
    """The committer has no thread (the seams issue, #29): a test drives it directly. A session
    record's meta goes in the batch's transaction: refused together, or stored together."""
    from gateway.model import SessionRecord
    from gateway.pipeline.committer import Committer

    committer = Committer(spool, Roster(riders(RIDERS)), "s1")
    seen: list[Accepted] = []
    committer.subscribers.append(seen.extend)
    record = SessionRecord("s1", "live", "Hill repeats", 1000.0, None, {"id": "c"}, ())
    spool.appender.intake_paused = "a test refuses this batch"
    committer.commit([PowerSample("ant:23456", "23456", 10.0, 250.0), record])
    assert seen == [] and committer.rejected == 2 and not spool.sessions.has_record("s1")
    spool.appender.intake_paused = None
    committer.commit([PowerSample("ant:23456", "23456", 10.0, 250.0), record])
    assert [type(a.event).__name__ for a in seen] == ["PowerSample", "SessionRecord"]
    assert [a.seq for a in seen] == [1, 2] and seen[0].rider_id == "r01" and seen[0].usable
    assert (spool.sessions.record("s1") or {})["name"] == "Hill repeats"


def test_a_call_runs_after_what_was_submitted_before_it_and_before_what_came_after(spool: Spool) -> None:
    order: list[str] = []
    ingest = Ingest(spool, Roster(riders(RIDERS)), "s1", batching=Batching(5.0, 1000))
    ingest.subscribe(lambda batch: order.extend(f"{a.event.wall_time:g}" for a in batch))
    for t in (1.0, 2.0):
        ingest.submit(PowerSample("ant:23456", "23456", t, 200.0))
    ingest.call(lambda: order.append("call"))
    ingest.submit(PowerSample("ant:23456", "23456", 3.0, 200.0))
    ingest.start()
    try:
        assert ingest.flush(10)
    finally:
        ingest.stop()
    assert order == ["1", "2", "call", "3"]
