"""The hub: ingest against a plain COPY of the same rows, a three-box backlog, a session query on a
large table, and a gate crossing on a box to a point on the hub's page with Kafka in the path.

Sizes: BENCH_HUB_BOXES (3) x BENCH_HUB_EVENTS (1 440 000: one hour of 100 riders at 4 Hz) for the
backlog; BENCH_HUB_LARGE_ROWS (20 000 000; 100 000 000 for the issue's figure, about 10 minutes)
for the session query.
"""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway import config
from gateway.wire import Encoder

BOXES = int(os.environ.get("BENCH_HUB_BOXES", "3"))
EVENTS = int(os.environ.get("BENCH_HUB_EVENTS", "1440000"))
LARGE = int(os.environ.get("BENCH_HUB_LARGE_ROWS", "20000000"))
T0 = 1_790_000_000.0


def _servers(d: Path, group_join_delay_ms: int = 0) -> tuple[Any, str, Any]:
    from kafka_broker import Broker
    from postgres import Postgres

    broker = Broker(d / "kafka", group_join_delay_ms=group_join_delay_ms)
    bootstrap = broker.start()
    # Inside the caller's temporary directory, which takes it away at the end (a directory of its
    # own was left behind: 4 to 7 GB a run, until the disk filled). PostgreSQL runs as its own user.
    d.chmod(0o755)
    base = d / "postgres"
    base.mkdir(mode=0o755)
    pg = Postgres(base / "pg")
    pg.start(fsync=True)
    return broker, bootstrap, pg


def _settings(bootstrap: str, topics: dict[str, str], group: str) -> Any:
    return config.parse(
        "gateway: {id: hub}\ncourse: {gates: [{id: SF}]}\nriders: []\n"
        f"kafka: {{bootstrap_servers: '{bootstrap}', topics: {topics}, partitions: 6}}\n"
        f"hub: {{group_id: {group}, batch_size: 20000, batch_ms: 200}}\n").settings


