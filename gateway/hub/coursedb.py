"""The course sessions in the hub's database: which box sessions ride one course together, what a
hub process needs to take over a rider (its pages and crossings so far, its results so far), and
the course results written beside the boxes' own.

A box session joins a course session when it is a live session with a course id: the course
session of that course whose first member started within ``window_h`` of it, or a new one. Two
hubs assigning at once take a transaction-scoped lock, so a course is never split in two.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb

from gateway.hub.course import Change
from gateway.hub.results import FIELDS, result_of
from gateway.hub.writer import SEGMENT_LOCK
from gateway.model import SegmentResult

COURSE_LOCK = 7413
COURSE_GATEWAY = "course"  # the gateway_id course results are written under


@dataclass(frozen=True)
class Member:
    session_id: str
    gateway_id: str
    record: dict[str, Any]


@dataclass(frozen=True)
class CourseRef:
    course_session_id: str
    members: tuple[Member, ...]


def assign(conn: Connection[Any], session_ids: Iterable[str], window_h: float) -> dict[str, str | None]:
    """The course session of each box session whose record has arrived (None: not a live session on
    a course); a session without its record yet is left out (ask again later). Joins new live
    sessions to a course session, creating it when none is near in time."""
    ids = sorted(set(session_ids))
    if not ids:
        return {}
    out: dict[str, str | None] = {}
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (COURSE_LOCK,))
        known = dict(conn.execute("SELECT session_id, course_session_id FROM course_members WHERE session_id = ANY(%s)",
                                  (ids,)).fetchall())
        rows = conn.execute("SELECT session_id, gateway_id, course_id, started, record->'course', kind FROM sessions "
                            "WHERE session_id = ANY(%s) AND record IS NOT NULL",
                            ([i for i in ids if i not in known],)).fetchall()
        for session_id, gateway, course_id, started, course, kind in rows:
            if kind != "live" or not course_id or started is None:
                out[session_id] = None
                continue
            found = conn.execute(
                "SELECT session_id FROM sessions WHERE kind = 'course' AND course_id = %s AND abs(started - %s) <= %s "
                "ORDER BY abs(started - %s) LIMIT 1", (course_id, started, window_h * 3600, started)).fetchone()
            if found is None:
                course_session = f"course-{course_id}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(started))}"
                when = time.strftime("%d %b %H:%M", time.gmtime(started))
                name = f"{(course or {}).get('name') or course_id}, {when}"
                conn.execute(
                    "INSERT INTO sessions (session_id, gateway_id, spool_id, kind, name, course_id, started, record) "
                    "VALUES (%s, %s, '', 'course', %s, %s, %s, %s) ON CONFLICT (session_id) DO NOTHING",
                    (course_session, COURSE_GATEWAY, name, course_id, started,
                     Jsonb({"kind": "course", "name": name, "started": started, "course": course or {},
                            "riders": [], "boxes": {}})))
            else:
                course_session = found[0]
            conn.execute("INSERT INTO course_members VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                         (session_id, course_session, gateway))
            known[session_id] = course_session
    return {**out, **known}


def members(conn: Connection[Any], course_session_id: str) -> CourseRef:
    rows = conn.execute("SELECT m.session_id, m.gateway_id, coalesce(s.record, '{}'::jsonb) FROM course_members m "
                        "JOIN sessions s USING (session_id) WHERE m.course_session_id = %s ORDER BY s.started",
                        (course_session_id,)).fetchall()
    return CourseRef(course_session_id, tuple(Member(r[0], r[1], dict(r[2])) for r in rows))


def rider_history(conn: Connection[Any], sessions: Sequence[str], rider: str
                  ) -> tuple[list[Any], list[tuple[str, str, float, float | None]]]:
    """A rider's pages (box, box time, identity, power, cadence, implausible) and crossings (box,
    gate, box time, chip time) in the box sessions of a course session, as the boxes delivered them."""
    pages = conn.execute("SELECT gateway_id, wall_time, raw, power, cadence, implausible FROM power "
                         "WHERE session_id = ANY(%s) AND rider_id = %s AND raw IS NOT NULL",
                         (list(sessions), rider)).fetchall()
    crossings = conn.execute("SELECT gateway_id, gate, wall_time, receiver_time FROM crossings "
                             "WHERE session_id = ANY(%s) AND rider_id = %s", (list(sessions), rider)).fetchall()
    return pages, crossings


def stored(conn: Connection[Any], course_session_id: str, rider: str) -> dict[str, SegmentResult]:
    """A rider's current course results (by segment number), as written by any hub."""
    select = ", ".join(f'"{f}"' for f in FIELDS)
    rows = conn.execute(f"SELECT {select} FROM segments_current WHERE session_id = %s AND rider_id = %s",
                        (course_session_id, rider)).fetchall()
    return {r.number: r for r in map(result_of, rows)}


def write(conn: Connection[Any], changes: Sequence[Change], *, gateway: str = COURSE_GATEWAY, spool: str = "") -> int:
    """Course results (or a box session's completed by files: ``gateway``, ``spool``), new,
    corrected or withdrawn, in one transaction; the page's feed shows them."""
    if not changes:
        return 0
    with conn.transaction():
        # The segments' writers' lock before the rows take their hub_seq, as the box writer does: hub_seq
        # is then in commit order, which the page's feed (results after the last hub_seq it sent)
        # relies on. Taken only by the insert's trigger, a box batch could commit a later hub_seq
        # first, and the feed would skip this one for good.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SEGMENT_LOCK,))
        seqs = [r[0] for r in conn.execute("SELECT nextval('course_results') FROM generate_series(1, %s)",
                                           (len(changes),)).fetchall()]
        conn.cursor().executemany(
            'INSERT INTO segments (gateway_id, spool_id, seq, session_id, rider_id, name, number, lap, segment, start, '
            '"end", duration, start_gate, end_gate, power_avg, cadence_avg, normalized_power, intensity_factor, tss, '
            "watts_per_kg, samples, coverage, flags, np_window, withdrawn, boxes) VALUES (%s, %s, %s, %s, %s, %s, %s, "
            "%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [(gateway, spool, seq, r.session_id, r.rider_id, r.name, r.number, r.lap, r.segment, r.start, r.end,
              r.duration, r.start_gate, r.end_gate, r.power_avg, r.cadence_avg, r.normalized_power,
              r.intensity_factor, r.tss, r.watts_per_kg, r.samples, r.coverage,
              list(r.flags), r.np_window, "withdrawn" in r.flags, list(c.boxes) or None)  # flags as a box's
             for seq, c in zip(seqs, changes, strict=True) for r in (c.result,)])
        conn.execute("NOTIFY trackside_segments")
    return len(changes)


def describe(conn: Connection[Any], course_session_id: str, record: dict[str, Any]) -> None:
    """The course session's record: its riders, its boxes and their clocks (what the page shows)."""
    conn.execute("UPDATE sessions SET record = record || %s, updated = now() WHERE session_id = %s",
                  (Jsonb(record), course_session_id))
