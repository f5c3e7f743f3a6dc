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
from collections import deque
from collections.abc import Callable, Collection, Sequence
from typing import Any, NamedTuple, cast

import orjson

from gateway.counts import bump
from gateway.model import GateCrossing, PowerSample, SegmentResult, SessionRecord
from gateway.pipeline.plausible import Plausible
from gateway.pipeline.roster import Roster
from gateway.pipeline.runs import RUN_MIN, Event, PowerRun, by_meter, columns, rolling_means
from gateway.spool.store import NewEvent, NewRun, Row, Spool
from gateway.wire import crossing_body, power_body, segment_body, session_body

log = logging.getLogger(__name__)

ROLLING_S = 30.0
METERS_KEPT = 4096  # meters' lookups cached
_EVENT_TYPES = frozenset((PowerSample, GateCrossing, SegmentResult, SessionRecord))


class Accepted(NamedTuple):
    """An event committed to the spool, with the rider it belongs to (None if unknown).

    ``usable`` is False for a power sample outside the plausible ranges: stored and forwarded with
    its flag, never averaged into a segment. ``event`` is a ``PowerRun`` for a long run of one
    meter's samples committed together (a replay at full speed): ``row`` is then its first sample's.
    """

    row: Row
    event: Event | PowerRun
    rider_id: str | None
    usable: bool = True


def events_in(batch: Sequence[Accepted]) -> int:
    """How many events a committed batch holds (a ``PowerRun`` counts its samples)."""
    return len(batch) + sum(len(a.event.walls) - 1 for a in batch if type(a.event) is PowerRun)


def _finite(value: float | None) -> float | None:
    """The raw value as stored: a NaN or an infinity is no JSON number (orjson writes null anyway)."""
    return value if value is None or math.isfinite(value) else None


class _Window:
    """A 30 s rolling mean of power (the seed system's ``normalizedPower`` field): samples as
    (time, watts), oldest first, and their sum."""

    __slots__ = ("samples", "total")

    def __init__(self) -> None:
        self.samples: deque[tuple[float, float]] = deque()
        self.total = 0.0


class _Meter:
    """What ingest knows of one (source, sensor): its rider, the rider's name and rolling window
    (shared by the rider's meters; a meter with no rider has its own)."""

    __slots__ = ("name", "rider", "who", "window")

    def __init__(self, rider: str | None, name: str | None, window: _Window) -> None:
        self.rider = rider
        self.name = name
        self.who = (name, rider)  # as wire.power_body takes them
        self.window = window


