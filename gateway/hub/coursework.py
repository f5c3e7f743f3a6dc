"""The hub's course engine at work: the pages and crossings of each written batch into their course
sessions (``hub.course``), results settled about once a second and written (``hub.coursedb``).

It runs on its own thread; the consumer hands it each batch once written (``offer`` never waits).
A hub owns the riders whose partitions it reads (power and crossings are keyed by rider, with
equal partition counts, and the group assigns partitions by range: one hub gets a rider's power
and crossings). A rider first seen here, or seen again after a silence (another hub had it
meanwhile), is loaded from the database first: its pages and crossings so far and its results as
written, so what is unchanged is not written again. A course session works once two boxes are
in it: one box alone is no course (its own results say it all, and the hub keeps nothing of it in
memory); the second box's arrival loads what the first sent.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.config.settings import Settings
from gateway.engine.course import course_from_record
from gateway.engine.segments import RiderInfo
from gateway.hub import coursedb
from gateway.hub.course import CourseSession
from gateway.status import StatusBoard

log = logging.getLogger(__name__)

SETTLE_EVERY_S = 1.0
DESCRIBE_EVERY_S = 10.0
RELOAD_AFTER_S = 20.0  # a rider silent this long here may have been another hub's meanwhile
PENDING_FOR_S = 300.0  # rows of a session whose record has not arrived yet wait this long


@dataclass
class _Active:
    session: CourseSession
    members: dict[str, str]  # box session -> its gateway
    last_seen: dict[str, float] = field(default_factory=dict)  # rider -> when rows last came here
    described: float = 0.0


class CourseWork:
    def __init__(self, settings: Settings, connect: Callable[[], Any], status: StatusBoard) -> None:
        self.settings = settings
        self.connect = connect
        self.status = status
        self.window_h = settings.gateway.session_gap_h
        self.latency_s = settings.hub.receiver_latency_ms / 1000.0
        self._queue: queue.SimpleQueue[tuple[list[Any], list[Any]]] = queue.SimpleQueue()
        self._courses: dict[str, _Active] = {}
        self._member_of: dict[str, str | None] = {}
        self._pending: list[tuple[float, list[Any], list[Any]]] = []
        self.written = 0
        self._conn: Any = None
        self._lock = threading.Lock()  # the work of one batch or one settle, against a revocation

    def offer(self, power: list[Any], crossings: list[Any]) -> None:
        """A written batch's power rows and crossing rows (the consumer's thread: never waits)."""
        radio = [r for r in power if r[10] is not None]
        if radio or crossings:
            self._queue.put((radio, crossings))

    def run(self, stop: threading.Event) -> None:
        next_settle = 0.0
        try:
            while not stop.is_set():
                try:
                    power, crossings = self._queue.get(timeout=0.2)
                    with self._lock:
                        self._take(power, crossings)
                except queue.Empty:
                    pass
                if time.monotonic() >= next_settle:
                    next_settle = time.monotonic() + SETTLE_EVERY_S
                    with self._lock:
                        self._retry_pending()
                        self._settle()
        finally:
            if self._conn is not None:
                self._conn.close()

    def revoked(self) -> None:
        """The consumer's partitions are going (the consumer's thread, in its rebalance callback):
        what was offered is taken and written now, then every rider is forgotten, so a rider that
        moves to another hub is written by that hub only, from all this one wrote."""
        with self._lock:
            while True:
                try:
                    power, crossings = self._queue.get_nowait()
                except queue.Empty:
                    break
                self._take(power, crossings)
            self._settle()
            for active in self._courses.values():
                active.last_seen.clear()

    def _db(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = self.connect()
            self._conn.autocommit = True
        return self._conn

    # -- rows into course sessions ------------------------------------------------------------------

    def _take(self, power: list[Any], crossings: list[Any], retried: bool = False) -> None:
        sessions = {r[2] for r in power} | {r[2] for r in crossings}
        unknown = [s for s in sessions if s not in self._member_of]
        if unknown:
            self._member_of.update(coursedb.assign(self._db(), unknown, self.window_h))
        waiting = {s for s in sessions if s not in self._member_of}
        if waiting and retried:  # no record after all this time: not a session the course can use
            self._member_of.update(dict.fromkeys(waiting))
        elif waiting:  # no record yet (it may come through another hub's partition of the sessions topic)
            self._pending.append((time.monotonic(), [r for r in power if r[2] in waiting],
                                  [r for r in crossings if r[2] in waiting]))
        now = time.monotonic()
        for r in power:  # gateway, seq, session, rider, wall, power, cadence, torque, source, implausible, raw, spool
            active = self._active(r[2], r[3], now)
            if active is not None:
                active.session.add_page(r[0], r[3], r[4], r[10], (r[5], r[6]), implausible=bool(r[9]))
        for r in crossings:  # gateway, seq, session, rider, wall, transponder, gate, source, lap, receiver_time, spool
            active = self._active(r[2], r[3], now)
            if active is not None:
                active.session.add_crossing(r[0], r[3], r[6], r[4], r[9])

    def _retry_pending(self) -> None:
        pending, self._pending = self._pending, []
        now = time.monotonic()
        for since, power, crossings in pending:
            self._take(power, crossings, retried=now - since > PENDING_FOR_S)

    def _active(self, session_id: str, rider: str | None, now: float) -> _Active | None:
        course_id = self._member_of.get(session_id)
        if course_id is None or rider is None:
            return None
        active = self._courses.get(course_id)
        if active is None or session_id not in active.members:
            active = self._courses[course_id] = self._open(course_id, active)
        if len(set(active.members.values())) < 2:
            return None  # one box is no course: its own results say it all (a second box loads what it sent)
        last = active.last_seen.get(rider)
        if last is None or now - last > RELOAD_AFTER_S:
            self._load(active, rider)
        active.last_seen[rider] = now
        return active

    def _open(self, course_id: str, known: _Active | None) -> _Active:
        """A course session, as its members' records describe it; when a box joins one already open,
        the same session with the box's riders and clock state added (nothing placed moves)."""
        ref = coursedb.members(self._db(), course_id)
        records = [m.record for m in ref.members]
        riders: dict[str, RiderInfo] = {}
        for record in records:
            for r in record.get("riders") or ():
                riders[str(r["id"])] = RiderInfo(str(r["id"]), str(r.get("name") or r["id"]), r.get("ftp_w"),
                                                  r.get("weight_kg"), r.get("squad"))
        synced = {m.gateway_id: bool((m.record.get("clock") or {}).get("synchronised")) for m in ref.members}
        members = {m.session_id: m.gateway_id for m in ref.members}
        log.info("course session %s: %d box session(s), %d riders", course_id, len(ref.members), len(riders))
        if known is not None:
            known.session.add_riders(riders)
            known.session.synchronised.update(synced)
            known.members = members
            return known
        session = CourseSession(course_id, course_from_record(records[0] if records else {}), riders,
                                np_window=self.settings.metrics.np_window, synchronised=synced,
                                receiver_latency_s=self.latency_s)
        return _Active(session, members)  # riders load as their rows come

    def _load(self, active: _Active, rider: str) -> None:
        """What the database has of ``rider`` in this course session (another hub's work too)."""
        conn = self._db()
        pages, crossings = coursedb.rider_history(conn, list(active.members), rider)
        for box, wall, raw, power, cadence, implausible in pages:
            active.session.add_page(box, rider, wall, raw, (power, cadence), implausible=bool(implausible))
        for box, gate, wall, chip in crossings:
            active.session.add_crossing(box, rider, gate, wall, chip)
        known = active.session.riders.get(rider)
        if known is not None:
            known.results = coursedb.stored(conn, active.session.session_id, rider)

    # -- results ------------------------------------------------------------------------------------

    def _settle(self) -> None:
        now = time.monotonic()
        for course_id, active in list(self._courses.items()):
            session = active.session
            mine = {rid for rid, seen in active.last_seen.items() if now - seen <= RELOAD_AFTER_S}
            for rid, rider in session.riders.items():
                if rid not in mine:  # another hub's now: never written from a stale copy
                    rider.dirty, rider.crossings_changed = set(), False
            changes = session.settle()
            if changes:
                self.written += coursedb.write(self._db(), changes)
            if now - active.described > DESCRIBE_EVERY_S:
                active.described = now
                coursedb.describe(self._db(), course_id, self.describe(active))
        self.status.post("course", sessions={c: self.describe(a) for c, a in self._courses.items()},
                         written=self.written, warnings=self.warnings())

    def warnings(self) -> list[str]:
        """A box of a course session that shares no page with the others: its times are its own clock's."""
        out = []
        for course_id, active in self._courses.items():
            clocks = active.session.clocks
            if len(clocks) < 2:
                continue
            for box, clock in sorted(clocks.items()):
                if not clock.linked:
                    synced = active.session.synchronised.get(box)
                    out.append(f"{box} shares no ANT+ message with the other boxes of {course_id}: its times are "
                               f"placed by its own clock ({'synchronised' if synced else 'NOT synchronised'}); "
                               "put it where it hears a rider another box hears")
        return out

    @staticmethod
    def describe(active: _Active) -> dict[str, Any]:
        session = active.session
        return {"boxes": {box: {"offset_s": round(c.offset_s, 4), "drift_ppm": round(c.drift_ppm, 2),
                                "shared": c.shared, "via": list(c.via), "linked": c.linked,
                                "reference": c.linked and not c.shared and not c.via}
                          for box, c in session.clocks.items()},
                "riders": [{"id": r.info.rider_id, "name": r.info.name, "ftp_w": r.info.ftp_w,
                            "weight_kg": r.info.weight_kg, "squad": r.info.squad} for r in session.riders.values()]}
