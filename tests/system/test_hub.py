"""The hub against real parts: two boxes (one replaying, one on the load source) forwarding to a real
Kafka broker, hub processes in one consumer group, a real PostgreSQL server. Each fault test ends with
the database compared row by row against the union of the boxes' spools: nothing lost, nothing twice,
no phantom rows, and the hub's segment results equal the boxes' own."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from harness import free_port, spawn, wait_for

from gateway import config
from gateway.hub.results import PgResults
from gateway.results.sqlite import SpoolResults
from gateway.spool.store import Spool

pytestmark = pytest.mark.kafka
GATES = [{"id": "SF"}, {"id": "G1"}, {"id": "G2"}, {"id": "G3"}]
LOAD_RIDERS = [{"id": f"b{i:02d}", "name": f"Load {i}", "transponder": f"LD-{i}", "squad": "load"} for i in range(8)]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A broker of this module's own: one test restarts it."""
    from kafka_broker import Broker

    b = Broker(tmp_path_factory.mktemp("hub-broker"))
    b.start()
    yield b
    b.stop()


@pytest.fixture
def kafka(broker: Any) -> dict[str, Any]:
    if broker.process is None:
        broker.start()
    tag = uuid.uuid4().hex[:8]
    return {"enabled": True, "bootstrap_servers": broker.bootstrap, "partitions": 3,
            "topics": {k: f"{k}-{tag}" for k in ("power", "crossings", "segments", "sessions")},
            "properties": {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}}


def write_config(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc))
    return path


class Boxes:
    """Box A replays the bundled sample (slowly, so the stream lasts); box B runs the load source."""

    def __init__(self, tmp: Path, kafka: dict[str, Any], env: dict[str, str], replay_factor: float = 0.008) -> None:
        box_kafka = {**kafka, "properties": {}}
        self.states = {"box-a": tmp / "state-a", "box-b": tmp / "state-b"}
        self.configs = {
            "box-a": write_config(tmp / "a.yaml", {
                "gateway": {"id": "box-a", "state_dir": str(self.states["box-a"])},
                "course": {"id": "demo-loop", "gates": GATES}, "riders": [], "kafka": box_kafka,
                "web": {"enabled": False}, "replay": {"simulationFactor": replay_factor},
                "sources": {"replay": {"enabled": True, "files": ["@sample"]}}}),
            "box-b": write_config(tmp / "b.yaml", {
                "gateway": {"id": "box-b", "state_dir": str(self.states["box-b"])},
                "course": {"id": "demo-loop", "gates": GATES}, "riders": LOAD_RIDERS, "kafka": box_kafka,
                "web": {"enabled": False}, "sources": {"load": {"enabled": True, "rate_hz": 4, "segment_s": 3}}}),
        }
        self.env = env
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        for name, cfg in self.configs.items():
            self.procs[name] = spawn(["run", "--config", str(cfg)], self.env, self.tmp / f"{name}.log")

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for name, proc in self.procs.items():
            assert proc.wait(60) == 0, (self.tmp / f"{name}.log").read_text()[-2000:]

    def undelivered(self) -> int:
        # The box's delivery watermark: every row up to it is in Kafka (set-aside rows are not).
        return sum(spool_rows(s / "spool.sqlite", "seq > (SELECT CAST(value AS INTEGER) FROM meta WHERE key = "
                              "'delivered_through') OR seq IN (SELECT seq FROM set_aside)")
                   for s in self.states.values())


def spool_rows(path: Path, where: str = "1") -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute(f"SELECT COUNT(*) FROM events WHERE {where}").fetchone()[0])
    finally:
        conn.close()


def hub_config(tmp: Path, kafka: dict[str, Any], name: str) -> Path:
    return write_config(tmp / f"{name}.yaml", {
        "gateway": {"id": name, "state_dir": str(tmp / f"{name}-state")}, "course": {"gates": GATES}, "riders": [],
        "kafka": kafka, "hub": {"group_id": f"g-{kafka['topics']['power']}", "port": 0, "web": False,
                                "batch_size": 2000, "batch_ms": 100}})


