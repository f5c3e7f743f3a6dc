"""The committer: turns a batch of events into the spool's records (riders mapped, power checked
and its 30 s rolling mean kept per rider, bodies from the one codec), appends them in one
transaction, and hands the committed events, typed and stamped, to the subscribers. It has no
thread of its own: the ingest loop calls it (and a test can, alone).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from gateway.counts import bump
from gateway.model import GateCrossing, PowerSample, SessionRecord
from gateway.pipeline.accepted import Accepted
from gateway.pipeline.plausible import Plausible
from gateway.pipeline.roster import Roster
from gateway.pipeline.runs import RUN_MIN, Event, PowerRun, by_meter, columns, rolling_means
from gateway.spool.sessions import SessionMeta
from gateway.spool.store import NewEvent, NewRun, Spool
from gateway.wire import crossing_body, power_body, segment_body, session_body

log = logging.getLogger(__name__)

ROLLING_S = 30.0
METERS_KEPT = 4096  # meters' lookups cached


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

    def __init__(self, rider: str | None, name: str | None, source: str, window: _Window) -> None:
        self.rider = rider
        self.name = name
        self.who = (name, rider, source)  # as wire.power_body takes them
        self.window = window


class Committer:
    """Commits batches of events for one session (on the ingest thread: nothing here is locked)."""

    def __init__(self, spool: Spool, roster: Roster, session_id: str, plausible: Plausible | None = None) -> None:
        self.spool = spool
        self._roster = roster
        self.session_id = session_id
        self.plausible = plausible or Plausible()
        p, c, t = self.plausible.power_w, self.plausible.cadence_rpm, self.plausible.torque_nm
        self._ranges = (p[0], p[1], c[0], c[1], t[0], t[1])
        self._meters: dict[tuple[str, str], _Meter] = {}
        self._windows: dict[str, _Window] = {}
        self.subscribers: list[Callable[[list[Accepted]], None]] = []
        self.rejected = 0  # refused by the spool (full, or the disk is)
        self.implausible: dict[str, int] = {}  # by source, the newest gateway.counts.KEPT
        self.implausible_sources = 0
        self.unmapped: dict[str, int] = {}  # events of devices not in the roster, the newest gateway.counts.KEPT
        self.unmapped_keys = 0  # devices not in the roster seen in all

    @property
    def roster(self) -> Roster:
        return self._roster

    @roster.setter
    def roster(self, roster: Roster) -> None:
        """A pairing changed (between two batches): meters are looked up again; the riders' rolling
        windows go on."""
        self._roster = roster
        self._meters.clear()

    def meters_of(self, riders: frozenset[str] | set[str]) -> frozenset[tuple[str, str]]:
        """The (source, sensor) of every meter known to be one of ``riders``'."""
        return frozenset(k for k, m in self._meters.items() if m.rider in riders)

    def commit(self, batch: list[Event]) -> None:
        if not batch:
            return
        runs: list[tuple[NewRun, PowerRun]] = []
        # Looked for only where a meter averages a run's worth (a replay's large commits): a live
        # commit of 400 samples from 100 meters holds none, and looking cost it 7 % of its time.
        if len(batch) >= RUN_MIN * max(1, len(self._meters)):
            runs, batch = self._take_runs(batch)
        power, other = self._power, self._prepare
        news = [power(ev) if type(ev) is PowerSample else other(ev) for ev in batch]
        # The page's session list names sessions from their records: kept in the same transaction.
        meta = SessionMeta.record_items((str(new.session_id), new.body) for new in news if new.kind == "session")
        committed = time.time()
        rows = self.spool.appender.append(news, now=committed, runs=[new for new, _ in runs], meta=meta)
        if not rows:
            self.rejected += len(batch) + sum(len(run.walls) for _, run in runs)
            return
        make = tuple.__new__  # a NamedTuple's own constructor costs twice as much, once per event
        accepted = [make(Accepted, (ev, row.seq, committed, new.rider_id, "implausible" not in new.body))
                    for row, ev, new in zip(rows, batch, news, strict=False)]  # then the runs' rows
        accepted += [make(Accepted, (run, row.seq, committed, new.rider_id, True))
                     for row, (new, run) in zip(rows[len(news):], runs, strict=True)]
        for callback in self.subscribers:
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
        source, sensor, wall, power, cadence, torque, raw = ev
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
            body = power_body(wall, (power, cadence, torque), total / len(samples) if samples else power, meter.who,
                              raw)
        else:
            bad = self.plausible.problems(ev)
            body = power_body(wall, (_finite(power), _finite(cadence), _finite(torque)), None, meter.who, raw, bad)
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
        name = self.roster.names.get(rider) if rider else None
        meter = self._meters[(source, sensor)] = _Meter(rider, name, source, window)
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