def _produce(bootstrap: str, topic: str) -> list[tuple[Any, ...]]:
    """BOXES boxes' hour of 100 riders at 4 Hz into ``topic``; returns the rows as the hub stores them."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)]).values():
        future.result(30)
    # Idempotent, as the box's producer is: the hub's duplicate check relies on each partition
    # holding a box's events in the order it sent them (a plain producer may reorder on a retry).
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "linger.ms": 50, "batch.num.messages": 10000,
                         "queue.buffering.max.messages": 500000, "compression.type": "lz4"})
    rows = []
    for box in range(BOXES):
        gateway = f"box{box}"
        spool = f"{box:010x}"
        enc = Encoder(gateway, spool)
        session = f"{gateway}-20260601-090000"
        for i in range(EVENTS):
            rider = f"r{i % 100:03d}"
            t = T0 + i * 0.0025
            watts = 150.0 + i % 250
            payload = enc.encode(i + 1, session, {"wallTime": t, "instantPower": watts, "cadence": 85.0,
                                                  "torque": None, "normalizedPower": watts, "name": rider,
                                                  "rider_id": rider, "source": "ant:1"})
            while True:
                try:
                    producer.produce(topic, payload, rider)
                    break
                except BufferError:
                    producer.poll(0.05)
            rows.append((gateway, i + 1, session, rider, t, watts, 85.0, None, "ant:1", False, None, spool))
    producer.flush(120)
    return rows


@contextlib.contextmanager
def _as_a_hub_process() -> Iterator[None]:
    """This process's interpreter as a hub process sets its own (``hub.daemon.tune_interpreter``:
    what is alive now set aside from the cycle collector, the lock handed over every 0.5 ms), and as
    it was afterwards. Without it the collector walked the benchmark's own copy of the 4.3 M rows
    (kept for the plain COPY; a hub holds no such list) over and over: 94 759 events/s."""
    from gateway.hub.daemon import tune_interpreter

    switch, thresholds = sys.getswitchinterval(), gc.get_threshold()
    tune_interpreter()
    try:
        yield
    finally:
        sys.setswitchinterval(switch)
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def hub_ingest() -> list[tuple[str, dict[str, object]]]:
    """One ``HubConsumer`` in this process (no page, no course engine: the consumer alone), rate from
    its first row written to its last, against the plain COPY; the backlog's time from its start."""
    import psycopg

    from gateway.hub.consumer import HubConsumer
    from gateway.hub.schema import migrate
    from gateway.hub.writer import POWER_COLUMNS, POWER_TYPES

    with tempfile.TemporaryDirectory() as d:
        broker, bootstrap, pg = _servers(Path(d))
        try:
            topics = {"power": "bench-power", "crossings": "bench-crossings", "segments": "bench-segments",
                      "sessions": "bench-sessions"}
            rows = _produce(bootstrap, topics["power"])
            dsn = pg.create_database("hub_ingest")
            with psycopg.connect(dsn) as conn:
                migrate(conn)
            settings = _settings(bootstrap, topics, "bench")
            consumer = HubConsumer(settings, lambda: psycopg.connect(dsn))
            stop = threading.Event()
            first, at_first = 0.0, 0
            with _as_a_hub_process():
                t0 = time.perf_counter()
                thread = threading.Thread(target=consumer.run, args=(stop,))
                thread.start()
                while (n := consumer.stats.snapshot()["power_rows"]) < len(rows) and time.perf_counter() - t0 < 600:
                    if n and not first:
                        first, at_first = time.perf_counter(), n
                    time.sleep(0.05)
                done = time.perf_counter()
                stop.set()
                thread.join(60)
            written = consumer.stats.snapshot()["power_rows"]
            pg.drop_database("hub_ingest")

            plain = pg.create_database("plain_copy")
            with psycopg.connect(plain) as conn:
                migrate(conn)
                t0_copy = time.perf_counter()
                columns = ", ".join(POWER_COLUMNS)
                with conn.cursor().copy(f"COPY power ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(POWER_TYPES)
                    for row in rows:
                        copy.write_row(row)
                conn.commit()
                copy_s = time.perf_counter() - t0_copy
            pg.drop_database("plain_copy")
            query_ms = _session_query(pg)
        finally:
            pg.stop()
            broker.stop()
    ours, theirs = (written - at_first) / max(done - (first or done), 1e-9), len(rows) / copy_s
    backlog_s = done - t0
    return [
        # #35's target for one hub process (#14's 0.5x came before it; `hub.scale` runs the hub itself).
        ("hub.ingest_events_per_s", {"value": round(ours), "unit": "ev/s", "target": ">= 0.4 x plain COPY",
                                     "ok": ours >= 0.4 * theirs and written == len(rows),
                                     "ratio": round(ours / theirs, 2), "events": len(rows)}),
        ("hub.plain_copy_rows_per_s", {"value": round(theirs), "unit": "rows/s"}),
        (f"hub.backlog_{BOXES}_boxes_x_{EVENTS}_s", {"value": round(backlog_s, 1), "unit": "s", "target": "< 60 s",
                                                   "ok": backlog_s < 60}),
        (f"hub.session_query_at_{LARGE // 1_000_000}M_rows_ms", {"value": round(query_ms, 1), "unit": "ms",
                                                                 "target": "< 500 ms", "ok": query_ms < 500}),
    ]


def _session_query(pg: Any) -> float:
    """A large power table (LARGE rows over 1000 sessions), then one session's samples of one rider."""
    import psycopg

    from gateway.hub.schema import migrate

    dsn = pg.create_database("large")
    with psycopg.connect(dsn) as conn:
        migrate(conn)
        conn.execute("INSERT INTO power (gateway_id, seq, session_id, rider_id, wall_time, power, cadence, source) "
                     "SELECT 'box' || (i %% 3), i, 'session-' || (i / 14400 %% 1000), 'r' || (i %% 100), "
                     f"{T0} + i * 0.0025, 150 + i %% 250, 85, 'ant:1' FROM generate_series(1, %s) AS i", (LARGE,))
        conn.commit()
        conn.execute("ANALYZE power")
        times = []
        for k in range(20):
            t0 = time.perf_counter()
            conn.execute("SELECT wall_time, power FROM power WHERE session_id = %s AND rider_id = %s "
                         "ORDER BY wall_time", (f"session-{k * 37 % 1000}", f"r{k}")).fetchall()
            times.append((time.perf_counter() - t0) * 1000)
        conn.commit()
    return statistics.median(times)


def gate_to_hub_page() -> list[tuple[str, dict[str, object]]]:
    """A box on the load source (live clock) forwarding to Kafka; the hub writes to PostgreSQL and
    streams to a page. Latency: a result's gate crossing (box time) to its event on the hub's stream."""
    import json
    import subprocess
    import sys
    import urllib.request

    from kafka_broker import free_port

    with tempfile.TemporaryDirectory() as d:
        broker, bootstrap, pg = _servers(Path(d))
        procs: list[subprocess.Popen[bytes]] = []
        try:
            dsn = pg.create_database("latency")
            kafka = {"enabled": True, "bootstrap_servers": bootstrap}
            riders = [{"id": f"r{i:02d}", "name": f"R{i}", "transponder": f"T{i}"} for i in range(20)]
            gates = [{"id": g} for g in ("SF", "G1", "G2", "G3")]
            port = free_port()
            box = Path(d) / "box.yaml"
            box.write_text(json.dumps({"gateway": {"id": "box", "state_dir": f"{d}/box"}, "course": {"gates": gates},
                                       "riders": riders, "kafka": kafka, "web": {"enabled": False},
                                       "sources": {"load": {"enabled": True, "rate_hz": 4, "segment_s": 4}}}))
            hub = Path(d) / "hub.yaml"
            hub.write_text(json.dumps({"gateway": {"id": "hub", "state_dir": f"{d}/hub"}, "course": {"gates": gates},
                                       "riders": [], "kafka": kafka,
                                       "hub": {"port": port, "host": "127.0.0.1", "batch_ms": 50}}))
            env = {**os.environ, "TRACKSIDE_PG_DSN": dsn}
            for cfg, cmd in ((hub, "hub"), (box, "run")):
                procs.append(subprocess.Popen([sys.executable, "-m", "gateway", cmd, "--config", str(cfg)], env=env,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.2)
            latencies: list[float] = []
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/stream", timeout=30) as stream:
                for line in stream:
                    if line.startswith(b"data: ") and b'"result"' in line:
                        result = json.loads(line[6:])["result"]
                        if "withdrawn" not in result["flags"]:
                            latencies.append(time.time() - result["end"])
                        if len(latencies) >= 300:
                            break
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)
            pg.stop()
            broker.stop()
    latencies.sort()
    p95 = latencies[int(len(latencies) * 0.95)] * 1000
    return [("hub.gate_to_hub_page_p95_ms", {"value": round(p95), "unit": "ms", "target": "< 1000 ms", "ok": p95 < 1000,
                                             "p50_ms": round(statistics.median(latencies) * 1000),
                                             "results": len(latencies)})]


BENCHMARKS = [("hub.ingest", hub_ingest), ("hub.latency", gate_to_hub_page)]
