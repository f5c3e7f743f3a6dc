"""Ingest: stamp events, map sensors and transponders to riders, commit them to the spool in batches.

An event is accepted once it is committed; only then do subscribers (the engine, the page) see it,
as ``Accepted`` records carrying the spool row (sequence number, event id, the Kafka message).
``submit`` never blocks a source: events wait in a bounded queue for the writer thread.

The writer thread is also where the session's engine lives: subscribers run on it, ``every`` runs
a function on it at an interval (the engine's clock tick), and ``call`` runs one once everything
submitted before it is committed (closing a replay's open segments). The engine is never touched
from another thread, so it needs no lock.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson

from gateway.model import GateCrossing, PowerSample, SegmentResult, SessionRecord
from gateway.pipeline.plausible import Plausible
from gateway.pipeline.roster import Roster
from gateway.spool.store import NewEvent, Row, Spool
from gateway.wire import segment_body, session_body

log = logging.getLogger(__name__)

Event = PowerSample | GateCrossing | SegmentResult | SessionRecord
ROLLING_S = 30.0


class Accepted(NamedTuple):
    """An event committed to the spool, with the rider it belongs to (None if unknown).

    ``usable`` is False for a power sample outside the plausible ranges: stored and forwarded with
    its flag, never averaged into a segment.
    """

    row: Row
    event: Event
    rider_id: str | None
    usable: bool = True


def _finite(value: float | None) -> float | None:
    """The raw value as stored: a NaN or an infinity is no JSON number (orjson writes null anyway)."""
    return value if value is None or math.isfinite(value) else None


class _Rolling:
    """30 s rolling mean power per rider: the seed system's ``normalizedPower`` field."""

    def __init__(self) -> None:
        self._window: dict[str, deque[tuple[float, float]]] = {}
        self._sum: dict[str, float] = {}

    def add(self, key: str, t: float, p: float) -> float:
        window = self._window.setdefault(key, deque())
        total = self._sum.get(key, 0.0) + p
        window.append((t, p))
        while window and window[0][0] <= t - ROLLING_S:
            total -= window.popleft()[1]
        self._sum[key] = total
        return total / len(window)


