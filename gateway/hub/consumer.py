"""The hub's Kafka consumer: one group, every box's topics, each poll written in one transaction and
only then committed. At-least-once from Kafka plus idempotent writes is each event once in the
database. A message that is not a valid event goes to ``dead_letters`` with its bytes, place and
reason, and the stream goes on. While PostgreSQL is away the batch is kept, the partitions are
paused (the consumer stays in its group) and the write is tried again until it goes through.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from gateway.config.settings import Settings
from gateway.hub.batchwrite import BatchWriter
from gateway.hub.plausible import PowerChecks, message_problem
from gateway.hub.writer import Batch, Written
from gateway.model import GateCrossing, SegmentResult, SessionRecord
from gateway.wire import TOPIC_KEYS, Decoded, WireError, decode, decode_power, session_body, typed

log = logging.getLogger(__name__)

GATEWAYS_SHOWN = 1000  # boxes whose last event the status and the metrics list
PARTITION_EOF = -191  # librdkafka's KafkaError._PARTITION_EOF: the end of a partition, not an error


def crossing_row(decoded: Decoded, session: str) -> tuple[Any, ...]:
    """A crossing as its table's row (writer.CROSSING_COLUMNS order)."""
    m, c = decoded.message, decoded.event
    assert isinstance(c, GateCrossing)
    return (m.gateway_id, m.seq, session, decoded.rider_id, c.wall_time, c.transponder, c.gate, c.source or None,
            c.lap, c.receiver_time, m.spool_id)


def segment_row(decoded: Decoded, session: str) -> tuple[Any, ...]:
    """A segment result as its table's row (writer.SEGMENT_COLUMNS order)."""
    m, r = decoded.message, decoded.event
    assert isinstance(r, SegmentResult)
    return (m.gateway_id, m.seq, session, r.rider_id, r.name, r.number, r.lap, r.segment, r.start, r.end, r.duration,
            r.start_gate, r.end_gate, r.power_avg, r.cadence_avg, r.normalized_power, r.intensity_factor, r.tss,
            r.watts_per_kg, r.samples, r.coverage, [str(f) for f in r.flags], r.np_window, "withdrawn" in r.flags,
            m.spool_id)


def _seen(spools: dict[tuple[str, str], list[float]], key: tuple[str, str], wall: float) -> None:
    agg = spools.get(key)
    if agg is None:
        spools[key] = [1, wall, wall]
        return
    agg[0] += 1
    if wall < agg[1]:
        agg[1] = wall
    elif wall > agg[2]:
        agg[2] = wall


@dataclass
class _InFlight:
    """A batch handed to the writer (``future`` None: to be written again), its messages, and where it ends."""

    future: Future[Written] | None
    batch: Batch
    ends: list[Any]
    messages: list[Any]


@dataclass
class HubStats:
    """What the hub's status shows: rows written, dead letters, lag per partition, last event per box."""

    written: Written = field(default_factory=Written)
    batches: int = 0
    dead_letters: int = 0
    lag: dict[str, dict[str, int]] = field(default_factory=dict)  # topic -> partition -> messages behind
    last_event: dict[str, float] = field(default_factory=dict)  # gateway -> when the hub last received its events
    db_connected: bool = False
    db_error: str | None = None
    assigned: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            w = self.written
            return {"power_rows": w.power, "crossing_rows": w.crossings, "segment_rows": w.segments,
                    "duplicates_skipped": w.duplicates, "dead_letters": self.dead_letters, "batches": self.batches,
                    "lag": {t: dict(p) for t, p in self.lag.items()}, "last_event": dict(self.last_event),
                    "db_connected": self.db_connected, "db_error": self.db_error, "assigned": list(self.assigned)}