def start_hub(tmp: Path, kafka: dict[str, Any], name: str, env: dict[str, str], dsn: str) -> subprocess.Popen[bytes]:
    return spawn(["hub", "--config", str(hub_config(tmp, kafka, name))], {**env, "TRACKSIDE_PG_DSN": dsn},
                 tmp / f"{name}.log")


def poison(bootstrap: str, topics: dict[str, str]) -> None:
    """One bad message in each topic: not JSON, an unknown schema, a missing field, a NaN."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap})
    bad = {"power": b"this is not json", "crossings": b'{"event_id":"x:1","gateway_id":"x","seq":1,"schema":99}',
           "segments": b'{"event_id":"x:2","gateway_id":"x","seq":2,"schema":2,"session_id":"s","rider_id":"r"}',
           "sessions": b'{"event_id":"x:3","gateway_id":"x","seq":3,"schema":2,"session_id":"s","kind":"live",'
                       b'"started":NaN,"course":{},"riders":[]}'}
    for key, payload in bad.items():
        producer.produce(topics[key], value=payload, key=b"poison")
    assert producer.flush(10) == 0


def spool_union(states: dict[str, Path]) -> dict[str, dict[tuple[str, int], dict[str, Any]]]:
    """kind -> (gateway, seq) -> message, over every box's spool."""
    out: dict[str, dict[tuple[str, int], dict[str, Any]]] = {"power": {}, "crossing": {}, "segment": {}, "session": {}}
    for gateway, state in states.items():
        # Through the spool's reader: rows store their messages folded (gateway.wire.Encoder).
        spool = Spool(state / "spool.sqlite", gateway, readonly=True).open()
        for row in spool.queries.since(0):
            out[row.kind][(gateway, row.seq)] = row.message
        spool.close()
    return out


def assert_database_equals_spools(dsn: str, states: dict[str, Path]) -> dict[str, int]:
    want = spool_union(states)
    with psycopg.connect(dsn) as conn:
        power = {(g, s): (t, p) for g, s, t, p in conn.execute("SELECT gateway_id, seq, wall_time, power FROM power")}
        crossings = {(g, s): (t, gate) for g, s, t, gate in conn.execute(
            "SELECT gateway_id, seq, wall_time, gate FROM crossings")}
        segments = {(g, s): (n, d) for g, s, n, d in conn.execute(
            "SELECT gateway_id, seq, number, duration FROM segments")}
        sessions = {s for (s,) in conn.execute("SELECT session_id FROM sessions WHERE record IS NOT NULL "
                                                "AND kind <> 'course'")}  # the hub's own: a box's course
        total = conn.execute("SELECT (SELECT count(*) FROM power) + (SELECT count(*) FROM crossings) + "
                             "(SELECT count(*) FROM segments)").fetchone()[0]
    # Nothing lost, nothing twice, no phantom rows, values as stored on the boxes.
    assert power == {k: (m["wallTime"], m["instantPower"]) for k, m in want["power"].items()}
    assert crossings == {k: (m["wallTime"], m["gate"]) for k, m in want["crossing"].items()}
    assert segments == {k: (m["number"], m["duration"]) for k, m in want["segment"].items()}
    assert total == len(want["power"]) + len(want["crossing"]) + len(want["segment"])
    assert sessions == {m["session_id"] for m in want["session"].values()}
    # The hub's current results equal each box's own, session by session.
    hub = PgResults(lambda: psycopg.connect(dsn))
    try:
        for gateway, state in states.items():
            spool = Spool(state / "spool.sqlite", gateway, readonly=True).open()
            try:
                box = SpoolResults(spool)
                for s in box.sessions():
                    mine = sorted((r.rider_id, r.number, r.start, r.duration, r.power_avg, r.normalized_power)
                                  for r in box.results([s["session"]]))
                    theirs = sorted((r.rider_id, r.number, r.start, r.duration, r.power_avg, r.normalized_power)
                                    for r in hub.results([s["session"]]))
                    assert theirs == mine, s["session"]
            finally:
                spool.close()
    finally:
        hub.close()
    return {k: len(v) for k, v in want.items()}


