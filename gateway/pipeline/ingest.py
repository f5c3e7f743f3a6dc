"""Ingest: stamp events, map sensors and transponders to riders, commit them to the spool in batches.

An event is accepted once it is committed; only then do subscribers (the engine, the page) see it,
as ``Accepted`` records carrying the spool row (sequence number, event id, the Kafka message).
``submit`` never blocks a source: events wait in a bounded queue for the writer thread.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from gateway.model import GateCrossing, PowerSample, SegmentResult
from gateway.spool.store import NewEvent, Row, Spool
from gateway.wire import segment_body

log = logging.getLogger(__name__)

Event = PowerSample | GateCrossing | SegmentResult
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


@dataclass(frozen=True)
class Plausible:
    """The ranges a real sensor reading falls in (``sources.plausible``); a glitch or a forged page does not."""

    power_w: tuple[float, float] = (0.0, 3000.0)
    cadence_rpm: tuple[float, float] = (0.0, 250.0)
    torque_nm: tuple[float, float] = (-50.0, 400.0)

    @classmethod
    def from_config(cls, ranges: dict[str, Any]) -> Plausible:
        return cls(tuple(ranges["power_w"]), tuple(ranges["cadence_rpm"]), tuple(ranges["torque_nm"]))  # type: ignore[arg-type]

    def problems(self, sample: PowerSample) -> list[str]:
        """The fields of ``sample`` outside their range (NaN and infinities included)."""
        out = []
        checks = (("power", sample.power, self.power_w), ("cadence", sample.cadence, self.cadence_rpm),
                  ("torque", sample.torque, self.torque_nm))
        for name, value, (lo, hi) in checks:
            if value is not None and not lo <= value <= hi:
                out.append(name)
        return out


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
            self.rejected += len(batch)
            return
        accepted = [Accepted(row, ev, rider, "implausible" not in new.body)
                    for row, (new, ev, rider) in zip(rows, prepared, strict=True)]
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
            rolling = None if bad else self._rolling.add(rider or ev.source, ev.wall_time, ev.power)
            body: dict[str, Any] = {
                "wallTime": ev.wall_time, "instantPower": _finite(ev.power), "cadence": _finite(ev.cadence),
                "torque": _finite(ev.torque), "normalizedPower": rolling,
                "name": self.roster.names.get(rider) if rider else None, "rider_id": rider, "source": ev.source}
            if bad:
                body["implausible"] = bad
                self._count_implausible(ev, bad)
            return NewEvent("power", rider, self.session_id, ev.wall_time, body), ev, rider
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
