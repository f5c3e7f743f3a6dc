"""The box's live session: named by the coach (started and ended from the page or the command
line), or automatic in between (events outside a started session are never lost: they go to an
automatic session, as before), and the session records that tell Kafka and the hub about them.

Starting a session builds the new session's pipeline first and moves the sources onto it; the old
one then closes its open segments (their results stay in the old session) and stops. A restart
keeps the session and what the coach said about it (spool meta ``live_session_info``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gateway.config.settings import Settings
from gateway.model import SessionRecord
from gateway.pipeline import session
from gateway.pipeline.accepted import Accepted
from gateway.pipeline.build import Described, SessionPipeline, build
from gateway.pipeline.riderbook import RiderBook
from gateway.pipeline.session import SessionError, SessionInputError, parse_tags
from gateway.spool.store import Spool
from gateway.watch.health import clock_state

log = logging.getLogger(__name__)

PAIRING_CHANGES = 200  # pairing changes a session's record carries (the newest)
MAX_NOTES = 300  # notes on one session's results: its record (with them) stays well under Kafka's 1 MB


class LiveSessions:
    def __init__(self, settings: Settings, spool: Spool, book: RiderBook, gateway_id: str,
                 listeners: Sequence[Callable[[list[Accepted]], None]]) -> None:
        self.settings = settings
        self.spool = spool
        self.book = book
        self.gateway_id = gateway_id
        self.listeners = list(listeners)
        self.live: SessionPipeline | None = None
        self.info: dict[str, Any] = {}
        self._lock = threading.Lock()

    # -- the pipeline the sources feed ---------------------------------------------------------

    def open(self) -> SessionPipeline:
        """The session the box was in (a restart keeps it), or a new automatic one."""
        session_id = session.live_session(self.spool, self.gateway_id, self.settings.gateway.session_gap_h)
        info = self.spool.sessions.live().info or {}
        if info.get("session") != session_id:
            info = self._automatic(session_id)
        self.info = info
        live = self.live = self._build(session_id, info["started"])
        live.runner.restore(self.spool)
        live.start()
        return live

    def _automatic(self, session_id: str, started: float | None = None) -> dict[str, Any]:
        started = started if started is not None else self.spool.sessions.live().started or time.time()
        label = time.strftime("%d %b %H:%M", time.gmtime(started))
        return {"session": session_id, "name": f"{self.gateway_id} {label}", "named": False, "started": started,
                "tags": {}, "notes": "", "present": None}

    def _build(self, session_id: str, started: float) -> SessionPipeline:
        return build(self.settings, self.spool, session_id, riders=self.book.riders_on(started),
                     subscribers=self.listeners)

    def submit(self, event: Any) -> None:
        """Where the sources hand their events (whichever session is live)."""
        live = self.live
        if live is not None:
            live.ingest.submit(event)

    # -- records -------------------------------------------------------------------------------

    def publish(self, ended: float | None = None, pipeline: SessionPipeline | None = None,
                info: Mapping[str, Any] | None = None) -> None:
        pipeline = pipeline or self.live
        info = info or self.info
        if pipeline is None:
            return
        # The newest changes only: a record is one Kafka message, and a day of swaps must not outgrow it.
        history = [h for h in self.book.history() if h["at"] >= info["started"] - 1][-PAIRING_CHANGES:]
        pipeline.publish("live", started=info["started"], ended=ended, about=Described(
            info["name"], tags=info.get("tags"), notes=info.get("notes", ""), present=info.get("present"),
            extra={"pairings": self.book.pairings(), "pairing_changes": history,
                   "rider_tags": info.get("rider_tags") or {},
                   "result_notes": notes_of(self.spool, pipeline.session_id), "clock": clock_state()}))

    def current(self) -> dict[str, Any]:
        with self._lock:
            return {**self.info, "ended": None}

    # -- the coach's controls (called off the event loop: they wait for the ingest thread) -------

    def start(self, name: str, *, riders: Sequence[str] | None = None, notes: str = "",
              tags: Sequence[str] | Mapping[str, str] | None = None,
              rider_tags: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``rider_tags``: each rider's own tags for this session (a planned test's run: who rides
        which setup), over the session's ``tags``."""
        name = (name or "").strip()
        if not name or len(name) > 80:
            raise SessionInputError("a session needs a name of 1 to 80 characters", hint="for example 'Hill repeats'")
        if len(notes) > 2000:
            raise SessionInputError("notes are limited to 2000 characters")
        parsed = parse_tags(tags)
        if rider_tags is not None and (not isinstance(rider_tags, Mapping) or len(rider_tags) > 200):
            raise SessionInputError("rider_tags must map up to 200 rider ids to their tags",
                                    hint='{"r01": ["tyres=1.6bar"]}')
        own = {str(r): parse_tags(t) for r, t in (rider_tags or {}).items()}
        present = list(riders) if riders else None
        unknown = [r for r in [*(present or []), *own] if not self.book.known(r)]
        if unknown:
            raise SessionInputError(f"unknown rider(s): {', '.join(unknown)}", hint="add them on the riders page first")
        with self._lock:
            now = time.time()
            session_id = session.new_session_id(self.gateway_id, now)
            info = {"session": session_id, "name": name, "named": True, "started": now, "tags": parsed,
                    "notes": notes, "present": present, "rider_tags": own}
            self._switch(session_id, info, now)
            log.info("session %s started: %s", session_id, name)
            return dict(info)

    def end(self) -> dict[str, Any]:
        with self._lock:
            if not self.info.get("named"):
                raise SessionError("no session was started: events go to an automatic session",
                                   hint="start a session first")
            now = time.time()
            ended = {**self.info, "ended": now}
            session_id = session.new_session_id(self.gateway_id, now, suffix="-auto")
            self._switch(session_id, self._automatic(session_id, now), now)
            log.info("session %s ended", ended["session"])
            return ended

    def _switch(self, session_id: str, info: dict[str, Any], now: float) -> None:
        # On disk before anything changes: a session is reported started (or ended) only once a
        # restart would keep it; a full disk refuses it and leaves the box as it was.
        self.spool.sessions.switch_live(session_id, now, info)
        old, old_info = self.live, self.info
        new = self._build(session_id, now).start()
        self.live, self.info = new, info
        if old is not None:
            # Its record says it ended: a named one, or an automatic one that published a record (a box
            # with sensors; before, an automatic session replaced by a started one kept ended: null).
            if old_info.get("named") or self.spool.sessions.has_record(old.session_id):
                self.publish(ended=now, pipeline=old, info=old_info)
            old.finish()  # its open segments close in their own session
        self.publish()

    def riders_changed(self) -> None:
        """A pairing or a profile changed: the live session uses it at once, and says so."""
        with self._lock:
            if self.live is not None:
                self.live.update_riders(self.book.riders_on(self.info["started"]))
                self.publish()

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()


