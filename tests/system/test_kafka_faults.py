"""Nothing accepted is lost on the way to Kafka: broker outages, restarts, kill -9, a full spool, corruption.

Each test owns a real broker (so it can stop it) and checks, by consuming the topics and
deduplicating by event_id, that every event in the spool arrived exactly once and in order per rider.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import free_port, kafka_settings, spawn, wait_for
from kafka_check import assert_exactly_once_in_order

from gateway.config import riders
from gateway.model import PowerSample
from gateway.pipeline.ingest import Batching, Ingest
from gateway.pipeline.roster import Roster
from gateway.spool.store import NewEvent, Policy, Spool
from gateway.uplink.forwarder import Forwarder

pytestmark = pytest.mark.kafka
RIDERS = [{"id": f"r{i:02d}", "name": f"Rider {i}", "power_meters": [{"ant": 100 + i}]} for i in range(6)]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from kafka_broker import Broker

    b = Broker(tmp_path_factory.mktemp("fault-broker"))
    b.start()
    yield b
    b.stop()


@pytest.fixture
def running_broker(broker) -> Iterator[object]:
    if broker.process is None:
        broker.start()
    yield broker
    if broker.process is None:
        broker.start()


def kafka_config(bootstrap: str) -> tuple[dict, list[str]]:
    tag = uuid.uuid4().hex[:8]
    topics = {"power": f"power-{tag}", "crossings": f"crossings-{tag}", "segments": f"segments-{tag}",
              "sessions": f"sessions-{tag}"}
    return {"bootstrap": bootstrap, "topics": topics}, list(topics.values())


class Stream:
    """Submits power samples for every rider at a steady rate until stopped."""

    def __init__(self, ingest: Ingest, per_second: int = 1200) -> None:
        self.ingest = ingest
        self.per_second = per_second
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="stream")
        self.sent = 0

    def run(self) -> None:
        t0 = time.monotonic()
        while not self.stop.is_set():
            rider = RIDERS[self.sent % len(RIDERS)]
            meter = rider["power_meters"][0]["ant"]
            self.ingest.submit(PowerSample(f"ant:{meter}", str(meter), 1e9 + self.sent * 0.01, 200.0 + self.sent % 90))
            self.sent += 1
            ahead = self.sent / self.per_second - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)

    def __enter__(self) -> Stream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def drained(spool: Spool, timeout: float) -> bool:
    """Wait until the spool has no undelivered row."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if spool.ledger.backlog()[0] == 0:
            return True
        time.sleep(0.05)
    return False


def pipeline(tmp_path: Path, bootstrap: str, **policy: object) -> tuple[Spool, Ingest, Forwarder, list[str]]:
    kafka, topics = kafka_config(bootstrap)
    spool = Spool(tmp_path / "spool.sqlite", "box1", Policy(**policy)).open()  # type: ignore[arg-type]
    ingest = Ingest(spool, Roster(riders(RIDERS)), "s1", batching=Batching(0.05)).start()
    return spool, ingest, Forwarder(spool, kafka_settings(**kafka)), topics


def test_broker_stopped_during_a_steady_stream(tmp_path: Path, running_broker) -> None:
    spool, ingest, forwarder, topics = pipeline(tmp_path, running_broker.bootstrap)
    forwarder.start()
    try:
        with Stream(ingest):
            wait_for(lambda: forwarder.link.delivered > 1000, 30, "first deliveries")
            running_broker.stop()
            wait_for(lambda: not forwarder.link.snapshot()["connected"], 30, "the link to be reported down")
            down = forwarder.link.snapshot()
            assert down["down_since"] is not None and down["last_error"]
            time.sleep(2)
            assert spool.ledger.backlog()[0] > 1000  # the stream goes on into the spool
            running_broker.start()
            wait_for(lambda: forwarder.link.snapshot()["connected"], 60, "the link to come back")
            time.sleep(1)
        ingest.flush()
        assert drained(spool, 90)
    finally:
        forwarder.stop()
        ingest.stop()
        spool.close()
    assert assert_exactly_once_in_order(running_broker.bootstrap, topics, tmp_path / "spool.sqlite") > 4000


def test_broker_restarted_while_a_large_backlog_drains(tmp_path: Path, running_broker) -> None:
    spool, ingest, forwarder, topics = pipeline(tmp_path, running_broker.bootstrap)
    ingest.stop()
    for b in range(100):
        spool.appender.append([NewEvent("power", RIDERS[i % 6]["id"], "s1", float(b * 1000 + i),
                               {"wallTime": float(b * 1000 + i), "instantPower": 200 + i % 50})
                      for i in range(1000)])
    forwarder.start()
    try:
        wait_for(lambda: forwarder.link.delivered > 10_000, 60, "the backlog to start draining")
        running_broker.stop()
        running_broker.start()
        assert drained(spool, 120)
    finally:
        forwarder.stop()
        spool.close()
    assert assert_exactly_once_in_order(running_broker.bootstrap, topics, tmp_path / "spool.sqlite") == 100_000