def db_count(dsn: str) -> int:
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            return int(conn.execute("SELECT (SELECT count(*) FROM power) + (SELECT count(*) FROM crossings) + "
                                    "(SELECT count(*) FROM segments)").fetchone()[0])
    except psycopg.Error:
        return -1


def spools_total(states: dict[str, Path]) -> int:
    return sum(spool_rows(s / "spool.sqlite", "kind != 'session'") for s in states.values())


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_two_boxes_two_hubs_one_killed_mid_batch_and_poison_in_every_topic(
        tmp_path: Path, kafka: dict[str, Any], pg_dsn: str, gateway_env: dict[str, str]) -> None:
    boxes = Boxes(tmp_path, kafka, gateway_env)
    hubs = [start_hub(tmp_path, kafka, f"hub-{i}", gateway_env, pg_dsn) for i in (1, 2)]
    try:
        boxes.start()
        poison(kafka["bootstrap_servers"], kafka["topics"])
        wait_for(lambda: db_count(pg_dsn) > 3000, 60, "the hubs to write the first events")
        hubs[0].send_signal(signal.SIGKILL)  # mid-stream: whatever it had not committed is read again
        hubs[0].wait(10)
        wait_for(lambda: db_count(pg_dsn) > 8000, 60, "the surviving hub to carry on")
        hubs[0] = start_hub(tmp_path, kafka, "hub-1b", gateway_env, pg_dsn)  # and one rejoins
        boxes.stop()
        assert boxes.undelivered() == 0
        total = spools_total(boxes.states)
        wait_for(lambda: db_count(pg_dsn) == total, 90, "the hubs to catch up with both boxes")
        counts = assert_database_equals_spools(pg_dsn, boxes.states)
        assert counts["segment"] > 40 and counts["power"] > 8000
        with psycopg.connect(pg_dsn) as conn:
            dead = conn.execute("SELECT topic, reason FROM dead_letters ORDER BY topic").fetchall()
        reasons = dict(dead)
        assert len(dead) == 4
        assert "not JSON" in reasons[kafka["topics"]["power"]]
        assert "unknown schema version 99" in reasons[kafka["topics"]["crossings"]]
        assert "needs 'number'" in reasons[kafka["topics"]["segments"]]
        assert "not JSON" in reasons[kafka["topics"]["sessions"]]  # NaN is no JSON number
    finally:
        for proc in [*hubs, *boxes.procs.values()]:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def test_postgresql_stopped_and_started_during_the_stream(
        tmp_path: Path, kafka: dict[str, Any], pg_dsn: str, postgres_server: Any, gateway_env: dict[str, str]) -> None:
    boxes = Boxes(tmp_path, kafka, gateway_env)
    hub = start_hub(tmp_path, kafka, "hub-1", gateway_env, pg_dsn)
    try:
        boxes.start()
        wait_for(lambda: db_count(pg_dsn) > 2000, 60, "the hub to write the first events")
        postgres_server.stop("fast")
        time.sleep(4)  # the boxes keep sending; the hub keeps its batch and pauses
        assert hub.poll() is None
        postgres_server.start()
        boxes.stop()
        total = spools_total(boxes.states)
        wait_for(lambda: db_count(pg_dsn) == total, 90, "the hub to catch up after the database came back")
        assert_database_equals_spools(pg_dsn, boxes.states)
        assert "the database is away" in (tmp_path / "hub-1.log").read_text()
    finally:
        stop(hub)
        for proc in boxes.procs.values():
            if proc.poll() is None:
                proc.kill()


