"""`hub --processes 2` against real parts (#35): two boxes forwarding to a real broker, one hub
command running two consuming processes in the group (and itself, serving the page), a real
PostgreSQL server. A worker killed mid-stream comes back by itself; the database ends equal to the
boxes' spools; the hub's status is its workers' together; the hub stops with its workers."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest
from harness import spawn, wait_for
from test_hub import Boxes, assert_database_equals_spools, db_count, hub_config, spools_total

pytestmark = pytest.mark.kafka


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid and stat[0] != "Z":
                out.append(int(entry))
    return out


def _members(bootstrap: str, group: str) -> int:
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        described = admin.describe_consumer_groups([group])[group].result(10)
    except KafkaException:
        return 0  # the group's coordinator is still loading: ask again
    return len(described.members)


def _status(state: Path) -> dict[str, Any]:
    from gateway.watch.supervise import read_status_file

    return dict(((read_status_file(state) or {}).get("components") or {}).get("hub") or {})


def test_two_processes_share_the_group_and_a_killed_worker_comes_back(
        tmp_path: Path, kafka_bootstrap: str, pg_dsn: str, gateway_env: dict[str, str]) -> None:
    tag = uuid.uuid4().hex[:8]
    kafka: dict[str, Any] = {"enabled": True, "bootstrap_servers": kafka_bootstrap, "partitions": 4,
                             "topics": {k: f"{k}-{tag}" for k in ("power", "crossings", "segments", "sessions")},
                             "properties": {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}}
    boxes = Boxes(tmp_path, kafka, gateway_env)
    group = f"g-{kafka['topics']['power']}"
    hub = spawn(["hub", "--config", str(hub_config(tmp_path, kafka, "hub-p")), "--processes", "2"],
                {**gateway_env, "TRACKSIDE_PG_DSN": pg_dsn}, tmp_path / "hub-p.log")
    try:
        boxes.start()
        # Two consuming workers; the main process serves the page and is no member of the group.
        wait_for(lambda: len(_children(hub.pid)) == 2, 30, "the hub's two worker processes")
        wait_for(lambda: _members(kafka_bootstrap, group) == 2, 60, "two consumers in the group")
        wait_for(lambda: db_count(pg_dsn) > 3000, 90, "the first events in the database")
        first = _children(hub.pid)
        worker = first[0]
        os.kill(worker, signal.SIGKILL)  # mid-stream: what it had not committed is read again
        wait_for(lambda: len(set(_children(hub.pid)) - set(first)) == 1, 30, "the worker started again")
        wait_for(lambda: _members(kafka_bootstrap, group) == 2, 60, "the worker back in the group")
        boxes.stop()
        assert boxes.undelivered() == 0
        total = spools_total(boxes.states)
        wait_for(lambda: db_count(pg_dsn) == total, 120, "the hub's processes to catch up with both boxes")
        assert_database_equals_spools(pg_dsn, boxes.states)
        log = (tmp_path / "hub-p.log").read_text()
        assert "hub worker 2 started" in log and "exited with -9; starting it again" in log
        # The hub's status (the page's, and `status`'s) is the two workers' together: every partition
        # of the group, the rows they wrote (a killed worker's as its status file last said them).
        every = {f"{kafka['topics']['power']}[{p}]" for p in range(4)}
        state = tmp_path / "hub-p-state"
        wait_for(lambda: _status(state).get("processes") == 2 and every <= set(_status(state)["assigned"]), 30,
                 "both workers and every partition in the hub's status")
        status = _status(state)
        assert 0 < status["power_rows"] + status["crossing_rows"] + status["segment_rows"] <= total
        # The hub stops with its workers: SIGTERM to the main process, all gone, exit 0.
        workers = _children(hub.pid)
        hub.send_signal(signal.SIGTERM)
        assert hub.wait(60) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in workers), "a worker outlived the hub"
    finally:
        for proc in [hub, *boxes.procs.values()]:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_workers_stop_when_their_hub_is_killed(tmp_path: Path, kafka_bootstrap: str, pg_dsn: str,
                                               gateway_env: dict[str, str]) -> None:
    """Outside systemd (whose cgroup takes every process) a hub killed outright left its workers
    consuming, unwatched, for good: each now sees its parent gone within a second and stops."""
    tag = uuid.uuid4().hex[:8]
    kafka: dict[str, Any] = {"enabled": True, "bootstrap_servers": kafka_bootstrap, "partitions": 2,
                             "topics": {k: f"{k}-{tag}" for k in ("power", "crossings", "segments", "sessions")}}
    hub = spawn(["hub", "--config", str(hub_config(tmp_path, kafka, "hub-k")), "--processes", "2"],
                {**gateway_env, "TRACKSIDE_PG_DSN": pg_dsn}, tmp_path / "hub-k.log")
    workers: list[int] = []
    try:
        wait_for(lambda: len(_children(hub.pid)) == 2, 30, "the hub's two workers")
        workers = _children(hub.pid)
        hub.kill()
        hub.wait(10)
        wait_for(lambda: not any(_alive(pid) for pid in workers), 30, "the orphaned workers to stop")
        assert (tmp_path / "hub-k.log").read_text().count("is gone: stopping") == 2
    finally:
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if hub.poll() is None:
            hub.kill()
            hub.wait(30)
