"""Spool and forwarder: ingest rate and drain rate, each beside its plain counterpart, and disk cost.

- ingest: events/s from ``Ingest.submit`` to committed spool rows, against a plain batched
  ``executemany`` of the same events as one row each (the table of schema 6, the bodies it stored,
  same WAL/synchronous settings, same batch size);
- drain: a one-hour backlog of 100 riders at 4 Hz (1.44 M events) from the spool to a real broker,
  against a plain confluent-kafka produce loop of the same messages (from memory);
- bytes written to disk per event (database + WAL).
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import orjson

from gateway import config
from gateway.config import riders
from gateway.model import PowerSample
from gateway.pipeline.ingest import Batching, Ingest
from gateway.pipeline.roster import Roster
from gateway.spool.schema import MIGRATIONS
from gateway.spool.store import NewEvent, Spool
from gateway.uplink.forwarder import Forwarder
from gateway.wire import HEADER

RIDERS = [{"id": f"r{i:03d}", "name": f"Rider {i}", "power_meters": [{"ant": 1000 + i}]} for i in range(100)]
INGEST_EVENTS = 200_000
RUNS = 3  # each side of a comparison, in turns; the best of each is reported
BACKLOG_EVENTS = 100 * 4 * 3600


def _samples(n: int) -> list[PowerSample]:
    return [PowerSample(f"ant:{1000 + i % 100}", str(1000 + i % 100), 1.7e9 + i * 0.0025, 150.0 + i % 250, 85.0)
            for i in range(n)]


def _disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def _ingest_once(folder: Path, samples: list[PowerSample]) -> tuple[float, Spool]:
    """Seconds from the first ``submit`` to the last commit, and the spool (open)."""
    for old in folder.glob("spool.sqlite*"):
        old.unlink()
    spool = Spool(folder / "spool.sqlite", "bench").open()
    ingest = Ingest(spool, Roster(riders(RIDERS)), "bench", batching=Batching(0.2, 500)).start()
    t0 = time.perf_counter()
    for s in samples:
        ingest.submit(s)
    ingest.flush(600)
    seconds = time.perf_counter() - t0
    ingest.stop()
    return seconds, spool


def _executemany_once(path: Path, rows: list[tuple[object, ...]]) -> float:
    """Seconds for the same events inserted one row each, as a spool of schema 6 stored them."""
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    for version in sorted(v for v in MIGRATIONS if v < 7):  # a table of one row per event, its indexes
        for statement in MIGRATIONS[version].split(";"):
            if statement.strip():
                conn.execute(statement)
    t0 = time.perf_counter()
    for i in range(0, len(rows), 500):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO events (seq, kind, rider_id, session_id, wall_time, recv_time, payload, crc)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows[i:i + 500])
        conn.execute("COMMIT")
    seconds = time.perf_counter() - t0
    conn.close()
    for wal in path.parent.glob(path.name + "-*"):
        wal.unlink()
    return seconds


def ingest_vs_executemany() -> list[tuple[str, dict[str, object]]]:
    """Each side run ``RUNS`` times, in turns, the best of each kept: this machine's speed moves by
    half between runs a minute apart, and the ratio is what is compared."""
    samples = _samples(INGEST_EVENTS)
    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        seconds, spool = _ingest_once(folder, samples)
        spool.file.conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = [(r.seq, r.kind, r.rider_id, r.session_id, r.wall_time, r.recv_time,
                 orjson.dumps({k: v for k, v in orjson.loads(r.payload).items() if k not in HEADER}), r.crc)
                for r in spool.queries.since(0)]
        bytes_per_event = _disk_bytes(spool.path) / INGEST_EVENTS
        spool.close()
        ours.append(seconds)
        for run in range(RUNS):
            theirs.append(_executemany_once(folder / "plain.sqlite", rows))
            if run + 1 < RUNS:
                seconds, spool = _ingest_once(folder, samples)
                spool.close()
                ours.append(seconds)
    rate, plain = INGEST_EVENTS / min(ours), INGEST_EVENTS / min(theirs)
    return [
        ("spool.ingest_events_per_s", {"value": round(rate), "unit": "ev/s", "target": ">= 0.7 x plain",
                                       "ok": rate >= 0.7 * plain, "ratio": round(rate / plain, 2),
                                       "runs": [round(INGEST_EVENTS / s) for s in ours]}),
        ("spool.plain_executemany_per_s", {"value": round(plain), "unit": "rows/s",
                                           "runs": [round(INGEST_EVENTS / s) for s in theirs]}),
        ("spool.disk_bytes_per_event", {"value": round(bytes_per_event), "unit": "B"}),
    ]


def _warm_up(bootstrap: str) -> None:
    """A new broker loads its producer-id coordinator on the first idempotent producer (about half a
    second, retried). A box draining after an outage meets a running broker, and the plain loop
    below meets this one warm: the forwarder is timed on a warm broker too."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    producer.produce("bench-warm-up", b"x")
    producer.flush(60)


