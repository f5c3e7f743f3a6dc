"""The results store of the box: segment results read from the SQLite spool (through its partial
index on segment rows: samples are never scanned)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from gateway.engine.normalize import Population
from gateway.model import PowerSample, SegmentResult
from gateway.results.store import current
from gateway.spool.store import Row, Spool
from gateway.wire import WireError, decode_event

log = logging.getLogger(__name__)


class SpoolResults:
    """``ResultsStore`` over a spool; ``squad_of`` maps a rider to a squad for squad populations."""

    def __init__(self, spool: Spool, squad_of: Callable[[str], str | None] = lambda _: None,
                 course: str | None = None) -> None:
        self.spool = spool
        self.squad_of = squad_of
        self.configured_course = course  # the configured course's id: every session's unless it stored its own

    def sessions(self) -> list[dict[str, Any]]:
        out = []
        records = self.spool.sessions.records()
        counted = self.spool.queries.segment_sessions()
        with_results = {row[0] for row in counted}
        # A session started but without results yet is listed too (after those with results).
        counted += [(s, 0, r.get("started"), r.get("started")) for s, r in sorted(
            records.items(), key=lambda kv: kv[1].get("started") or 0) if s not in with_results]
        for s, n, first, last in counted:
            record = records.get(s, {})
            course = record.get("course") or {}
            out.append({"session": s, "results": n, "first": first, "last": last, "name": record.get("name") or s,
                        "kind": record.get("kind"), "started": record.get("started"), "ended": record.get("ended"),
                        "course": course.get("id"), "riders": len(record.get("riders") or ()),
                        "tags": record.get("tags") or {}})
        return out

    def results(self, sessions: Sequence[str]) -> list[SegmentResult]:
        return current(r for s in sessions for r in _results(self.spool.queries.segment_rows(s)))

    def population(self, population: Population) -> list[SegmentResult]:
        sessions = population.sessions if population.sessions is not None else [s["session"] for s in self.sessions()]
        if population.course is not None:
            sessions = [s for s in sessions if self.course_of(s) == population.course]
        return [r for r in self.results(sorted(sessions)) if population.admits(r, self.squad_of)]

    def last_seq(self) -> int:
        return self.spool.ledger.last_seq()

    def results_since(self, seq: int) -> Iterator[tuple[int, SegmentResult]]:
        rows = list(self.spool.queries.since(seq, kinds=("segment",)))
        yield from zip((row.seq for row in rows), _results(rows), strict=True)

    def course(self, session: str) -> dict[str, Any] | None:
        return self.spool.sessions.course(session)

    def record(self, session: str) -> dict[str, Any] | None:
        return self.spool.sessions.record(session)

    def notes(self, session: str) -> list[dict[str, Any]]:
        return self.spool.sessions.notes(session)

    def rider_power(self, session: str, rider: str) -> tuple[list[float], list[float]]:
        samples = []
        for row in self.spool.queries.rider_rows(session, rider):
            try:
                decoded = decode_event("power", row.payload)
            except WireError:
                continue
            event = decoded.event
            if isinstance(event, PowerSample) and not decoded.implausible and event.power == event.power:
                samples.append((event.wall_time, event.power))
        samples.sort()
        return [t for t, _ in samples], [p for _, p in samples]

    def rider_sessions(self, rider: str) -> list[str]:
        return self.spool.queries.rider_sessions(rider)

    def heard_by(self, session: str) -> dict[str, list[str]]:
        return {}  # the box's own results: it heard them all

    def course_of(self, session: str) -> str | None:
        stored = self.course(session)
        return str(stored.get("id") or stored.get("name") or "") if stored else self.configured_course


def _results(rows: Iterable[Row]) -> Iterator[SegmentResult]:
    """The stored results, typed by the one codec (a row that is not one is logged and left out)."""
    for row in rows:
        try:
            event = decode_event("segment", row.payload).event
        except WireError as exc:
            log.error("results: spool row %d is not a segment result (%s); left out", row.seq, exc.reason)
            continue
        if isinstance(event, SegmentResult):
            yield event
