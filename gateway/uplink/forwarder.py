"""Forward the spool to Kafka: in order, a bounded window in flight, delivered only when acknowledged.

The spool is the source of truth. Rows are read in sequence order and offered to the output
(``KafkaOutput``: an idempotent producer, acks=all, gapless) with the rider id as key, so a rider's
events keep their order within a partition. The forwarder owns the policy: what to send next, what
a failure means, when deliveries are recorded.

Deliveries are a watermark. With an idempotent, gapless producer a delivered message proves that
every earlier message of its partition was delivered, so each batch asks for one report per rider
(per topic and key), not one per message; once every report of a batch (and of all batches before
it) is in, the watermark moves to its last row. The spool records the watermark about once a
second: one small row, not a rewrite of every delivered row. A crash in between only means those
rows are sent again; consumers deduplicate by ``event_id``.

A failure (or a fatal producer error) switches to a careful mode for the rows then in flight: a
new producer without the gapless rule and one report per message, so the row at fault is known.
A row the broker refuses three times is set aside (kept in the spool, listed, offered again at the
next start) and the watermark passes it. Ingest is never blocked: this runs on its own thread.
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable
from typing import Any

from gateway.config.settings import KafkaSettings
from gateway.spool.outbox import Outgoing
from gateway.spool.store import Spool
from gateway.uplink.link import LinkState
from gateway.uplink.output import KafkaOutput, Output, OutputFactory
from gateway.uplink.topics import ensure_topics
from gateway.wire import TOPIC_KEYS, key_of

log = logging.getLogger(__name__)

REFUSALS = 3  # a row the broker refuses this many times is set aside (it stays in the spool)


class _Batch:
    """Messages offered in one round: the watermark may pass ``last`` once ``waiting`` reports are in."""

    __slots__ = ("last", "size", "waiting")

    def __init__(self, last: int, size: int, waiting: int) -> None:
        self.last = last
        self.size = size
        self.waiting = waiting


class Forwarder:
    """Drains the spool to Kafka on a thread; ``link`` tells the status page how it goes."""

    def __init__(self, spool: Spool, kafka: KafkaSettings, *, window: int = 100_000, batch: int = 5_000,
                 prune_every_s: float = 60.0, clock: Callable[[], float] = time.time,
                 output: OutputFactory | None = None) -> None:
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
        self._make_output = output or self._kafka_output
        # A scripted output (tests) has no broker to make topics on.
        self.link.topics_ready = output is not None
        self._output: Output | None = None
        self._cursor = 0  # the last row offered
        self._watermark = 0  # every row up to here is acknowledged (or set aside)
        self._batches: deque[_Batch] = deque()
        self._in_flight = 0
        self._careful_until = 0  # one report per message up to this row (after a failure)
        self._restart = False
        self._refusals: dict[int, int] = {}
        self._set_aside: set[int] = set()
        self._retry_set_aside = True
        self._offered_aside: set[int] = set()  # set aside before, offered again at this start
        self._last_mark = 0.0
        self._behind = False  # draining a backlog (full batches), until caught up
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

    def _kafka_output(self, gapless: bool) -> Output:
        return KafkaOutput(self.client, self.link, self.clock, max(self.window * 2, 100_000), gapless=gapless)

    def _new_output(self) -> Output:
        self._mark(force=True)
        if self._output is not None:
            self._output.close()
        # Everything after the watermark is offered again (what the old producer had delivered out
        # of order is sent twice: at least once).
        self._watermark = max(self._watermark, self.spool.ledger.delivered_through())
        if self._restart:  # after a failure: one report per message for what was in flight
            self._careful_until = max(self._careful_until, self._cursor)
        self._cursor = self._watermark
        self._batches.clear()
        self._in_flight = 0
        self._restart = False
        careful = self._careful_until > self._watermark
        if careful:
            log.info("kafka: one report per event up to event %d (after a failure)", self._careful_until)
        return self._make_output(not careful)

    # -- the loop ----------------------------------------------------------------------------

    def _run(self) -> None:
        next_prune = self.clock() + self.prune_every_s
        next_backlog = 0.0
        while not self._stop.is_set():
            try:
                if self._output is None or self._output.fatal or self._restart:
                    if self._output is not None:
                        self.link.reconnects += 1
                        self._restart = True
                    self._output = self._new_output()
                self._ensure_topics()
                self._send_set_aside(self._output)
                sent = self._send_more(self._output)
                # Wait for reports only when there is nothing more to send.
                self._settle(self._output.poll(0.0 if sent else 0.05))
                # Once a second, and at once when a backlog has just drained (the status says so then;
                # live, batches are never full, and the card sees one mark a second).
                caught_up = self._behind and not sent and self._in_flight == 0
                self._mark(force=caught_up)
                self._behind = self._behind and not caught_up
                now = self.clock()
                if now >= next_backlog:
                    self._update_backlog()
                    next_backlog = now + 2.0
                if now >= next_prune:
                    self.spool.appender.prune(now)
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

    def _send_set_aside(self, output: Output) -> None:
        """Once per start: offer the rows set aside before (the broker's limits may have changed)."""
        if not self._retry_set_aside:
            return
        self._retry_set_aside = False
        rows = [(row.seq, self.topics[row.kind], key_of(row.kind, row.rider_id, row.session_id), row.payload,
                 row.crc) for row in self.spool.outbox.set_aside_rows()]
        self._offered_aside = {seq for seq, *_ in rows}
        tickets = {seq: (None, seq, 0.0) for seq, *_ in rows}
        for row in rows:  # one at a time: one still refused as offered must not keep the others back
            while output.offer([row], tickets) == 0:
                if output.refused:
                    self._set_aside_refused(output)
                    break
                if self._stop.is_set() or output.fatal:
                    self._restart = True
                    return

    def _send_more(self, output: Output) -> bool:
        """Offer the next batch within the window; False when there was nothing to offer."""
        room = self.window - self._in_flight
        if room <= 0 or self._restart:
            return False
        pending = self.spool.outbox.pending(self._cursor, min(room, self.batch), self.topics)
        count = pending.size
        if not count:
            return False
        first, end = pending.first, pending.end
        self._behind = self._behind or count >= self.batch  # a full batch: there is a backlog
        if first <= self._careful_until or any(first <= seq <= end for seq in self._set_aside):
            self._send_rows(output, pending.flat())
            return True
        # The last message of each (topic, key) carries the report for its whole group.
        last = {(topic, key): seq for seq, topic, key, _message, _crc in pending.rows}
        last_sample: dict[str, int] = {}
        for samples in pending.samples:
            last_sample.update(zip(samples.keys, samples.seqs, strict=True))
        for key in last_sample:  # power samples stored as rows (before schema 7) come first
            last.pop((pending.power_topic, key), None)
        sent = time.monotonic()
        batch = _Batch(end, count, len(last) + len(last_sample))
        self._batches.append(batch)
        self._in_flight += count
        self._cursor = end
        if pending.rows:
            self._put(output, pending.rows, {seq: (batch, seq, sent) for seq in last.values()})
        reported = sorted(last_sample.values())
        for samples in pending.samples:
            if self._restart:
                break
            seqs = samples.seqs
            mine = reported[bisect_left(reported, seqs[0]):bisect_right(reported, seqs[-1])]
            reports = [(bisect_left(seqs, seq), (batch, seq, sent)) for seq in mine]
            if not output.offer_run(pending.power_topic, samples.keys, samples.messages, reports):
                self._restart = True  # part of a batch offered: start again from the watermark
                if output.refused_unknown:  # one sample at a time finds the one refused
                    self._careful_until = max(self._careful_until, end)
        return True

    def _send_rows(self, output: Output, rows: list[Outgoing]) -> None:
        """Offer rows one by one: after a failure (one report per message, so the row at fault is
        known) or with rows set aside in the range (the watermark passes them)."""
        careful = rows[0][0] <= self._careful_until
        if careful:
            rows = [r for r in rows if r[0] <= self._careful_until]
        end = rows[-1][0]
        if self._set_aside:
            rows = [r for r in rows if r[0] not in self._set_aside]
        sent = time.monotonic()
        if careful:
            batch = _Batch(end, len(rows), len(rows))
            tickets = {r[0]: (batch, r[0], sent) for r in rows}
        else:
            last = {(topic, key): seq for seq, topic, key, _payload, _crc in rows}
            batch = _Batch(end, len(rows), len(last))
            tickets = {seq: (batch, seq, sent) for seq in last.values()}
        self._batches.append(batch)
        self._in_flight += batch.size
        self._cursor = end
        if rows:
            self._put(output, rows, tickets)
        elif len(self._batches) == 1:
            self._advance()  # only rows set aside: nothing to wait for

    def _put(self, output: Output, rows: list[Outgoing], tickets: dict[int, Any]) -> None:
        """Offer rows, waiting for room in the producer's queue (this thread has nothing else to do)."""
        done = output.offer(rows, tickets)
        while done < len(rows):
            if self._stop.is_set() or output.fatal or output.refused:
                # A batch half offered cannot be accounted for: start again from the watermark.
                self._restart = True
                self._set_aside_refused(output)
                return
            done = output.offer(rows, tickets, done)

    def _set_aside_refused(self, output: Output) -> None:
        """Messages the producer refused as offered (too large, ...) will be refused again: set aside
        at once (kept in the spool, counted, offered again at the next start), so that one message
        never stops the stream."""
        refused, output.refused = output.refused, []
        for seq, error in refused:
            with self.link.lock:
                self.link.failed += 1
                self.link.last_error = self.link.refused_last = f"event {seq}: {error}"
            if seq in self._set_aside or seq in self._offered_aside:
                continue  # offered again at this start, still refused: it stays where it is
            if self.spool.outbox.set_aside(seq, error):
                self._set_aside.add(seq)
                log.error("kafka: event %d refused by the producer (%s); kept in the spool and set aside, the "
                          "stream goes on", seq, error)

    def _settle(self, reports: list[tuple[Any, str | None]]) -> None:
        if not reports:
            return
        failures: list[tuple[int, str]] = []
        now = time.monotonic()
        latencies = []
        for (batch, seq, sent), error in reports:
            if batch is None:  # a row set aside before, offered again at this start
                if error is None:
                    self.spool.outbox.clear_set_aside(seq)
                else:
                    log.error("kafka: event %d, set aside before, is still refused (%s)", seq, error)
            elif error is not None:
                failures.append((seq, error))
            else:
                batch.waiting -= 1
                latencies.append(now - sent)
        delivered = self._advance()
        with self.link.lock:
            if latencies:
                if not self.link.connected:
                    log.info("kafka: connected to %s", self.kafka.bootstrap_servers)
                self.link.connected = True
                self.link.down_since = None
                for seconds in latencies:
                    self.link.observe(seconds)
            self.link.delivered += delivered
            self.link.in_flight = self._in_flight
        if failures:
            self._refused(failures)

    def _refused(self, failures: list[tuple[int, str]]) -> None:
        """Only a permanent error gets here (no timeout is set). In careful mode each report names its
        row: count it, set it aside at the third refusal; either way start again from the watermark."""
        with self.link.lock:
            self.link.failed += len(failures)
            self.link.last_error = failures[0][1]
        for seq, error in failures:
            if seq > self._careful_until:
                continue  # a report for a whole group: the row at fault is found in careful mode
            self._refusals[seq] = self._refusals.get(seq, 0) + 1
            if (self._refusals[seq] >= REFUSALS and seq not in self._set_aside
                    and self.spool.outbox.set_aside(seq, error)):
                self._set_aside.add(seq)
                with self.link.lock:
                    self.link.refused_last = f"event {seq}: {error}"
                log.error("kafka: event %d refused %d times (%s); kept in the spool, not sent again until "
                          "the next start", seq, REFUSALS, error)
        self._restart = True

    def _advance(self) -> int:
        """Move the watermark past every batch fully acknowledged; returns how many messages that was."""
        delivered = 0
        while self._batches and self._batches[0].waiting <= 0:
            batch = self._batches.popleft()
            self._watermark = batch.last
            delivered += batch.size
        self._in_flight -= delivered
        return delivered

    def _mark(self, force: bool = False) -> None:
        if self._watermark > self.spool.ledger.delivered_through() and (
                force or time.monotonic() - self._last_mark >= self.mark_every_s):
            self.spool.ledger.mark_delivered_through(self._watermark)
            self._last_mark = time.monotonic()

    def _update_backlog(self) -> None:
        rows, oldest = self.spool.ledger.backlog()
        with self.link.lock:
            self.link.backlog_rows = rows
            self.link.backlog_oldest = oldest
            self.link.in_flight = self._in_flight

    def _shutdown(self) -> None:
        """Deliver what the spool still holds, for as long as the stop allows."""
        output = self._output
        if output is None:
            return
        deadline = time.monotonic() + self.stop_timeout
        while time.monotonic() < deadline and not self._restart and not output.fatal:
            self._send_more(output)
            self._settle(output.poll(0.05))
            if not self._batches and not self.spool.outbox.pending(self._cursor, 1, self.topics).size:
                break
        self._mark(force=True)
        # What is still unacknowledged stays undelivered in the spool and is sent again next time.
        output.close()
        self._output = None


def status(forwarder: Forwarder | None) -> dict[str, Any]:
    return {"enabled": False} if forwarder is None else {"enabled": True, **forwarder.link.snapshot()}