class Ingest:
    """Batches submitted events into spool transactions on its own thread."""

    def __init__(self, spool: Spool, roster: Roster, session_id: str, *, batch_interval_s: float = 0.05,
                 batch_size: int = 500, max_batch: int | None = None, max_queue: int = 200_000,
                 plausible: Plausible | None = None) -> None:
        self.spool = spool
        self._roster = roster
        self.plausible = plausible or Plausible()
        self.implausible: dict[str, int] = {}  # by source, the newest gateway.counts.KEPT
        self.implausible_sources = 0
        self.session_id = session_id
        self.batch_interval_s = batch_interval_s
        self.batch_size = batch_size  # this many waiting: committed without waiting for the interval
        # At most this many in one commit (more than batch_size for a replay: see pipeline.build).
        self.max_batch = max(batch_size, max_batch or batch_size)
        self.max_queue = max_queue
        self._queue: deque[Event | Callable[[], object]] = deque()
        self._periodic: list[list[Any]] = []  # [interval, next due, function]
        self._cond = threading.Condition()
        self._subscribers: list[Callable[[list[Accepted]], None]] = []
        self._meters: dict[tuple[str, str], _Meter] = {}
        self._windows: dict[str, _Window] = {}
        p, c, t = self.plausible.power_w, self.plausible.cadence_rpm, self.plausible.torque_nm
        self._ranges = (p[0], p[1], c[0], c[1], t[0], t[1])
        self._idle = False  # the thread waits for a first event: a submit wakes it
        self._stopping = False
        self._waiting = 0  # crossings, results and calls queued: while any is, batches go at once
        # Meters of riders whose segment waits for their next sample (see ``await_riders``); one of
        # theirs queued makes the batch go at once (``_hurry``), as a crossing does.
        self._awaited: frozenset[tuple[str, str]] = frozenset()
        self._hurry = False
        self._thread: threading.Thread | None = None
        self.overflow = 0
        self.rejected = 0  # refused by the spool (full, or the disk is)
        self.unmapped: dict[str, int] = {}  # events of devices not in the roster, the newest gateway.counts.KEPT
        self.unmapped_keys = 0  # devices not in the roster seen in all

    @property
    def roster(self) -> Roster:
        return self._roster

    @roster.setter
    def roster(self, roster: Roster) -> None:
        """A pairing changed (on this thread, between two batches): meters are looked up again; the
        riders' rolling windows go on."""
        self._roster = roster
        self._meters.clear()

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
            self._waiting += 1
            self._cond.notify_all()

    def start(self) -> Ingest:
        self._thread = threading.Thread(target=self._run, name="ingest", daemon=True)
        self._thread.start()
        return self

    def submit(self, event: Event) -> bool:
        """Queue ``event``; False (counted, logged) only if the queue is full because the spool stalled.

        A power sample takes no lock (a deque's append is atomic): only the thread's wake-up does,
        when it waits for a first event or a full batch."""
        queue = self._queue
        if len(queue) >= self.max_queue:
            with self._cond:
                self.overflow += 1
                if self.overflow == 1 or self.overflow % 10_000 == 0:
                    log.error("ingest queue full (%d events): the spool is not keeping up; %d events refused",
                              self.max_queue, self.overflow)
            return False
        queue.append(event)
        if type(event) is not PowerSample:
            # Crossings and results are what the coach waits for: commit them without the batch delay.
            with self._cond:
                self._waiting += 1
                self._cond.notify_all()
        elif self._awaited and (event[0], event[1]) in self._awaited:
            with self._cond:
                self._hurry = True
                self._cond.notify_all()
        elif self._idle or len(queue) == self.batch_size:
            with self._cond:
                self._cond.notify_all()
        return True

    def await_riders(self, riders: Collection[str]) -> None:
        """``riders`` have a closed segment that waits for their power stream to pass its end: their
        meters' next sample is committed at once, not after ``batch_interval_s`` (on this thread).

        Without it a crossing's result waited for the batch after it, up to a second on the live box
        (the spool's interval) and more in a replay at 100 times real speed."""
        if not riders and not self._awaited:
            return
        awaited = self._awaited = frozenset(k for k, m in self._meters.items() if m.rider in riders)
        if awaited and len(self._queue) < self.batch_size:
            # Samples queued while the batch that closed the segment was committed.
            queued = [e for e in list(self._queue) if type(e) is PowerSample]  # list(): a copy made in C
            if any((e[0], e[1]) in awaited for e in queued):
                self._hurry = True

    def submit_many(self, events: Sequence[Event]) -> int:
        """Queue ``events`` in order, as many as the queue has room for; returns how many (a replay at
        full speed hands over its recording a stretch at a time: the rest is its to offer again)."""
        queue = self._queue
        room = self.max_queue - len(queue)
        if room <= 0:
            return 0
        taken = events if len(events) <= room else events[:room]
        queue.extend(taken)
        urgent = sum(type(e) is not PowerSample for e in taken)
        with self._cond:
            self._waiting += urgent
            self._cond.notify_all()
        return len(taken)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far has been committed (or refused)."""
        done = threading.Event()
        self.call(done.set)
        return done.wait(timeout)

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
                self._idle = True  # before looking at the queue: a submit after this look wakes us
                while not self._queue and not self._stopping:
                    if not self._cond.wait(self._until_due()):
                        break  # a periodic function is due
                self._idle = False
                if not self._queue and self._stopping:
                    return
                deadline = time.monotonic() + self.batch_interval_s
                while len(self._queue) < self.batch_size and not (self._stopping or self._waiting or self._hurry):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                call: Callable[[], object] | None = None
                self._hurry = False
                popleft = self._queue.popleft
                # Events are taken in one stretch; a call among them (rare) ends the batch there.
                taken = [popleft() for _ in range(min(len(self._queue), self.max_batch))]
                types = list(map(type, taken))  # counted and searched in C: a replay's batch is thousands
                power = types.count(PowerSample)
                if power < len(taken):
                    if not _EVENT_TYPES.issuperset(types):
                        end = next(i for i, kind in enumerate(types) if kind not in _EVENT_TYPES)
                        call = cast(Callable[[], object], taken[end])  # commit what came before it, then run it
                        self._queue.extendleft(reversed(taken[end + 1:]))
                        power = types[:end].count(PowerSample)
                        del taken[end:]
                    # One still queued behind this batch keeps the next from waiting to fill.
                    self._waiting -= len(taken) - power + (call is not None)
                batch = cast(list[Event], taken)
            self._guard(f"a batch of {len(batch)} events could not be committed", self._commit, batch)
            if call is not None:
                self._guard("a call on the ingest thread failed", call)
            self._run_due()

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
        runs: list[tuple[NewRun, PowerRun]] = []
        # Looked for only where a meter averages a run's worth (a replay's large commits): a live
        # commit of 400 samples from 100 meters holds none, and looking cost it 7 % of its time.
        if len(batch) >= RUN_MIN * max(1, len(self._meters)):
            runs, batch = self._take_runs(batch)
        power, other = self._power, self._prepare
        news = [power(ev) if type(ev) is PowerSample else other(ev) for ev in batch]
        rows = self.spool.append(news, runs=[new for new, _ in runs])
        if not rows:
            self.rejected += len(batch) + sum(len(run.walls) for _, run in runs)
            return
        make = tuple.__new__  # a NamedTuple's own constructor costs twice as much, once per event
        accepted = [make(Accepted, (row, ev, new.rider_id, "implausible" not in new.body))
                    for row, ev, new in zip(rows, batch, news, strict=False)]  # then the runs' rows
        accepted += [make(Accepted, (row, run, new.rider_id, True))
                     for row, (new, run) in zip(rows[len(news):], runs, strict=True)]
        for new in news:
            if new.kind == "session":  # the page's session list names sessions from these
                self.spool.set_meta(f"session:{new.session_id}", orjson.dumps(new.body).decode())
        for callback in self._subscribers:
            try:
                callback(accepted)
            except Exception:
                log.exception("ingest: a subscriber failed on a batch of %d events", len(accepted))

    def _take_runs(self, batch: list[Event]) -> tuple[list[tuple[NewRun, PowerRun]], list[Event]]:
        """The batch's long plain runs of one meter (see ``pipeline.runs``), and what is left of it in
        its order."""
        runs: list[tuple[NewRun, PowerRun]] = []
        groups, rest = by_meter(batch)
        for group in groups:
            cols = columns(group, self._ranges)
            source, sensor = group[0][0], group[0][1]
            meter = self._meters.get((source, sensor)) or self._meter(source, sensor)
            window = meter.window
            rolled = None if cols is None else rolling_means(
                [s[0] for s in window.samples], [s[1] for s in window.samples], cols.t, cols.p, ROLLING_S)
            if cols is None or rolled is None:
                rest += group  # the one-sample way: after the rest of the batch, in its own order
                continue
            means, kept_t, kept_p = rolled
            window.samples = deque(zip(kept_t, kept_p, strict=True))
            window.total = math.fsum(kept_p)
            if meter.rider is None:
                self._count_unmapped(source, len(group))
            runs.append((NewRun(meter.rider, self.session_id, meter.name, source,
                                (cols.walls, cols.powers, cols.cadences, cols.torques, means)),
                         PowerRun(source, sensor, cols.t, cols.p, cols.c)))
        return runs, rest

    def _prepare(self, ev: Event) -> NewEvent:
        """The spool's record of an event (its rider is ``rider_id``: None when unknown)."""
        if isinstance(ev, PowerSample):
            return self._power(ev)
        if isinstance(ev, GateCrossing):
            rider = self.roster.rider_for_crossing(ev.source, ev.transponder)
            if rider is None:
                self._count_unmapped(f"transponder:{ev.transponder}")
            return NewEvent("crossing", rider, self.session_id, ev.wall_time, crossing_body(ev, rider))
        if isinstance(ev, SessionRecord):
            return NewEvent("session", None, ev.session_id, ev.started, session_body(ev))
        return NewEvent("segment", ev.rider_id, ev.session_id, ev.end, segment_body(ev))

    def _power(self, ev: PowerSample) -> NewEvent:
        """A power sample's body; every sample of every meter comes here, hundreds a second, so the
        common case (a known meter, values in range) is written out in one function."""
        source, sensor, wall, power, cadence, torque = ev
        meter = self._meters.get((source, sensor))
        if meter is None:
            meter = self._meter(source, sensor)
        rider = meter.rider
        if rider is None:
            self._count_unmapped(source)
        p_lo, p_hi, c_lo, c_hi, t_lo, t_hi = self._ranges
        body: dict[str, Any]
        if (p_lo <= power <= p_hi and (cadence is None or c_lo <= cadence <= c_hi)
                and (torque is None or t_lo <= torque <= t_hi)):
            window = meter.window
            samples = window.samples
            samples.append((wall, power))
            total = window.total + power
            cut = wall - ROLLING_S
            while samples and samples[0][0] <= cut:
                total -= samples.popleft()[1]
            window.total = total
            body = power_body(wall, power, cadence, torque, total / len(samples) if samples else power, meter.who,
                              source)
        else:
            bad = self.plausible.problems(ev)
            body = power_body(wall, _finite(power), _finite(cadence), _finite(torque), None, meter.who, source, bad)
            self._count_implausible(ev, bad)
        return tuple.__new__(NewEvent, ("power", rider, self.session_id, wall, body))

    def _meter(self, source: str, sensor: str) -> _Meter:
        rider = self.roster.rider_for_power(source, sensor)
        key = rider or source
        if len(self._meters) >= METERS_KEPT:  # a flood of unknown meters: their caches go, riders' windows stay
            self._meters.clear()
            self._windows = {k: w for k, w in self._windows.items() if k in self.roster.names}
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window()
        meter = self._meters[(source, sensor)] = _Meter(rider, self.roster.names.get(rider) if rider else None, window)
        return meter

    def _count_implausible(self, ev: PowerSample, bad: list[str]) -> None:
        n = bump(self.implausible, ev.source)
        self.implausible_sources += n == 0
        if (n == 0 and self.implausible_sources <= 20) or (n + 1) % 1000 == 0:  # a flood of sources: 20 lines
            log.warning("ingest: %s sent an implausible %s (%s W, %s rpm, %s Nm); kept flagged, never averaged "
                        "(%d so far)", ev.source, " and ".join(bad), ev.power, ev.cadence, ev.torque, n + 1)

    def _count_unmapped(self, key: str, count: int = 1) -> None:
        if bump(self.unmapped, key, count) == 0:
            self.unmapped_keys += 1
            if self.unmapped_keys <= 20 or self.unmapped_keys % 1000 == 0:  # a flood is one line a thousand
                log.warning("ingest: %s is not in the roster; its events are kept and forwarded without a rider "
                            "(%d unknown devices so far)", key, self.unmapped_keys)

