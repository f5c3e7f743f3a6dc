"""Long runs of one meter's samples (a replay at full speed) stored and computed as columns: the
spool, the Kafka messages and the segment results are those of the one-sample way."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import orjson
import pytest

from gateway.config import riders
from gateway.engine.course import Course
from gateway.engine.segments import SegmentEngine
from gateway.model import GateCrossing, PowerSample, SegmentResult
from gateway.pipeline.build import rider_infos
from gateway.pipeline.ingest import Accepted, Batching, Ingest, events_in
from gateway.pipeline.roster import Roster
from gateway.pipeline.runner import EngineRunner
from gateway.pipeline.runs import RUN_MIN, PowerRun, rolling_means
from gateway.spool.store import Spool
from gateway.wire import Encoder

RIDERS = [
    {"id": "r01", "name": "Anna", "ftp_w": 250, "weight_kg": 58, "transponder": "BD-1",
     "power_meters": [{"ant": 111}, {"ble": "C4:7F:51:0A:12:9E"}]},
    {"id": "r02", "name": "Lea", "ftp_w": 230, "transponder": "BD-2", "power_meters": [{"ant": 222}]},
    {"id": "r03", "name": "Mia", "transponder": "BD-3", "power_meters": [{"ant": 333}]},
]
COURSE = Course(("SF", "TOP"))


def session_events() -> list[PowerSample | GateCrossing]:
    """Ten minutes at 4 Hz of three riders and a meter nobody owns, with what makes a run not plain:
    a NaN cadence the meter sent, a power out of range, time going backwards, cadences and torques
    missing; and two laps' crossings."""
    rng = np.random.default_rng(11)
    events: list[tuple[float, int, PowerSample | GateCrossing]] = []
    for k, (source, sensor) in enumerate((("ant:111", "111"), ("ant:222", "222"), ("ant:333", "333"),
                                          ("ant:999", "999"))):
        for i in range(2400):
            t = 1_781_427_600.0 + k * 0.05 + i * 0.25
            cadence = None if (k == 1 and i % 7 == 0) else float(rng.normal(88, 4))
            torque = None if k != 0 else round(float(rng.normal(25, 3)), 2)
            power = float(rng.normal(240 + 20 * k, 60)).__round__(1)
            if k == 2 and i == 1500:
                cadence = math.nan  # a meter's NaN: implausible, flagged
            if k == 1 and i == 2000:
                power = 5000.0  # out of range
            events.append((t, 1, PowerSample(source, sensor, t, max(power, 0.0), cadence, torque)))
    for rider, transponder in (("r01", "BD-1"), ("r02", "BD-2"), ("r03", "BD-3")):
        for lap in range(2):
            base = 1_781_427_600.0 + 30 + lap * 260 + (3 if rider == "r02" else 0)
            events.append((base, 0, GateCrossing("serial", transponder, "SF", base)))
            events.append((base + 130, 0, GateCrossing("serial", transponder, "TOP", base + 130)))
    events.sort(key=lambda e: (e[0], e[1]))
    out = [e[2] for e in events]
    # The unowned meter's clock stepped back: one of its samples arrives after later ones.
    late = next(i for i, e in enumerate(out) if isinstance(e, PowerSample) and e.source == "ant:999"
                and e.wall_time > 1_781_427_600.0 + 225)
    out.insert(late + 40, out.pop(late))
    return out


def play(path: Path, batch_size: int) -> tuple[Spool, Ingest, list[Accepted], list[SegmentResult]]:
    """The events through ingest and the engine, all queued before the thread starts: one batch of
    ``batch_size`` at a time."""
    spool = Spool(path, "box1").open()
    ingest = Ingest(spool, Roster(riders(RIDERS)), "s1", batching=Batching(0.01, batch_size))
    engine = SegmentEngine(COURSE, rider_infos(riders(RIDERS)), "s1")
    results: list[SegmentResult] = []
    runner = EngineRunner(engine, lambda r: results.append(r))
    seen: list[Accepted] = []
    ingest.subscribe(runner.on_accepted)
    ingest.subscribe(seen.extend)
    for ev in session_events():
        ingest.submit(ev)
    ingest.start()
    assert ingest.flush(30)
    ingest.call(runner.flush)
    assert ingest.flush(30)
    ingest.stop()
    return spool, ingest, seen, results


def order(result: SegmentResult) -> tuple[str, float]:
    return result.rider_id, result.start


def by_event(spool: Spool) -> dict[tuple[str | None, float, str], dict]:
    """Each stored power message by (rider, time, source), its own sequence fields left out."""
    out = {}
    for row in spool.queries.since(0, kinds=("power",)):
        msg = row.message
        for key in ("event_id", "seq", "spool_id"):
            msg.pop(key)
        out[(row.rider_id, msg["wallTime"], msg["source"])] = msg
    return out


