"""What the spool keeps of sessions beside their events, typed: the live session the box is in (a
restart keeps it), each session's record as last published, the course a replay brought, the
coach's notes on results. The one place that knows their keys in the spool's settings table."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.spool.file import SpoolFile

_RECORD, _COURSE, _NOTES = "session:", "course:", "notes:"
_LIVE, _STARTED, _SEEN, _INFO = "live_session", "live_session_started", "live_session_seen", "live_session_info"


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


@dataclass(frozen=True)
class LiveMark:
    """The live session as last written: its id, when it started, when the box last ran in it, and
    what the coach named it (None for an automatic session never described)."""

    session: str | None
    started: float | None
    seen: float | None
    info: dict[str, Any] | None


class SessionMeta:
    def __init__(self, file: SpoolFile) -> None:
        self.file = file

    # -- the live session ----------------------------------------------------------------------

    def live(self) -> LiveMark:
        m = self.file.meta
        started, seen, info = m(_STARTED), m(_SEEN), m(_INFO)
        return LiveMark(m(_LIVE), float(started) if started else None, float(seen) if seen else None,
                        orjson.loads(info) if info else None)

    def begin_live(self, session: str, now: float) -> None:
        """A new automatic session at start-up (kept if the disk is full: the box runs all the same)."""
        for key, value in ((_STARTED, repr(now)), (_LIVE, session), (_SEEN, repr(now))):
            self.file.set_meta(key, value)

    def switch_live(self, session: str, now: float, info: Mapping[str, Any]) -> None:
        """A session the coach started or ended: saved at once, or ``SpoolError`` with nothing saved."""
        self.file.save_meta({_LIVE: session, _STARTED: repr(now), _SEEN: repr(now), _INFO: _dumps(info)})

    def touch(self, now: float) -> bool:
        return self.file.set_meta(_SEEN, repr(now))

    # -- records, courses, notes ---------------------------------------------------------------

    @staticmethod
    def record_items(records: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, str]:
        """Settings that store session records (body by session): written with the batch that
        carries them (``Appender.append(meta=...)``)."""
        return {_RECORD + session: _dumps(body) for session, body in records}

    def record(self, session: str) -> dict[str, Any] | None:
        stored = self.file.meta(_RECORD + session)
        return orjson.loads(stored) if stored else None

    def has_record(self, session: str) -> bool:
        return self.file.meta(_RECORD + session) is not None

    def records(self) -> dict[str, dict[str, Any]]:
        return {k[len(_RECORD):]: orjson.loads(v) for k, v in self.file.meta_prefixed(_RECORD).items()}

    def course(self, session: str) -> dict[str, Any] | None:
        stored = self.file.meta(_COURSE + session)
        return orjson.loads(stored) if stored else None

    def set_course(self, session: str, course: Mapping[str, Any]) -> bool:
        return self.file.set_meta(_COURSE + session, _dumps(course))

    def notes(self, session: str) -> list[dict[str, Any]]:
        stored = self.file.meta(_NOTES + session)
        return list(orjson.loads(stored)) if stored else []

    def save_notes(self, session: str, notes: list[dict[str, Any]]) -> None:
        self.file.save_meta({_NOTES + session: _dumps(notes)})