class Ingest:
    """Batches submitted events into spool transactions on its own thread."""

    def __init__(self, spool: Spool, roster: Roster, session_id: str, *, batch_interval_s: float = 0.05,
                 batch_size: int = 500, max_queue: int = 200_000, plausible: Plausible | None = None) -> None:
        self.spool = spool
        self.roster = roster
        self.plausible = plausible or Plausible()
        self.implausible: Counter[str] = Counter()
        self.session_id = session_id
        self.batch_interval_s = batch_interval_s
        self.batch_size = batch_size
        self.max_queue = max_queue
        self._queue: deque[Event | Callable[[], object]] = deque()
        self._periodic: list[list[Any]] = []  # [interval, next due, function]
        self._cond = threading.Condition()
        self._subscribers: list[Callable[[list[Accepted]], None]] = []
        self._rolling = _Rolling()
        self._submitted = 0
        self._committed = 0
        self._stopping = False
        self._urgent = False
        self._thread: threading.Thread | None = None
        self.overflow = 0
        self.rejected = 0  # refused by the spool (full, or the disk is)
        self.unmapped: dict[str, int] = {}

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def pending(self) -> int:
        """Events submitted but not yet committed."""
        return len(self._queue)

    def subscribe(self, callback: Callable[[list[Accepted]], None]) -> None:
        """``callback`` gets every committed batch, in order, on the ingest thread: keep it quick."""
        self._subscribers.append(callback)

    def every(self, interval_s: float, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the writer thread about every ``interval_s`` (before ``start``)."""
        self._periodic.append([interval_s, time.monotonic() + interval_s, fn])

    def call(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the writer thread once everything submitted before it is committed."""
        with self._cond:
            self._queue.append(fn)
            self._submitted += 1
            self._urgent = True
            self._cond.notify_all()

    def start(self) -> Ingest:
        self._thread = threading.Thread(target=self._run, name="ingest", daemon=True)
        self._thread.start()
        return self

    def submit(self, event: Event) -> bool:
        """Queue ``event``; False (counted, logged) only if the queue is full because the spool stalled."""
        with self._cond:
            if len(self._queue) >= self.max_queue:
                self.overflow += 1
                if self.overflow == 1 or self.overflow % 10_000 == 0:
                    log.error("ingest queue full (%d events): the spool is not keeping up; %d events refused",
                              self.max_queue, self.overflow)
                return False
            self._queue.append(event)
            self._submitted += 1
            if not isinstance(event, PowerSample):
                # Crossings and results are what the coach waits for: commit them without the batch delay.
                self._urgent = True
                self._cond.notify_all()
            elif len(self._queue) in (1, self.batch_size):
                self._cond.notify_all()
        return True

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far has been committed (or refused)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._submitted
            self._cond.notify_all()
            while self._committed < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self.spool.release_thread()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    if not self._cond.wait(self._until_due()):
                        break  # a periodic function is due
                if not self._queue and self._stopping:
                    return
                deadline = time.monotonic() + self.batch_interval_s
                while len(self._queue) < self.batch_size and not self._stopping and not self._urgent:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                batch: list[Event] = []
                call: Callable[[], object] | None = None
                while self._queue and len(batch) < self.batch_size:
                    item = self._queue.popleft()
                    if not isinstance(item, PowerSample | GateCrossing | SegmentResult | SessionRecord):
                        call = item  # commit what came before it, then run it
                        break
                    batch.append(item)
                self._urgent = False
            self._guard(f"a batch of {len(batch)} events could not be committed", self._commit, batch)
            if call is not None:
                self._guard("a call on the ingest thread failed", call)
            self._run_due()
            with self._cond:
                self._committed += len(batch) + (call is not None)
                self._cond.notify_all()

    def _until_due(self) -> float | None:
        if not self._periodic:
            return None
        due: float = min(p[1] for p in self._periodic)
        return max(0.0, due - time.monotonic())

    def _run_due(self) -> None:
        now = time.monotonic()
        for entry in self._periodic:
            if now >= entry[1]:
                entry[1] = now + entry[0]
                self._guard("a periodic function failed", entry[2])

    @staticmethod
    def _guard(what: str, fn: Callable[..., object], *args: object) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("ingest: %s", what)

    def _commit(self, batch: list[Event]) -> None:
        if not batch:
            return
        prepared = [self._prepare(ev) for ev in batch]
        rows = self.spool.append([p[0] for p in prepared])
        if not rows:
            self.rejected += len(batch)
            return
        make = tuple.__new__  # a NamedTuple's own constructor costs twice as much, once per event
        accepted = [make(Accepted, (row, ev, rider, "implausible" not in new.body))
                    for row, (new, ev, rider) in zip(rows, prepared, strict=True)]
        for new, ev, _ in prepared:
            if isinstance(ev, SessionRecord):  # the page's session list names sessions from these
                self.spool.set_meta(f"session:{ev.session_id}", orjson.dumps(new.body).decode())
        for callback in self._subscribers:
            try:
                callback(accepted)
            except Exception:
                log.exception("ingest: a subscriber failed on a batch of %d events", len(accepted))

    def _prepare(self, ev: Event) -> tuple[NewEvent, Event, str | None]:
        if isinstance(ev, PowerSample):
            rider = self.roster.rider_for_power(ev.source, ev.sensor)
            if rider is None:
                self._count_unmapped(f"{ev.source}")
            bad = self.plausible.problems(ev)
            body: dict[str, Any] = {
                "wallTime": ev.wall_time, "instantPower": ev.power, "cadence": ev.cadence, "torque": ev.torque,
                "normalizedPower": None, "name": self.roster.names.get(rider) if rider else None, "rider_id": rider,
                "source": ev.source}
            if not bad:  # in range, so finite: the values go as they are
                body["normalizedPower"] = self._rolling.add(rider or ev.source, ev.wall_time, ev.power)
            else:
                body.update(instantPower=_finite(ev.power), cadence=_finite(ev.cadence), torque=_finite(ev.torque),
                            implausible=bad)
                self._count_implausible(ev, bad)
            return tuple.__new__(NewEvent, ("power", rider, self.session_id, ev.wall_time, body)), ev, rider
        if isinstance(ev, GateCrossing):
            rider = self.roster.rider_for_crossing(ev.source, ev.transponder)
            if rider is None:
                self._count_unmapped(f"transponder:{ev.transponder}")
            body = {"wallTime": ev.wall_time, "transponder": ev.transponder, "gate": ev.gate,
                    "rider_id": rider, "source": ev.source}
            if ev.receiver_time is not None and ev.receiver_time != ev.wall_time:
                body["receiverTime"] = ev.receiver_time
            if ev.lap is not None:
                body["lap"] = ev.lap
            return NewEvent("crossing", rider, self.session_id, ev.wall_time, body), ev, rider
        if isinstance(ev, SessionRecord):
            return NewEvent("session", None, ev.session_id, ev.started, session_body(ev)), ev, None
        return NewEvent("segment", ev.rider_id, ev.session_id, ev.end, segment_body(ev)), ev, ev.rider_id

    def _count_implausible(self, ev: PowerSample, bad: list[str]) -> None:
        n = self.implausible[ev.source]
        self.implausible[ev.source] = n + 1
        if n == 0 or (n + 1) % 1000 == 0:
            log.warning("ingest: %s sent an implausible %s (%s W, %s rpm, %s Nm); kept flagged, never averaged "
                        "(%d so far)", ev.source, " and ".join(bad), ev.power, ev.cadence, ev.torque, n + 1)

    def _count_unmapped(self, key: str) -> None:
        n = self.unmapped.get(key, 0)
        self.unmapped[key] = n + 1
        if n == 0:
            log.warning("ingest: %s is not in the roster; its events are kept and forwarded without a rider", key)