def test_runs_store_what_the_one_sample_way_stores_and_the_engine_gives_the_same_results(tmp_path: Path) -> None:
    one_spool, one, one_seen, one_results = play(tmp_path / "one.sqlite", RUN_MIN // 2)
    run_spool, run, run_seen, run_results = play(tmp_path / "runs.sqlite", 5000)
    try:
        assert not any(isinstance(a.event, PowerRun) for a in one_seen)
        runs = [a for a in run_seen if isinstance(a.event, PowerRun)]
        # The plain meters go as runs; each meter with something wrong in its batch goes sample by sample.
        assert {a.event.source for a in runs} == {"ant:111", "ant:222", "ant:333", "ant:999"}
        assert len(runs) < 20 and events_in(run_seen) == len(one_seen) == 4 * 2400 + 12
        assert run_spool.ledger.last_seq() == one_spool.ledger.last_seq()
        assert dict(run_spool.counters.by_kind) == dict(one_spool.counters.by_kind)

        one_msgs, run_msgs = by_event(one_spool), by_event(run_spool)
        assert one_msgs.keys() == run_msgs.keys() and len(one_msgs) == 4 * 2400
        for key, msg in one_msgs.items():
            got = run_msgs[key]
            # The 30 s rolling mean is summed another way: equal to the last few bits.
            mean = msg.pop("normalizedPower")  # None for a flagged sample
            assert got.pop("normalizedPower") == (mean if mean is None else pytest.approx(mean, rel=1e-9, abs=1e-9))
            assert got == msg
        flagged = [m for m in run_msgs.values() if "implausible" in m]
        assert sorted(m["source"] for m in flagged) == ["ant:222", "ant:333"]
        assert run.implausible == one.implausible and run.unmapped == one.unmapped == {"ant:999": 2400}

        # Sequence numbers: one per event, none twice, every stored message whole.
        seqs = [row.seq for row in run_spool.queries.since(0)]
        assert seqs == sorted(set(seqs)) and len(seqs) == run_spool.ledger.last_seq()
        assert all(orjson.loads(row.payload)["seq"] == row.seq for row in run_spool.queries.since(0))

        # Three riders, each: SF-TOP, TOP-SF, SF-TOP (the second lap's TOP ends the session's crossings).
        assert len(one_results) == 9
        assert sorted(run_results, key=order) == sorted(one_results, key=order)
    finally:
        one_spool.close()
        run_spool.close()


def test_a_run_s_messages_are_those_encoded_one_by_one() -> None:
    encoder = Encoder("box-7")
    walls = [1_781_427_600.0 + i / 4 for i in range(5)]
    powers = [0.0, 212.5, 1999.0, 1e-3, 300]
    cadences = [None, 88.0, 90.5, None, 1.0]
    torques = [None, None, 12.25, 0.0, None]
    means = [0.0, 106.25, 737.1666666666666, 552.87525, 502.3]
    stream = encoder.power_run(41, 'replay-"1"', [walls, powers, cadences, torques, means], "Zoë", None, "ble:x")
    lines = stream.split(b"\n")
    assert len(lines) == 5
    for i, line in enumerate(lines):
        body = {"wallTime": walls[i], "instantPower": powers[i], "cadence": cadences[i], "torque": torques[i],
                "normalizedPower": means[i], "name": "Zoë", "rider_id": None, "source": "ble:x"}
        assert line == encoder.encode(41 + i, 'replay-"1"', body)


def test_rolling_means_continue_the_window_and_refuse_time_out_of_order() -> None:
    rng = np.random.default_rng(3)
    t = np.cumsum(rng.uniform(0.1, 2.0, 400))
    p = rng.uniform(0, 600, 400)
    prior_t, prior_p = t[:50].tolist(), p[:50].tolist()
    got = rolling_means(prior_t, prior_p, t[50:], p[50:], 30.0)
    assert got is not None
    means, kept_t, kept_p = got
    for j in range(50, 400):
        inside = (t <= t[j]) & (t > t[j] - 30.0)
        assert means[j - 50] == pytest.approx(p[inside].mean(), rel=1e-12)
    assert kept_t == t[t > t[-1] - 30.0].tolist() and kept_p == p[t > t[-1] - 30.0].tolist()
    assert rolling_means([5.0], [100.0], np.array([4.0, 6.0]), np.array([1.0, 2.0]), 30.0) is None


def test_the_engine_takes_a_run_as_its_samples_late_ones_too() -> None:
    rng = np.random.default_rng(8)
    t = np.arange(0.0, 300.0, 0.25)
    p = rng.normal(250, 40, t.size)
    c = np.where(np.arange(t.size) % 5 == 0, np.nan, 90.0)

    def engine() -> SegmentEngine:
        eng = SegmentEngine(COURSE, rider_infos(riders(RIDERS)), "s1")
        eng.add_crossing("r01", "SF", 10.0)
        eng.add_crossing("r01", "TOP", 140.0)
        eng.add_crossing("r01", "SF", 250.0)
        return eng

    one, runs = engine(), engine()
    # Runs of samples, one of them late (before samples already in) while the second segment is open.
    pieces = [slice(0, 500), slice(600, 900), slice(500, 600), slice(900, 1200)]
    one_out = [r for piece in pieces for i in range(t.size)[piece]
               for r in one.add_power("r01", float(t[i]), float(p[i]), float(c[i]))]
    run_out = [r for piece in pieces for r in runs.add_power_run("r01", t[piece], p[piece], c[piece])]
    assert one_out and run_out == one_out
    assert one.flush() == runs.flush()
    assert runs.add_power_run("nobody", t[:3], p[:3], c[:3]) == [] and runs.unknown_riders["nobody"] == 3
