"""Forward the spool to Kafka: in order, a bounded window in flight, delivered only when acknowledged.

The spool is the source of truth. Rows are read in sequence order and produced with the rider id
as key (per-rider order within a partition) by an idempotent producer (acks=all). A row is
marked delivered only in its delivery callback. librdkafka retries in order for as long as the
broker is away (``message.timeout.ms`` = 0), so a rider's events never overtake each other; what
was in flight when the process stopped or the producer failed for good is sent again from the
spool (consumers deduplicate by ``event_id``). Ingest is never blocked: this runs on its own thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.spool.store import Row, Spool
from gateway.wire import TOPIC_KEYS, seq_of

log = logging.getLogger(__name__)



class _EveryMinute(logging.Filter):
    """librdkafka repeats a connection failure at every reconnect: one line a minute per kind is enough."""

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        kind = record.getMessage().split(" ", 1)[0]
        now = time.monotonic()
        if now - self._last.get(kind, -1e9) < 60.0:
            return False
        self._last[kind] = now
        return True


_librdkafka_log = logging.getLogger("gateway.kafka.librdkafka")
_librdkafka_log.addFilter(_EveryMinute())


@dataclass
class LinkState:
    connected: bool = False
    down_since: float | None = None
    last_error: str | None = None
    delivered: int = 0
    failed: int = 0
    reconnects: int = 0
    in_flight: int = 0
    backlog_rows: int = 0
    backlog_oldest: float | None = None
    topics_ready: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {k: v for k, v in self.__dict__.items() if k != "lock"}


class Forwarder:
    """Drains the spool to Kafka on a thread; ``link`` tells the status page how it goes."""

    def __init__(self, spool: Spool, kafka: dict[str, Any], *, window: int = 20_000, batch: int = 2_000,
                 prune_every_s: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self.spool = spool
        self.bootstrap = kafka["bootstrap_servers"]
        self.topics = {kind: kafka["topics"][key] for kind, key in TOPIC_KEYS.items()}
        self.extra = dict(kafka.get("properties") or {})
        self.window = window
        self.batch = batch
        self.prune_every_s = prune_every_s
        self.clock = clock
        self.link = LinkState(down_since=clock())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._producer: Any = None
        self._cursor = 0
        self._in_flight: set[int] = set()
        self._done: list[int] = []  # filled by callbacks, which run inside poll() on this thread
        self._fatal = False
        self._attempts: dict[int, int] = {}
        self._poisoned: set[int] = set()
        self._next_topic_try = 0.0
        self.stop_timeout = 10.0
        self.mark_every_s = 1.0
        self._acked: list[int] = []
        self._last_mark = 0.0

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> Forwarder:
        self._thread = threading.Thread(target=self._run, name="forwarder", daemon=True)
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Deliver what can be delivered within ``timeout``; the rest stays in the spool for next time."""
        self.stop_timeout = timeout
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout + 5)
            self._thread = None

    def _config(self) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "message.timeout.ms": 0,
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": max(self.window * 2, 100_000),
            "compression.type": "lz4",
            "reconnect.backoff.ms": 200,
            "reconnect.backoff.max.ms": 5_000,
            "error_cb": self._on_error,
            "on_delivery": self._on_delivery,
            "logger": _librdkafka_log,
            **self.extra,
        }

    def _new_producer(self) -> None:
        from confluent_kafka import Producer

        self._mark(force=True)
        self._producer = Producer(self._config())
        self._cursor = 0  # re-read from the oldest undelivered row
        self._in_flight.clear()
        self._fatal = False

    # -- callbacks (librdkafka threads) ------------------------------------------------------

    def _on_error(self, err: Any) -> None:
        from confluent_kafka import KafkaError

        code = err.code()
        with self.link.lock:
            self.link.last_error = f"{err.name()}: {err.str()}"
            if code == KafkaError._ALL_BROKERS_DOWN and self.link.connected:
                self.link.connected = False
                self.link.down_since = self.clock()
                log.warning("kafka: no broker reachable at %s; events wait in the spool", self.bootstrap)
        if err.fatal():
            log.error("kafka: fatal producer error %s; starting a new producer", err.str())
            self._fatal = True

    def _on_delivery(self, err: Any, msg: Any) -> None:
        # One callback for all messages (cheaper than a closure each): the sequence number is in
        # the message itself.
        seq = seq_of(msg.value())
        self._done.append(seq if err is None else -seq)

    # -- the loop ----------------------------------------------------------------------------

    def _run(self) -> None:
        next_prune = self.clock() + self.prune_every_s
        next_backlog = 0.0
        while not self._stop.is_set():
            try:
                if self._producer is None or self._fatal:
                    if self._producer is not None:
                        self.link.reconnects += 1
                    self._new_producer()
                self._ensure_topics()
                self._send_more()
                self._producer.poll(0.05)
                self._settle()
                self._mark()
                now = self.clock()
                if now >= next_backlog:
                    self._update_backlog()
                    next_backlog = now + 2.0
                if now >= next_prune:
                    self.spool.prune(now)
                    next_prune = now + self.prune_every_s
            except Exception as exc:  # keep forwarding whatever happens to one round
                log.exception("forwarder: %s", exc)
                with self.link.lock:
                    self.link.last_error = str(exc)
                self._stop.wait(1.0)
        self._shutdown()

    def _ensure_topics(self) -> None:
        if self.link.topics_ready or time.monotonic() < self._next_topic_try:
            return
        self._next_topic_try = time.monotonic() + 5.0
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap, **{k: v for k, v in self.extra.items()}})
        try:
            existing = set(admin.list_topics(timeout=2).topics)
            wanted = [NewTopic(t, num_partitions=3, replication_factor=-1)
                      for t in sorted(set(self.topics.values())) if t not in existing]
            for topic, future in admin.create_topics(wanted).items() if wanted else ():
                try:
                    future.result(timeout=10)
                    log.info("kafka: created topic %s", topic)
                except KafkaException as exc:
                    if "TOPIC_ALREADY_EXISTS" not in str(exc):
                        raise
            with self.link.lock:
                self.link.topics_ready = True
        except KafkaException as exc:
            with self.link.lock:
                self.link.last_error = f"topics: {exc}"
        finally:
            del admin

    def _send_more(self) -> None:
        room = self.window - len(self._in_flight)
        if room <= 0:
            return
        rows = self.spool.undelivered(self._cursor, min(room, self.batch))
        for row in rows:
            if row.seq not in self._in_flight and row.seq not in self._poisoned and not self._produce(row):
                break
            self._cursor = row.seq

    def _produce(self, row: Row) -> bool:
        key = row.rider_id or "unknown"
        try:
            self._producer.produce(self.topics[row.kind], value=row.payload, key=key)
        except BufferError:
            self._producer.poll(0.1)
            return False
        self._in_flight.add(row.seq)
        return True

    def _settle(self) -> None:
        done, self._done = self._done, []
        if not done:
            return
        ok = [s for s in done if s > 0]
        failed = [-s for s in done if s < 0]
        self._in_flight.difference_update(ok)
        self._in_flight.difference_update(failed)
        if ok:
            self._acked += ok
            with self.link.lock:
                if not self.link.connected:
                    log.info("kafka: connected to %s", self.bootstrap)
                self.link.connected = True
                self.link.down_since = None
                self.link.delivered += len(ok)
        if failed:
            # Only a permanent error gets here (no timeout is set): send again from the spool, but
            # set aside a row the broker refuses three times (it stays undelivered in the spool).
            with self.link.lock:
                self.link.failed += len(failed)
            for seq in failed:
                self._attempts[seq] = self._attempts.get(seq, 0) + 1
                if self._attempts[seq] >= 3:
                    self._poisoned.add(seq)
                    log.error("kafka: event %d refused 3 times (%s); kept in the spool, not sent again",
                              seq, self.link.last_error)
            self._cursor = min(self._cursor, min(failed) - 1)
        with self.link.lock:
            self.link.in_flight = len(self._in_flight)

    def _mark(self, force: bool = False) -> None:
        """Record deliveries in the spool about once a second: every mark rewrites spool pages, and
        an SD card counts writes. A crash in between only means those rows are sent again."""
        if self._acked and (force or len(self._acked) >= 20_000
                            or time.monotonic() - self._last_mark >= self.mark_every_s):
            if self.spool.mark_delivered(self._acked, self.clock()):
                self._acked = []
            self._last_mark = time.monotonic()

    def _update_backlog(self) -> None:
        rows, oldest = self.spool.backlog()
        with self.link.lock:
            self.link.backlog_rows = rows
            self.link.backlog_oldest = oldest
            self.link.in_flight = len(self._in_flight)

    def _shutdown(self) -> None:
        """Deliver what the spool still holds, for as long as the stop allows."""
        if self._producer is None:
            return
        deadline = time.monotonic() + self.stop_timeout
        while time.monotonic() < deadline:
            self._send_more()
            self._producer.poll(0.05)
            self._settle()
            if not self._in_flight and not self.spool.undelivered(self._cursor, 1):
                break
        self._mark(force=True)
        # What is still unacknowledged stays undelivered in the spool and is sent again next time.
        self._producer = None

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait (from another thread) until the spool has no undelivered rows; for tests and benchmarks."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.spool.backlog()[0] == 0:
                return True
            time.sleep(0.05)
        return False