class HubConsumer:
    def __init__(self, settings: Settings, connect: Callable[[], Any], *, client: str = "hub") -> None:
        self.settings = settings
        self.connect = connect
        self.kinds = {settings.kafka.topics.get(key, key): kind for kind, key in TOPIC_KEYS.items()}
        self.stats = HubStats()
        self.client = client
        self._batches = BatchWriter(connect, self.decode)
        self._pending: _InFlight | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._next_lag = 0.0
        # Told each batch once it is written (the hub's course engine: ``hub.coursework``).
        self.on_written: Callable[[list[Any], list[Any]], None] | None = None
        # Told when partitions go, after the batch in flight is written; returns once it has written
        # what it owes (the partitions' next owner starts from there).
        self.on_revoked: Callable[[], None] | None = None

    def _consumer(self) -> Any:
        from confluent_kafka import Consumer

        hub = self.settings.hub
        return Consumer({
            "bootstrap.servers": self.settings.kafka.bootstrap_servers,
            "group.id": hub.group_id,
            "client.id": self.client,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            # By range: a hub gets the same partitions of every topic, so with equal partition counts
            # (the box creates them so) a rider's power and crossings, keyed by rider, reach one hub:
            # the course engine needs both. Cooperative-sticky spreads each topic on its own.
            "partition.assignment.strategy": "range",
            # A hub that dies (kill -9, a power cut) is noticed after this, and its partitions go to
            # the others: librdkafka's 45 s left the page without new results for most of a minute.
            # The brokers' group.min.session.timeout.ms (6 s by default) is the floor.
            "session.timeout.ms": 8000,
            "heartbeat.interval.ms": 2000,
            # Large fetches: a backlog of millions of small messages is read in few round trips.
            "fetch.min.bytes": 262144,
            "fetch.wait.max.ms": 100,
            "max.partition.fetch.bytes": 8388608,
            # A fetch's whole response stays in memory while any of its messages is held: librdkafka's
            # 50 MB took a hub catching up three boxes' hour to 0.93 GB; 16 MB to 0.50 GB, as fast.
            "fetch.max.bytes": 16777216,
            "queued.max.messages.kbytes": 262144,
            "logger": logging.getLogger("gateway.kafka.librdkafka"),
            **self.settings.kafka.properties,
        })

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; the last written batch is committed, nothing is lost.

        Two batches are in hand at once: one is written on the writer thread (PostgreSQL works on
        its own core meanwhile) while the next is read and decoded here. Offsets are committed
        only once their batch's transaction has committed."""
        consumer = self._consumer()
        consumer.subscribe(list(self.kinds), on_assign=self._on_assign, on_revoke=self._on_revoke,
                           on_lost=self._on_revoke)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="hub-writer")
        try:
            while not stop.is_set():
                messages = consumer.consume(num_messages=self.settings.hub.batch_size,
                                            timeout=self.settings.hub.batch_ms / 1000.0)
                if messages:
                    # Where this batch ends, taken now: the next consume moves the positions on.
                    ends = [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]
                    batch = self.decode(messages)
                    self._settle(consumer, stop)
                    self._pending = _InFlight(self._writer.submit(self._batches.write, batch, messages), batch, ends,
                                              messages)
                else:
                    self._settle(consumer, stop)
                self._update_lag(consumer)
            self._settle(consumer, stop)
        finally:
            self._writer.shutdown(wait=True)
            consumer.close()  # leaves the group: its partitions go to the others at once
            self._batches.close()

    def _settle(self, consumer: Any, stop: threading.Event, *, in_callback: bool = False) -> None:
        """Wait for the batch in flight and commit its offsets. If the database was away, the batch
        is written again until it goes in (in a rebalance callback, where the consumer may not be
        polled, it is kept for the loop to retry instead); only stopping abandons it, uncommitted."""
        import psycopg

        pending, self._pending = self._pending, None
        if pending is None:
            return
        try:
            if pending.future is None:
                raise psycopg.OperationalError("retry")
            self._record(pending.future.result(), pending.batch)
        except psycopg.OperationalError as exc:
            if pending.future is not None:
                self._database_away(exc)
            if in_callback:
                self._pending = _InFlight(None, pending.batch, pending.ends, pending.messages)
                return
            if not self._write(pending.batch, pending.messages, consumer, stop):
                return
        self._commit(consumer, pending.ends)

    def decode(self, messages: list[Any]) -> Batch:
        batch = Batch()
        kinds = self.kinds
        power_rows = batch.power
        sessions = batch.seen_sessions
        spools = batch.spools
        now = time.time()
        checks = PowerChecks(now)
        run = ("", "", "")  # the box, spool and session of the last power message: a run of them costs one lookup
        agg: list[float] = []
        for msg in messages:
            err = msg.error()
            if err is not None:  # an event of the client (its value is the error text), not a message
                if err.code() != PARTITION_EOF:
                    log.warning("kafka: %s", err.str())
                continue
            payload = msg.value()
            if payload is None:
                continue  # a tombstone on the compacted sessions topic
            kind = kinds.get(msg.topic())
            if kind != "power":
                self._decode_other(batch, msg, payload, kind, now)
                continue
            try:  # most of the stream: the fast decoder, straight into a row
                p = decode_power(payload)
                bad = checks.problem(p)
                if bad is not None:
                    raise WireError(bad)
            except WireError as exc:
                batch.dead.append((msg.topic(), msg.partition(), msg.offset(), payload, exc.reason))
                continue
            gateway, session, spool, wall = p.gateway_id, p.session_id or "", p.spool_id, p.wallTime
            power_rows.append((gateway, p.seq, session, p.rider_id, wall, p.instantPower,
                               p.cadence, p.torque, p.source, bool(p.implausible), p.raw, spool))
            if gateway != run[0] or spool != run[1] or session != run[2]:
                run = (gateway, spool, session)
                sessions[session] = (gateway, spool)
                agg = spools.setdefault((gateway, spool), [0, wall, wall])
            agg[0] += 1
            if wall < agg[1]:
                agg[1] = wall
            elif wall > agg[2]:
                agg[2] = wall
        self._note_seen(batch, now)
        return batch

    @staticmethod
    def _decode_other(batch: Batch, msg: Any, payload: bytes, kind: str | None, now: float) -> None:
        """A crossing, a segment result or a session record into its row (or the dead letters)."""
        try:
            if kind is None:
                raise WireError(f"no event kind is read from topic {msg.topic()!r}")
            message = decode(payload, kind)
            bad = message_problem(kind, message.fields, message.gateway_id, message.session_id, now)
            if bad is not None:
                raise WireError(bad)
            decoded = typed(message, kind)
            event = decoded.event
            session = message.session_id or ""
            row: Any
            if isinstance(event, SessionRecord):
                row, wall = session_body(event), event.started
            elif isinstance(event, GateCrossing):
                row, wall = crossing_row(decoded, session), event.wall_time
            elif isinstance(event, SegmentResult):
                row, wall = segment_row(decoded, session), event.end
            else:  # a power sample off the power topic
                raise WireError(f"a {kind} message on topic {msg.topic()!r} carries a power sample")
        except WireError as exc:
            batch.dead.append((msg.topic(), msg.partition(), msg.offset(), payload, exc.reason))
            return
        except (TypeError, ValueError, KeyError, AttributeError) as exc:  # a shape no check here foresaw
            batch.dead.append((msg.topic(), msg.partition(), msg.offset(), payload,
                               f"not a {kind} the hub can read ({type(exc).__name__}: {str(exc)[:200]})"))
            return
        owner = (message.gateway_id, message.spool_id)
        batch.seen_sessions[session] = owner
        _seen(batch.spools, owner, wall)
        if isinstance(event, SessionRecord):
            batch.sessions[(session, *owner)] = (message.seq, row, (msg.topic(), msg.partition(), msg.offset()))
        else:
            (batch.crossings if isinstance(event, GateCrossing) else batch.segments).append(row)

    def _note_seen(self, batch: Batch, now: float) -> None:
        """When the hub last received each box's events (its own clock: a box's may be off or replaying
        last month), keeping the newest ``GATEWAYS_SHOWN`` boxes heard within a week (a flood of made-up
        gateway ids must not grow the status and the metrics' labels without end)."""
        with self.stats.lock:
            seen = self.stats.last_event
            for gateway, _spool in batch.spools:
                seen.pop(gateway, None)
                seen[gateway] = now  # re-inserted: the dict keeps the newest last
            while seen and (len(seen) > GATEWAYS_SHOWN or next(iter(seen.values())) < now - 7 * 86_400):
                seen.pop(next(iter(seen)))

    def _write(self, batch: Batch, messages: list[Any], consumer: Any, stop: threading.Event) -> bool:
        """Write ``batch`` until it is in, partitions paused meanwhile; False if stopping first."""
        import psycopg
        from confluent_kafka import TopicPartition

        paused: list[Any] = []
        wait = 0.5
        try:
            while True:
                if not paused:
                    paused = consumer.assignment()
                    consumer.pause(paused)
                deadline = time.monotonic() + wait
                while time.monotonic() < deadline and not stop.is_set():
                    msg = consumer.poll(0.1)  # keeps the group membership while paused
                    if msg is not None and msg.error() is None:
                        # A partition assigned meanwhile is not paused: read its message again later.
                        consumer.seek(TopicPartition(msg.topic(), msg.partition(), msg.offset()))
                        consumer.pause(consumer.assignment())
                if stop.is_set():
                    return False  # not committed: read again by whoever owns the partitions
                wait = min(wait * 2, 5.0)
                try:
                    self._record(self._batches.write(batch, messages), batch)
                    return True
                except psycopg.OperationalError as exc:
                    self._database_away(exc)
        finally:
            if paused:
                consumer.resume([tp for tp in paused if tp in set(consumer.assignment())])

    def _record(self, written: Written, batch: Batch) -> None:
        if self.on_written is not None:
            self.on_written(batch.power, batch.crossings)
        with self.stats.lock:
            self.stats.db_connected, self.stats.db_error = True, None
            self.stats.written.add(written)
            self.stats.dead_letters += written.dead
            self.stats.batches += 1
        if written.dead:
            log.warning("hub: %d message(s) set aside as dead letters", written.dead)

    def _database_away(self, exc: Exception) -> None:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        with self.stats.lock:
            self.stats.db_connected, self.stats.db_error = False, first
        log.warning("hub: the database is away (%s); the batch waits, partitions paused", first)
        self._batches.close()

    def _commit(self, consumer: Any, offsets: list[Any]) -> None:
        """Commit where a written batch ends."""
        from confluent_kafka import KafkaException

        if not offsets:
            return
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # Revoked meanwhile: the rows are written; the next owner reads them again and skips them.
            log.info("hub: offsets not committed (%s)", exc)

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        with self.stats.lock:
            self.stats.assigned = sorted({*self.stats.assigned, *(f"{p.topic}[{p.partition}]" for p in partitions)})

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        # The batch in flight is finished and committed before the partitions go, so their next
        # owner starts where this hub's writes end.
        self._settle(consumer, threading.Event(), in_callback=True)
        if self.on_revoked is not None:
            self.on_revoked()
        gone = {f"{p.topic}[{p.partition}]" for p in partitions}
        with self.stats.lock:
            self.stats.assigned = [a for a in self.stats.assigned if a not in gone]
            for p in partitions:
                self.stats.lag.get(p.topic, {}).pop(str(p.partition), None)

    def _update_lag(self, consumer: Any) -> None:
        if time.monotonic() < self._next_lag:
            return
        self._next_lag = time.monotonic() + 2.0
        lag: list[tuple[str, str, int]] = []
        for tp in consumer.assignment():
            try:
                _, high = consumer.get_watermark_offsets(tp, timeout=0.5, cached=True)
                position = consumer.position([tp])[0].offset
            except Exception:  # the broker is away: keep the last figures
                continue
            if position >= 0 and high >= 0:
                lag.append((tp.topic, str(tp.partition), max(high - position, 0)))
        with self.stats.lock:
            for topic, partition, n in lag:
                self.stats.lag.setdefault(topic, {})[partition] = n
