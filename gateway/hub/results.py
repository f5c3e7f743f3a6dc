"""The hub's results store: the same ``ResultsStore`` the box's page reads, over PostgreSQL, for every
box, session and day. Populations may span sessions and boxes; a comparison is only fair on the
same terrain, so a population across sessions keeps to the course of the session it is for."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from gateway.engine.normalize import Population
from gateway.hub.schema import DatabaseError
from gateway.hub.sessioncounts import SessionCounts
from gateway.model import SegmentResult

FIELDS = ("session_id", "rider_id", "name", "number", "lap", "segment", "start", "end", "duration", "start_gate",
          "end_gate", "power_avg", "cadence_avg", "normalized_power", "intensity_factor", "tss", "watts_per_kg",
          "samples", "coverage", "flags", "np_window")
SELECT = ", ".join(f'"{f}"' for f in FIELDS)
SELECT_C = ", ".join(f'c."{f}"' for f in FIELDS)


def result_of(row: Sequence[Any]) -> SegmentResult:
    values = dict(zip(FIELDS, row, strict=True))
    values["flags"] = tuple(values["flags"] or ())
    return SegmentResult(**values)


class PgResults:
    """``ResultsStore`` over the hub's database. ``connect`` opens a psycopg connection; the page's
    request threads come and go, so connections live in a small pool (at most ``size`` at once)
    rather than one per thread, which would exhaust the server's ``max_connections``."""

    def __init__(self, connect: Callable[[], Any], size: int = 4) -> None:
        self.connect = connect
        self._idle: list[Any] = []
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._closed = False
        self._counts = SessionCounts(self._rows, self.last_seq)

    def close(self) -> None:
        """Close the idle connections (the hub's stop); one in use is closed when it comes back."""
        with self._lock:
            idle, self._idle, self._closed = self._idle, [], True
        for conn in idle:
            conn.close()

    def _rows(self, query: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
        import psycopg

        if not self._slots.acquire(timeout=10):
            raise DatabaseError("every connection is busy", where="hub database", hint="try again in a moment")
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = self.connect()
                    conn.autocommit = True
                rows = list(conn.execute(query, params).fetchall())
            except psycopg.OperationalError as exc:
                if conn is not None:
                    conn.close()  # the server went away: a new connection next time
                raise DatabaseError(f"unreachable ({str(exc).splitlines()[0]})", where="hub database",
                                    hint="the page answers again once PostgreSQL is back") from exc
            with self._lock:
                if self._closed:
                    conn.close()
                else:
                    self._idle.append(conn)
            return rows
        finally:
            self._slots.release()

    def sessions(self) -> list[dict[str, Any]]:
        """The sessions with current results, in the order their first result reached the hub."""
        counts = self._counts.current()  # counted again only where results changed (hub.sessioncounts)
        rows = self._rows("SELECT session_id, gateway_id, kind, name, course_id, started, ended, "
                          "coalesce(jsonb_array_length(record->'riders'), 0) FROM sessions WHERE session_id = ANY(%s)",
                          (list(counts),))
        rows.sort(key=lambda r: counts[r[0]][3])
        return [{"session": r[0], "gateway": r[1], "kind": r[2], "name": r[3], "course": r[4], "started": r[5],
                 "ended": r[6], "riders": r[7], "results": counts[r[0]][0], "first": counts[r[0]][1],
                 "last": counts[r[0]][2]} for r in rows]

    def results(self, sessions: Sequence[str]) -> list[SegmentResult]:
        if not sessions:
            return []
        rows = self._rows(f"SELECT {SELECT} FROM segments_current WHERE session_id = ANY(%s) ORDER BY hub_seq",
                          (list(sessions),))
        return [result_of(r) for r in rows]

    def population(self, population: Population) -> list[SegmentResult]:
        where: list[str] = ["true"]
        params: list[Any] = []
        if population.sessions is not None:
            where.append("c.session_id = ANY(%s)")
            params.append(sorted(population.sessions))
        if population.rider_id is not None:
            # The person, not the box's id: riders are keyed across boxes by name (hub.schema_queries).
            where.append("coalesce((SELECT x.rider_key FROM session_riders x WHERE x.session_id = c.session_id "
                         "AND x.rider_id = c.rider_id), rider_key(c.name, c.rider_id)) = %s")
            params.append(self._rider_key(population.rider_id, population.rider_of))
        if population.squad is not None:
            # The squad as the session's record has it (the roster as used that day).
            where.append("EXISTS (SELECT 1 FROM jsonb_array_elements(s.record->'riders') r "
                         "WHERE r->>'id' = c.rider_id AND r->>'squad' = %s)")
            params.append(population.squad)
        if population.course is not None:
            where.append("s.course_id = %s")
            params.append(population.course)
        if population.since is not None:
            where.append('c."end" >= %s')
            params.append(population.since)
        if population.until is not None:
            where.append('c."end" < %s')
            params.append(population.until)
        rows = self._rows(f"SELECT {SELECT_C} FROM segments_current c "
                          f"JOIN sessions s USING (session_id) WHERE {' AND '.join(where)} ORDER BY c.hub_seq",
                          params)
        return [result_of(r) for r in rows]

    def _rider_key(self, rider_id: str, session: str | None) -> str:
        """Who ``rider_id`` of ``session`` is across boxes; by id alone when the session does not say."""
        rows = self._rows(
            "SELECT coalesce((SELECT rider_key FROM session_riders WHERE session_id = %(s)s AND rider_id = %(r)s), "
            "(SELECT rider_key(name, rider_id) FROM segments WHERE session_id = %(s)s AND rider_id = %(r)s "
            "ORDER BY hub_seq DESC LIMIT 1), rider_key(NULL, %(r)s))", {"s": session, "r": rider_id})
        return str(rows[0][0])

    def last_seq(self) -> int:
        row = self._rows("SELECT coalesce(max(hub_seq), 0) FROM segments")[0]
        return int(row[0])

    def results_since(self, seq: int) -> Iterator[tuple[int, SegmentResult]]:
        while True:
            rows = self._rows(f"SELECT hub_seq, {SELECT} FROM segments WHERE hub_seq > %s ORDER BY hub_seq LIMIT 2000",
                              (seq,))
            if not rows:
                return
            for row in rows:
                yield int(row[0]), result_of(row[1:])
            seq = int(rows[-1][0])

    def course(self, session: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT record->'course' FROM sessions WHERE session_id = %s", (session,))
        return rows[0][0] if rows and rows[0][0] else None

    def record(self, session: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT record FROM sessions WHERE session_id = %s", (session,))
        return dict(rows[0][0]) if rows and rows[0][0] else None

    def notes(self, session: str) -> list[dict[str, Any]]:
        rows = self._rows("SELECT record->'result_notes' FROM sessions WHERE session_id = %s", (session,))
        return list(rows[0][0]) if rows and rows[0][0] else []

    def rider_power(self, session: str, rider: str) -> tuple[list[float], list[float]]:
        rows = self._rows("SELECT wall_time, power FROM power WHERE session_id = %s AND rider_id = %s "
                          "AND NOT implausible AND power = power ORDER BY wall_time", (session, rider))
        return [float(r[0]) for r in rows], [float(r[1]) for r in rows]

    def rider_sessions(self, rider: str) -> list[str]:
        rows = self._rows("SELECT session_id FROM segments_current WHERE rider_id = %s GROUP BY session_id "
                          "ORDER BY min(hub_seq)", (rider,))
        return [str(r[0]) for r in rows]

    def heard_by(self, session: str) -> dict[str, list[str]]:
        rows = self._rows("SELECT rider_id, number, coalesce(boxes, ARRAY[gateway_id]) FROM segments_current "
                          "WHERE session_id = %s", (session,))
        return {f"{r[0]}|{r[1]}": list(r[2]) for r in rows}

    def course_of(self, session: str) -> str | None:
        rows = self._rows("SELECT course_id FROM sessions WHERE session_id = %s", (session,))
        return rows[0][0] if rows else None

    def spools(self) -> list[Any]:
        """Every box's spools (``hub.boxes.spool_report`` reads them)."""
        return self._rows("SELECT gateway_id, spool_id, extract(epoch FROM first_seen), extract(epoch FROM last_seen), "
                          "first_wall, last_wall, events FROM spools ORDER BY gateway_id, first_seen LIMIT 5000")
