"""Ingest: stamp events, map sensors and transponders to riders, commit them to the spool in batches.

An event is accepted once it is committed; only then do subscribers (the engine, the page) see it,
as ``Accepted`` records carrying the spool row (sequence number, event id, the Kafka message).
``submit`` never blocks a source: events wait in a bounded queue for the writer thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

from gateway.model import GateCrossing, PowerSample, SegmentResult
from gateway.spool import NewEvent, Row, Spool

log = logging.getLogger(__name__)

Event = PowerSample | GateCrossing | SegmentResult
ROLLING_S = 30.0


class Accepted(NamedTuple):
    """An event committed to the spool, with the rider it belongs to (None if unknown)."""

    row: Row
    event: Event
    rider_id: str | None


class Roster:
    """Who is who: ANT+ device numbers, BLE ids and transponders to rider ids and names."""

    def __init__(self, riders: list[dict[str, Any]]) -> None:
        self.names = {r["id"]: r["name"] for r in riders}
        self._power_cache: dict[tuple[str, str], str | None] = {}
        self._meters: dict[tuple[str, str], str] = {}
        self._transponders: dict[str, str] = {}
        for r in riders:
            for meter in r.get("power_meters") or ():
                kind, value = next(iter(meter.items()))
                self._meters[(kind, str(value).lower())] = r["id"]
            if r.get("transponder"):
                self._transponders[str(r["transponder"])] = r["id"]

    def rider_for_power(self, source: str, sensor: str) -> str | None:
        key = (source, sensor)
        try:
            return self._power_cache[key]
        except KeyError:
            rider = self._power_cache[key] = self._lookup_power(source, sensor)
            return rider

    def _lookup_power(self, source: str, sensor: str) -> str | None:
        kind = source.split(":", 1)[0]
        if kind in ("ant", "ble"):
            return self._meters.get((kind, sensor.lower()))
        # Replayed files and generated load name their rider directly.
        return sensor if sensor in self.names else None

    def rider_for_crossing(self, source: str, transponder: str) -> str | None:
        rider = self._transponders.get(transponder)
        if rider is None and source.startswith("replay:") and transponder in self.names:
            return transponder  # a power file's own laps: the "transponder" is its rider
        return rider


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
                 batch_size: int = 500, max_queue: int = 200_000) -> None:
        self.spool = spool
        self.roster = roster
        self.session_id = session_id
        self.batch_interval_s = batch_interval_s
        self.batch_size = batch_size
        self.max_queue = max_queue
        self._queue: deque[Event] = deque()
        self._cond = threading.Condition()
        self._subscribers: list[Callable[[list[Accepted]], None]] = []
        self._rolling = _Rolling()
        self._submitted = 0
        self._committed = 0
        self._stopping = False
        self._urgent = False
        self._thread: threading.Thread | None = None
        self.overflow = 0
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
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue and self._stopping:
                    return
                deadline = time.monotonic() + self.batch_interval_s
                while len(self._queue) < self.batch_size and not self._stopping and not self._urgent:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                batch = [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]
                self._urgent = False
            try:
                self._commit(batch)
            except Exception:
                log.exception("ingest: a batch of %d events could not be committed", len(batch))
            finally:
                with self._cond:
                    self._committed += len(batch)
                    self._cond.notify_all()

    def _commit(self, batch: list[Event]) -> None:
        prepared = [self._prepare(ev) for ev in batch]
        rows = self.spool.append([p[0] for p in prepared])
        if not rows:
            return
        accepted = [Accepted(row, ev, rider) for row, (_, ev, rider) in zip(rows, prepared, strict=True)]
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
            rolling = self._rolling.add(rider or ev.source, ev.wall_time, ev.power)
            body = {"wallTime": ev.wall_time, "instantPower": ev.power, "cadence": ev.cadence,
                    "torque": ev.torque, "normalizedPower": rolling,
                    "name": self.roster.names.get(rider) if rider else None, "rider_id": rider, "source": ev.source}
            return NewEvent("power", rider, self.session_id, ev.wall_time, body), ev, rider
        if isinstance(ev, GateCrossing):
            rider = self.roster.rider_for_crossing(ev.source, ev.transponder)
            if rider is None:
                self._count_unmapped(f"transponder:{ev.transponder}")
            body = {"wallTime": ev.wall_time, "transponder": ev.transponder, "gate": ev.gate,
                    "rider_id": rider, "source": ev.source}
            return NewEvent("crossing", rider, self.session_id, ev.wall_time, body), ev, rider
        return NewEvent("segment", ev.rider_id, ev.session_id, ev.end, ev.to_wire()), ev, ev.rider_id

    def _count_unmapped(self, key: str) -> None:
        n = self.unmapped.get(key, 0)
        self.unmapped[key] = n + 1
        if n == 0:
            log.warning("ingest: %s is not in the roster; its events are kept and forwarded without a rider", key)
