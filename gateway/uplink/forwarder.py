"""Forward the spool to Kafka: in order, a bounded window in flight, delivered only when acknowledged.

The spool is the source of truth. Rows are read in sequence order and offered to the output
(``KafkaOutput``: an idempotent producer, acks=all) with the rider id as key, so a rider's events
keep their order within a partition. The forwarder owns the policy: what to send next, what a
failure means (sent again from the spool; set aside after three refusals), when deliveries are
recorded (about once a second: every mark rewrites spool pages, and an SD card counts writes; a
crash in between only means those rows are sent again, and consumers deduplicate by
``event_id``). Ingest is never blocked: this runs on its own thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from gateway.config.settings import KafkaSettings
from gateway.spool.store import Row, Spool
from gateway.uplink.link import SAMPLE_EVERY, LinkState
from gateway.uplink.output import KafkaOutput
from gateway.uplink.topics import ensure_topics
from gateway.wire import TOPIC_KEYS

log = logging.getLogger(__name__)

REFUSALS = 3  # a row the broker refuses this many times is set aside (it stays in the spool)


class Forwarder:
    """Drains the spool to Kafka on a thread; ``link`` tells the status page how it goes."""

    def __init__(self, spool: Spool, kafka: KafkaSettings, *, window: int = 20_000, batch: int = 2_000,
                 prune_every_s: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self.spool = spool
        self.kafka = kafka
        self.topics = {kind: kafka.topics.get(key, key) for kind, key in TOPIC_KEYS.items()}
        self.client = {"bootstrap.servers": kafka.bootstrap_servers, **kafka.properties}
        self.window = window
        self.batch = batch
        self.prune_every_s = prune_every_s
        self.clock = clock
        self.link = LinkState(down_since=clock())
        self.stop_timeout = 10.0
        self.mark_every_s = 1.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._output: KafkaOutput | None = None
        self._cursor = 0
        self._in_flight: set[int] = set()
        self._sent_at: dict[int, float] = {}  # a sample of sending times, for the latency histogram
        self._refusals: dict[int, int] = {}
        self._set_aside: set[int] = set()
        self._acked: list[int] = []
        self._last_mark = 0.0
        self._next_topic_try = 0.0

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

    def _new_output(self) -> KafkaOutput:
        self._mark(force=True)
        self._cursor = 0  # re-read from the oldest undelivered row
        self._in_flight.clear()
        self._sent_at.clear()
        return KafkaOutput(self.client, self.link, self.clock, max(self.window * 2, 100_000))

    # -- the loop ----------------------------------------------------------------------------

    def _run(self) -> None:
        next_prune = self.clock() + self.prune_every_s
        next_backlog = 0.0
        while not self._stop.is_set():
            try:
                if self._output is None or self._output.fatal:
                    if self._output is not None:
                        self.link.reconnects += 1
                        self._output.close()
                    self._output = self._new_output()
                self._ensure_topics()
                self._send_more(self._output)
                self._settle(*self._output.poll(0.05))
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
        self.spool.release_thread()

    def _ensure_topics(self) -> None:
        if self.link.topics_ready or time.monotonic() < self._next_topic_try:
            return
        self._next_topic_try = time.monotonic() + 5.0
        from confluent_kafka import KafkaException

        try:
            ensure_topics(self.kafka, list(self.topics.values()), self.client)
            with self.link.lock:
                self.link.topics_ready = True
        except KafkaException as exc:
            with self.link.lock:
                self.link.last_error = f"topics: {exc}"

    def _send_more(self, output: KafkaOutput) -> None:
        room = self.window - len(self._in_flight)
        if room <= 0:
            return
        for row in self.spool.undelivered(self._cursor, min(room, self.batch)):
            if row.seq not in self._in_flight and row.seq not in self._set_aside and not self._offer(output, row):
                break  # RETRY: the local queue is full; the same row comes first next round
            self._cursor = row.seq

    def _offer(self, output: KafkaOutput, row: Row) -> bool:
        # Keyed by rider (a rider's events keep their order); session records by session (compacted).
        key = row.session_id if row.kind == "session" else row.rider_id
        if not output.offer(self.topics[row.kind], key or "unknown", row.payload):
            return False
        self._in_flight.add(row.seq)
        if row.seq % SAMPLE_EVERY == 0:
            self._sent_at[row.seq] = time.monotonic()
        return True

    def _settle(self, ok: list[int], failed: list[int]) -> None:
        if not ok and not failed:
            return
        self._in_flight.difference_update(ok)
        self._in_flight.difference_update(failed)
        if ok:
            self._acked += ok
            with self.link.lock:
                if not self.link.connected:
                    log.info("kafka: connected to %s", self.kafka.bootstrap_servers)
                self.link.connected = True
                self.link.down_since = None
                self.link.delivered += len(ok)
                if self._sent_at:
                    now = time.monotonic()
                    for seq in ok:
                        sent = self._sent_at.pop(seq, None) if seq % SAMPLE_EVERY == 0 else None
                        if sent is not None:
                            self.link.observe(now - sent)
        if failed:
            # Only a permanent error gets here (no timeout is set): send again from the spool, but
            # set aside a row the broker refuses three times (it stays undelivered in the spool).
            with self.link.lock:
                self.link.failed += len(failed)
            for seq in failed:
                self._refusals[seq] = self._refusals.get(seq, 0) + 1
                if self._refusals[seq] >= REFUSALS:
                    self._set_aside.add(seq)
                    log.error("kafka: event %d refused %d times (%s); kept in the spool, not sent again",
                              seq, REFUSALS, self.link.last_error)
            self._cursor = min(self._cursor, min(failed) - 1)
        with self.link.lock:
            self.link.in_flight = len(self._in_flight)

    def _mark(self, force: bool = False) -> None:
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
        output = self._output
        if output is None:
            return
        deadline = time.monotonic() + self.stop_timeout
        while time.monotonic() < deadline:
            self._send_more(output)
            self._settle(*output.poll(0.05))
            if not self._in_flight and not self.spool.undelivered(self._cursor, 1):
                break
        self._mark(force=True)
        # What is still unacknowledged stays undelivered in the spool and is sent again next time.
        output.close()
        self._output = None


def status(forwarder: Forwarder | None) -> dict[str, Any]:
    return {"enabled": False} if forwarder is None else {"enabled": True, **forwarder.link.snapshot()}
