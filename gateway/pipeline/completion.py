"""Riders' files into a session the box stored (``complete.session`` decides what they change): the
session read from the spool, and the added samples, the corrected results and the record listing
the files written through the session's own spool, so Kafka, the hub, the page's stream, exports
and the debrief all follow."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config.settings import Settings
from gateway.config.settings import rider as rider_settings
from gateway.errors import NotFound
from gateway.model import PowerSample, SegmentResult, SessionRecord, current_results
from gateway.pipeline.accepted import Accepted
from gateway.pipeline.ingest import Ingest
from gateway.pipeline.roster import Roster
from gateway.pipeline.session import SessionError
from gateway.pipeline.stored import stored_events
from gateway.spool.store import Spool
from gateway.wire import WireError, decode_event

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from gateway.complete.session import Outcome, SessionData

__all__ = ["SessionCompletion"]


class SessionCompletion:
    def __init__(self, settings: Settings, spool: Spool, *, live_session: Callable[[], str | None] = lambda: None,
                 subscribers: Sequence[Callable[[list[Accepted]], None]] = ()) -> None:
        self.settings = settings
        self.spool = spool
        self.live_session = live_session
        self.subscribers = subscribers

    def add(self, session_id: str, files: Sequence[tuple[Path, str]], *, who: str,
            choices: Mapping[str, str] | None = None, offsets: Mapping[str, float] | None = None) -> list[Outcome]:
        """Add ``files`` (path, name shown) to ``session_id``; ``choices``: file name -> rider id the
        coach picked; ``offsets``: file name -> seconds from the file's clock to the box's."""
        # Imported at the first file: reading and aligning recordings takes NumPy, which a box that
        # is never handed a file need not carry (13 MB of its memory).
        from gateway.complete.session import plan

        session = self._load(session_id)
        done = plan(session, files, who=who, np_window=self.settings.metrics.np_window, choices=choices,
                    offsets=offsets)
        if done.samples:
            self._commit(session, done.samples, done.corrections, done.record)
        return done.outcomes

    def _load(self, session_id: str) -> SessionData:
        from gateway.complete.session import SessionData, named

        # The running session first: an automatic one (no sensors yet) has no record to find.
        if session_id == self.live_session():
            raise SessionError(f"session {session_id!r} is still running", where="add files",
                               hint="end the session first: files complete a session that is over")
        record = self.spool.sessions.record(session_id)
        if record is None:
            raise NotFound(f"no session {session_id!r} on this box", where="add files",
                           hint="trackside-gateway session list shows the sessions")
        # By rider (a crossing of a chip no one wore played no part live either).
        events = named((s.event, s.rider_id) for s in stored_events(self.spool, session_id, "add files")
                       if s.rider_id is not None)
        if not events:
            raise NotFound(f"session {session_id!r} has no samples or crossings in the spool", where="add files",
                           hint="delivered events are pruned after spool.retention_h hours")
        return SessionData(session_id, record, events, self._stored_results(session_id))

    def _stored_results(self, session_id: str) -> list[SegmentResult]:
        results = []
        for row in self.spool.queries.segment_rows(session_id):
            try:
                event = decode_event("segment", row.payload).event
            except WireError:
                continue
            if isinstance(event, SegmentResult):
                results.append(event)
        return current_results(results)

    def _commit(self, session: SessionData, samples: list[PowerSample], corrections: list[SegmentResult],
                record: Mapping[str, object]) -> None:
        from gateway.complete.session import record_extra

        riders = tuple(session.record.get("riders") or ())
        # Added samples name their rider directly (``PowerSample.sensor``): the roster knows the names.
        ingest = Ingest(self.spool, Roster(tuple(rider_settings(r) for r in riders)), session.session_id)
        for subscriber in self.subscribers:
            ingest.subscribe(subscriber)
        ingest.start()
        try:
            ingest.submit_many(samples)
            ingest.submit_many(corrections)
            r = session.record
            ingest.submit(SessionRecord(session.session_id, str(r.get("kind") or "live"),
                                        str(r.get("name") or session.session_id),
                                        float(r.get("started") or session.span[0]), r.get("ended"),
                                        r.get("course") or {}, riders, tuple(r.get("files") or ()),
                                        dict(r.get("tags") or {}), str(r.get("notes") or ""), record_extra(record)))
        finally:
            ingest.stop(60.0)