def drain_vs_produce_loop() -> list[tuple[str, dict[str, object]]]:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from confluent_kafka import Producer
    from kafka_broker import Broker

    with tempfile.TemporaryDirectory() as d:
        broker = Broker(Path(d) / "kafka")
        bootstrap = broker.start()
        try:
            spool = Spool(Path(d) / "spool.sqlite", "bench").open()
            t0 = time.perf_counter()
            batch = 5000
            for b in range(0, BACKLOG_EVENTS, batch):
                spool.appender.append([NewEvent("power", f"r{i % 100:03d}", "bench", 1.7e9 + i * 0.0025,
                                       {"wallTime": 1.7e9 + i * 0.0025, "instantPower": 150.0 + i % 250,
                                        "cadence": 85.0, "rider_id": f"r{i % 100:03d}", "source": "ant:1"})
                              for i in range(b, min(b + batch, BACKLOG_EVENTS))])
            fill_s = time.perf_counter() - t0
            disk = _disk_bytes(spool.path)
            kafka = replace(config.load(None).settings.kafka, enabled=True, bootstrap_servers=bootstrap, topics={
                "power": "bench-power", "crossings": "bench-crossings", "segments": "bench-segments"})
            _warm_up(bootstrap)
            forwarder = Forwarder(spool, kafka)
            t0 = time.perf_counter()
            forwarder.start()
            deadline = time.monotonic() + 600
            while spool.ledger.backlog()[0] and time.monotonic() < deadline:
                time.sleep(0.05)
            drained = spool.ledger.backlog()[0] == 0
            drain_s = time.perf_counter() - t0
            forwarder.stop()
            messages = [(r.rider_id, r.payload) for r in spool.queries.since(0)]
            spool.close()

            producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                                 "linger.ms": 20, "batch.num.messages": 10_000, "compression.type": "lz4",
                                 "queue.buffering.max.messages": 1_000_000})
            t0 = time.perf_counter()
            for key, value in messages:
                while True:
                    try:
                        producer.produce("bench-plain", value=value, key=key)
                        break
                    except BufferError:
                        producer.poll(0.05)
            producer.flush(300)
            plain_s = time.perf_counter() - t0
            del producer
        finally:
            broker.stop()
    ours, theirs = BACKLOG_EVENTS / drain_s, BACKLOG_EVENTS / plain_s
    return [
        ("forwarder.drain_1h_100_riders_4hz_s", {"value": round(drain_s, 1), "unit": "s", "target": "<= 6 s",
                                                 "ok": drained and drain_s <= 6, "events": BACKLOG_EVENTS}),
        ("forwarder.drain_events_per_s", {"value": round(ours), "unit": "ev/s", "target": ">= 0.5 x plain",
                                          "ok": ours >= 0.5 * theirs, "ratio": round(ours / theirs, 2)}),
        ("forwarder.plain_produce_loop_per_s", {"value": round(theirs), "unit": "msg/s"}),
        ("spool.fill_1h_backlog_append_per_s", {"value": round(BACKLOG_EVENTS / fill_s), "unit": "ev/s"}),
        ("spool.disk_bytes_per_event_1h_backlog", {"value": round(disk / BACKLOG_EVENTS), "unit": "B"}),
    ]


BENCHMARKS = [
    ("spool.ingest", ingest_vs_executemany),
    ("forwarder.drain", drain_vs_produce_loop),
]

if os.environ.get("BENCH_QUICK"):
    BACKLOG_EVENTS = 100_000
