"""Helpers for the fault tests: read back every topic and hold it against the spool."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Collection
from pathlib import Path


def spool_event_ids(path: Path) -> dict[str, tuple[str | None, int]]:
    """event_id -> (rider key, seq) of every row in a spool file (read-only, as the uplink reads it)."""
    from gateway.spool.store import Spool

    spool = Spool(path, "reader", readonly=True).open()
    try:
        return {json.loads(r.payload)["event_id"]: (r.rider_id, r.seq) for r in spool.queries.since(0)}
    finally:
        spool.close()


def consume(bootstrap: str, topics: list[str], expected: set[str], timeout: float = 90.0
            ) -> dict[tuple[str, int], list[tuple[str, str]]]:
    """Every message of ``topics`` per (topic, partition) in offset order, as (key, event_id),
    reading until every expected event id has been seen (or the timeout)."""
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{time.time_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    seen: set[str] = set()
    parts: dict[tuple[str, int], list[tuple[str, str]]] = defaultdict(list)
    try:
        consumer.subscribe(topics)
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            msgs = consumer.consume(10_000, timeout=0.5)
            for m in msgs:
                if m.error():
                    continue
                event_id = json.loads(m.value())["event_id"]
                parts[(m.topic(), m.partition())].append((m.key().decode(), event_id))
                seen.add(event_id)
            if msgs:
                quiet_since = time.monotonic()
            if expected <= seen and time.monotonic() - quiet_since > 1.0:
                break
    finally:
        consumer.close()
    return parts


def assert_exactly_once_in_order(bootstrap: str, topics: list[str], spool_path: Path, timeout: float = 90.0,
                                 dropped_may_arrive: bool = False, skip: Collection[int] = ()) -> int:
    """Every event of the spool arrived, exactly once after deduplication by event_id, in order per rider.

    With ``dropped_may_arrive``, events the drop_oldest policy removed from the spool while they
    were already in the producer's hands may arrive too (older than anything the spool kept).
    Events numbered in ``skip`` (set aside: never sent) are not expected.
    """
    expected = {k: v for k, v in spool_event_ids(spool_path).items() if v[1] not in skip}
    parts = consume(bootstrap, topics, set(expected), timeout)
    first_seen: dict[str, None] = {}
    for part in parts.values():
        last_seq_of_rider: dict[str, int] = {}
        for key, event_id in part:
            if event_id in first_seen:
                continue  # a re-send after a restart: consumers drop it by event_id
            first_seen[event_id] = None
            seq = int(event_id.rsplit(":", 1)[1])
            assert seq > last_seq_of_rider.get(key, -1), f"{event_id} arrived after a later event of {key}"
            last_seq_of_rider[key] = seq
    missing = set(expected) - set(first_seen)
    extra = set(first_seen) - set(expected)
    if dropped_may_arrive and expected:
        oldest_kept = min(seq for _, seq in expected.values())
        extra = {e for e in extra if int(e.rsplit(":", 1)[1]) >= oldest_kept}
    assert not missing, f"{len(missing)} accepted events never arrived, e.g. {sorted(missing)[:5]}"
    assert not extra, f"{len(extra)} events arrived that the spool does not hold, e.g. {sorted(extra)[:5]}"
    return len(expected)