def test_the_broker_restarted_during_the_stream(
        tmp_path: Path, kafka: dict[str, Any], broker: Any, pg_dsn: str, gateway_env: dict[str, str]) -> None:
    boxes = Boxes(tmp_path, kafka, gateway_env)
    hub = start_hub(tmp_path, kafka, "hub-1", gateway_env, pg_dsn)
    try:
        boxes.start()
        wait_for(lambda: db_count(pg_dsn) > 2000, 60, "the hub to write the first events")
        broker.stop()
        time.sleep(3)  # the boxes spool meanwhile
        broker.start()
        wait_for(lambda: boxes.undelivered() == 0 and db_count(pg_dsn) > 4000, 90, "the stream to resume")
        boxes.stop()
        total = spools_total(boxes.states)
        wait_for(lambda: db_count(pg_dsn) == total, 90, "the hub to catch up after the broker came back")
        assert_database_equals_spools(pg_dsn, boxes.states)
    finally:
        stop(hub)
        for proc in boxes.procs.values():
            if proc.poll() is None:
                proc.kill()


def test_the_hub_page_serves_sessions_history_and_live_updates(
        tmp_path: Path, kafka: dict[str, Any], pg_dsn: str, gateway_env: dict[str, str]) -> None:
    boxes = Boxes(tmp_path, kafka, gateway_env, replay_factor=0.004)
    port = free_port()
    cfg = json.loads(hub_config(tmp_path, kafka, "hub-web").read_text())
    cfg["hub"].update(web=True, port=port, host="127.0.0.1")
    hub = spawn(["hub", "--config", str(write_config(tmp_path / "hub-web.yaml", cfg))],
                {**gateway_env, "TRACKSIDE_PG_DSN": pg_dsn}, tmp_path / "hub-web.log")
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> Any:
        with urllib.request.urlopen(base + path, timeout=5) as reply:
            return json.loads(reply.read())

    try:
        boxes.start()
        wait_for(lambda: db_count(pg_dsn) > 0 and _answers(base), 60, "the hub's page")
        # A live stream on the hub: results written by the consumer arrive as SSE events.
        first = get("/api/results")
        wait_for(lambda: len(get("/api/sessions")) >= 2, 90, "both boxes' sessions on the hub")
        sessions = get("/api/sessions")
        assert {s["gateway"] for s in sessions} == {"box-a", "box-b"}
        assert all(s["course"] == "demo-loop" for s in sessions)
        status = get("/api/status")["components"]["hub"]
        assert status["power_rows"] > 0 and set(status["last_event"]) == {"box-a", "box-b"}
        assert "password" not in json.dumps(status)
        from prometheus_client.parser import text_string_to_metric_families
        from test_prometheus import promtool_problems

        wait_for(lambda: get("/api/status")["components"]["hub"]["lag"], 30, "the consumer's lag")
        with urllib.request.urlopen(base + "/metrics", timeout=10) as reply:
            text = reply.read().decode()
        samples = {(x.name, tuple(sorted(x.labels.items()))): x.value
                   for f in text_string_to_metric_families(text) for x in f.samples}
        assert promtool_problems(text) == ""
        lags = [dict(labels) for name, labels in samples if name == "trackside_hub_consumer_lag_messages"]
        assert lags and all(set(lag) == {"topic", "partition"} and lag["partition"].isdigit() for lag in lags)
        assert samples[("trackside_hub_rows_written_total", (("table", "power"),))] > 0
        assert samples[("trackside_hub_database_connected", ())] == 1
        assert {k[1][0][1] for k in samples if k[0] == "trackside_hub_last_event_age_seconds"} == {"box-a", "box-b"}
        replay = next(s["session"] for s in sessions if s["kind"] == "replay")
        wait_for(lambda: len(get(f"/api/results?session={replay}")["results"]) >= 20, 90, "replay results")
        history = get(f"/api/results?session={replay}&population=all")
        assert history["population"] == "all" and history["course"]["id"] == "demo-loop"
        with urllib.request.urlopen(f"{base}/stream?last_id={first['last_seq']}", timeout=10) as stream:
            chunk = stream.read(4096).decode()
        assert "event: segment" in chunk and "id: " in chunk
        with urllib.request.urlopen(f"{base}/api/export?session={replay}&format=csv", timeout=10) as reply:
            assert reply.read().decode().startswith("\ufeffsession_id,session,rider_id")
        # Phones come and go: a burst of requests on fresh threads must not use up PostgreSQL's
        # connections (the hub's page keeps a small pool).
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: len(get(f"/api/results?session={replay}")["results"]), range(120)))
        assert min(answers) >= 20
        with psycopg.connect(pg_dsn) as conn:
            used = conn.execute("SELECT count(*) FROM pg_stat_activity "
                                "WHERE application_name = 'trackside-hub'").fetchone()
        assert used is not None and used[0] <= 6
    finally:
        stop(hub)
        for proc in boxes.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def _answers(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=2):
            return True
    except OSError:
        return False