def notes_of(spool: Spool, session_id: str) -> list[dict[str, Any]]:
    return spool.sessions.notes(session_id)


def add_note(spool: Spool, session_id: str, rider_id: str, number: str, text: str) -> list[dict[str, Any]]:
    """A coach's note on one result ("chain dropped"); an empty text removes the note. Saved before it
    is reported (a full disk refuses it: ``SpoolError``)."""
    text = text.strip()
    if len(text) > 280:
        raise SessionInputError("a note is limited to 280 characters")
    notes = [n for n in notes_of(spool, session_id) if (n["rider_id"], n["number"]) != (rider_id, number)]
    if text:
        if len(notes) >= MAX_NOTES:
            raise SessionError(f"a session holds at most {MAX_NOTES} notes", hint="remove one first")
        notes.append({"rider_id": rider_id, "number": number, "text": text, "at": time.time()})
    spool.sessions.save_notes(session_id, notes)
    return notes


def record_of(spool: Spool, session_id: str, settings: Settings) -> SessionRecord:
    """A session's record as last published (or a plain one), with its result notes as they are."""
    body = spool.sessions.record(session_id) or {}
    course = body.get("course") or spool.sessions.course(session_id) or {
        **settings.course.as_dict(), "id": settings.course.key}
    known = {"kind", "name", "started", "ended", "course", "riders", "files", "tags", "notes"}
    extra = {k: v for k, v in body.items() if k not in known}
    extra["result_notes"] = notes_of(spool, session_id)
    return SessionRecord(session_id, body.get("kind") or "live", body.get("name") or session_id,
                         float(body.get("started") or time.time()), body.get("ended"), course,
                         tuple(body.get("riders") or ()), tuple(body.get("files") or ()), body.get("tags") or {},
                         body.get("notes") or "", extra)