@pytest.mark.parametrize("policy", ["reject", "drop_oldest"])
def test_spool_limit_with_the_broker_down(tmp_path: Path, running_broker, policy: str) -> None:
    running_broker.stop()
    spool, ingest, forwarder, topics = pipeline(tmp_path, running_broker.bootstrap,
                                                max_bytes=1024 * 1024, full_policy=policy)
    forwarder.start()
    try:
        with Stream(ingest, per_second=20_000) as stream:
            wait_for(lambda: spool.status()["full"], 60, "the spool to fill")
            time.sleep(0.5)
        ingest.flush()
        status = spool.status()
        # The policy holds, and the counters say what it cost; the pipeline still serves.
        if policy == "reject":
            assert status["rejected"] > 0 and status["dropped"] == 0
            assert status["appended"] + status["rejected"] == stream.sent
        else:
            assert status["dropped"] > 0 and status["rejected"] == 0
            assert status["appended"] == stream.sent
        assert ingest.submit(PowerSample("ant:100", "100", 5.0, 100.0))
        running_broker.start()
        assert drained(spool, 90)
    finally:
        forwarder.stop()
        ingest.stop()
        spool.close()
    assert assert_exactly_once_in_order(running_broker.bootstrap, topics, tmp_path / "spool.sqlite",
                                        dropped_may_arrive=policy == "drop_oldest") > 1000


def daemon_config(tmp_path: Path, bootstrap: str, topics: dict[str, str], port: int) -> Path:
    cfg = {
        "gateway": {"id": "box9", "state_dir": str(tmp_path / "state")},
        "course": {"gates": [{"id": "SF"}, {"id": "G1"}], "debounce_s": 0.5},
        "riders": [{"id": f"r{i}", "name": f"R{i}", "ftp_w": 250, "transponder": f"T{i}",
                    "power_meters": [{"ant": 10 + i}]} for i in range(10)],
        "sources": {"load": {"enabled": True, "rate_hz": 50, "segment_s": 2}},
        "spool": {"batch_interval_ms": 50},
        "kafka": {"enabled": True, "bootstrap_servers": bootstrap, "topics": topics},
        "web": {"host": "127.0.0.1", "port": port},
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(json.dumps(cfg))
    return path


def spool_rows(path: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def start_daemon(config: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return spawn(["run", "--config", str(config)], env, log)


def test_gateway_killed_mid_stream_and_started_again(tmp_path: Path, running_broker, gateway_env) -> None:
    kafka, topics = kafka_config(running_broker.bootstrap)
    port = free_port()
    config = daemon_config(tmp_path, running_broker.bootstrap, kafka["topics"], port)
    spool_path = tmp_path / "state" / "spool.sqlite"
    log = tmp_path / "daemon.log"
    proc = start_daemon(config, gateway_env, log)
    try:
        wait_for(lambda: spool_rows(spool_path) > 2000, 60, "the first run to accept events")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_at = spool_rows(spool_path)
        proc = start_daemon(config, gateway_env, log)
        wait_for(lambda: spool_rows(spool_path) > killed_at + 2000, 60, "the second run to accept events")
        # Caught up: what is left is the last second or so of the stream (deliveries are recorded
        # once a second); the graceful stop below delivers it.
        wait_for(lambda: caught_up(port), 60, "the backlog to drain")
    finally:
        stop_gracefully(proc)
    text = log.read_text()
    assert "Traceback" not in text
    n = assert_exactly_once_in_order(running_broker.bootstrap, topics, spool_path)
    assert n > killed_at + 2000
    segments = [json.loads(p) for (p,) in sqlite3.connect(spool_path).execute(
        "SELECT payload FROM events WHERE kind = 'segment'")]
    assert len(segments) > 10  # the engine ran in both lives, and its results went out too


def stop_gracefully(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, which must end the daemon cleanly within 20 s (it delivers what is left first)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def caught_up(port: int) -> bool:
    backlog = kafka_backlog(port)
    return backlog is not None and backlog < 2500


def kafka_backlog(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2) as reply:
            status = json.loads(reply.read())
    except OSError:
        return None
    return status["components"].get("spool", {}).get("backlog_rows")


def test_a_corrupt_spool_at_start_up_is_recovered(tmp_path: Path, running_broker, gateway_env) -> None:
    kafka, topics = kafka_config(running_broker.bootstrap)
    port = free_port()
    config = daemon_config(tmp_path, running_broker.bootstrap, kafka["topics"], port)
    spool_path = tmp_path / "state" / "spool.sqlite"
    spool_path.parent.mkdir(parents=True)
    sp = Spool(spool_path, "box9").open()
    for b in range(30):
        sp.appender.append([NewEvent("power", f"r{i % 10}", "old", float(i),
                                     {"wallTime": float(i), "instantPower": 150})
                   for i in range(b * 100, b * 100 + 100)])
    sp.close()
    data = bytearray(spool_path.read_bytes())
    page = len(data) // 4096 // 2
    data[page * 4096 + 8: page * 4096 + 1000] = os.urandom(992)
    spool_path.write_bytes(bytes(data))
    log = tmp_path / "daemon.log"
    proc = start_daemon(config, gateway_env, log)
    try:
        wait_for(lambda: kafka_backlog(port) is not None, 60, "the page to answer")
        wait_for(lambda: caught_up(port), 60, "the salvaged rows to be delivered")
    finally:
        stop_gracefully(proc)
    text = log.read_text()
    assert "failed its integrity check" in text and "salvaged" in text
    assert len([p for p in (tmp_path / "state").glob("spool.sqlite.corrupt-*") if p.suffix != ".sqlite-wal"]) >= 1
    old = sqlite3.connect(spool_path).execute("SELECT COUNT(*) FROM events WHERE session_id = 'old'").fetchone()[0]
    assert 2800 < old < 3000  # one damaged page's rows are lost, the rest were saved
    assert_exactly_once_in_order(running_broker.bootstrap, topics, spool_path)