def test_a_database_newer_than_the_hub_is_refused_in_one_line(
        tmp_path: Path, kafka: dict[str, Any], pg_dsn: str, gateway_env: dict[str, str]) -> None:
    from gateway.hub.schema import SCHEMA_VERSION, migrate

    with psycopg.connect(pg_dsn) as conn:
        migrate(conn)
        conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
        conn.commit()
    out = subprocess.run([sys.executable, "-m", "gateway", "hub", "--config",
                          str(hub_config(tmp_path, kafka, "old-hub"))], env={**gateway_env, "TRACKSIDE_PG_DSN": pg_dsn},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"newer than this hub's {SCHEMA_VERSION}" in out.stderr.strip().splitlines()[-1]


def test_credentials_never_come_from_the_yaml_nor_reach_the_log(tmp_path: Path, kafka: dict[str, Any],
                                                                 gateway_env: dict[str, str]) -> None:
    from gateway.hub.daemon import describe, read_dsn

    hub = config.parse("gateway: {id: h}\ncourse: {gates: [{id: SF}]}\nriders: []\n"
                       "hub: {dsn_env: MY_DSN}\n").settings.hub
    assert read_dsn(hub, {"MY_DSN": "host=db user=u password=s3cret dbname=t"}).endswith("dbname=t")
    assert "s3cret" not in describe("host=db user=u password=s3cret dbname=t")
    secret = tmp_path / "dsn"
    secret.write_text("postgresql://u:s3cret@db:5432/t\n")
    hub_file = config.parse(f"gateway: {{id: h}}\ncourse: {{gates: [{{id: SF}}]}}\nriders: []\n"
                            f"hub: {{dsn_file: '{secret}'}}\n").settings.hub
    assert read_dsn(hub_file, {}) == "postgresql://u:s3cret@db:5432/t"
    assert "s3cret" not in describe(read_dsn(hub_file, {}))
    # No key of the schema takes a password or a DSN: the YAML cannot hold one.
    with pytest.raises(Exception, match="unknown key"):
        config.parse("gateway: {id: h}\ncourse: {gates: [{id: SF}]}\nriders: []\nhub: {dsn: 'host=x password=y'}\n")


def test_hubs_starting_together_migrate_once_without_a_race(pg_dsn: str) -> None:
    """Two hubs of a group often start at the same moment (a reboot): both must come up."""
    import threading

    from gateway.hub.schema import SCHEMA_VERSION, migrate

    barrier = threading.Barrier(4)
    out: list[object] = []

    def start() -> None:
        with psycopg.connect(pg_dsn) as conn:
            barrier.wait(10)
            try:
                out.append(migrate(conn))
            except Exception as exc:
                out.append(exc)

    threads = [threading.Thread(target=start, name=f"hub-start-{i}") for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert out == [SCHEMA_VERSION] * 4
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (SCHEMA_VERSION,)
