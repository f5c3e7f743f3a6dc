"""What the coach sets up on the page before the first rider goes: the session, the riders and their
values, which meter and chip is whose (from what the radios hear right now), and notes on results.
The web layer calls this; it calls the live sessions, the rider book and the sources."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gateway.config.settings import Settings
from gateway.errors import NotFound
from gateway.pipeline.completion import SessionCompletion
from gateway.pipeline.riderbook import RiderBook, RiderBookError
from gateway.service.sessions import LiveSessions, add_note, record_of
from gateway.spool.store import Spool
from gateway.status import StatusBoard

NUMBER = re.compile(r"^\d{1,4}\.\d{1,3}(-\d{1,3})?$")  # "2.3", or "2.1-3" for a span over a missed gate
MAX_RIDERS = 200  # riders named present in one session
HEARD_S = 60.0  # a radio not heard for this long leaves the list
ANT_CHANNELS = 8  # an ANTUSB2 or ANTUSB-m stick: one channel searches, seven follow paired meters


def _texts(body: Mapping[str, Any], keys: tuple[str, ...]) -> None:
    """Each of ``keys`` is text when given (a number, a list or an object: 400 saying which, not 500)."""
    for key in keys:
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise RiderBookError(f"{key} must be text, got {type(value).__name__}")


def _number(body: Mapping[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise RiderBookError(f"{key} must be a number, got {value!r}") from None


class SetUpService:
    def __init__(self, sessions: LiveSessions, book: RiderBook, spool: Spool, status: StatusBoard,
                 settings: Settings, on_pair: Callable[[str, str], None] | None = None,
                 completion: SessionCompletion | None = None) -> None:
        self.sessions = sessions
        self.book = book
        self.spool = spool
        self.status = status
        self.settings = settings
        self.on_pair = on_pair
        self.completion = completion
        self.chips = HeardChips()

    # -- sessions ------------------------------------------------------------------------------

    def current(self) -> dict[str, Any]:
        return self.sessions.current()

    def start(self, body: Mapping[str, Any]) -> dict[str, Any]:
        riders = body.get("riders")
        if riders is not None and (not isinstance(riders, list) or len(riders) > MAX_RIDERS
                                   or not all(isinstance(r, str) for r in riders)):
            raise RiderBookError(f"riders must be a list of up to {MAX_RIDERS} rider ids", hint='["r01", "r02"]')
        tags = body.get("tags")
        if isinstance(tags, str):
            tags = [t for t in tags.replace(",", " ").split() if t]
        _texts(body, ("name", "notes"))
        return self.sessions.start(str(body.get("name") or ""), riders=list(riders) if riders else None,
                                   notes=str(body.get("notes") or ""), tags=tags, rider_tags=body.get("rider_tags"))

    def end(self) -> dict[str, Any]:
        return self.sessions.end()

    def add_files(self, session: str, files: list[tuple[Path, str]], *, who: str,
                  choices: Mapping[str, str], offsets: Mapping[str, float]) -> dict[str, Any]:
        """The riders' own recordings into a stored session (``pipeline.completion``)."""
        if self.completion is None:
            raise NotFound("adding files is not available here")
        outcomes = self.completion.add(session, files, who=who, choices=choices, offsets=offsets)
        return {"session": session, "files": [o.as_dict() for o in outcomes]}

    # -- riders --------------------------------------------------------------------------------

    def riders(self) -> list[dict[str, Any]]:
        return self.book.profiles()

    def add_rider(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        """A new rider; the id is the next free "rNN" when none is given (a coach types a name)."""
        _texts(body, ("id", "name", "squad"))
        self.book.add(str(body.get("id") or "").strip() or self.book.next_id(), body.get("name") or "",
                      body.get("squad"))
        self.sessions.riders_changed()
        return self.riders()

    def set_profile(self, rider_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        value = self.book.set_profile(rider_id, ftp_w=_number(body, "ftp_w"), weight_kg=_number(body, "weight_kg"),
                                      day=body.get("from") or None)
        self.sessions.riders_changed()
        return value

    # -- radios and pairing --------------------------------------------------------------------

    def radios(self) -> dict[str, Any]:
        """What the radios hear now, each with whose it is."""
        now = time.time()
        parts = self.status.snapshot().get("components", {})
        pairs = self.book.pairings()
        names = {r.id: r.name for r in self.book.riders_on(now)}

        def owner(key: str) -> dict[str, Any]:
            rider = pairs.get(key)
            return {"rider": rider, "rider_name": names.get(rider or "")}

        out: dict[str, Any] = {"ant": [], "ble": [], "chips": [], "warnings": self.book.warnings()}
        for kind in ("ant", "ble"):
            part = parts.get(f"source.{kind}") or {}
            out[f"{kind}_state"] = part.get("state") or "off"
            for key, info in sorted((part.get("devices") or {}).items()):
                if now - float(info.get("seen") or 0) > HEARD_S:
                    continue
                sensor = str(info.get("address") or key).lower()
                out[kind].append({**info, "id": sensor, "key": f"{kind}:{sensor}",
                                  "age_s": round(now - info["seen"], 1), **owner(f"{kind}:{sensor}")})
            if kind == "ant" and part.get("channels_wanted"):
                wanted, have = int(part["channels_wanted"]), int(part.get("channels") or ANT_CHANNELS)
                if wanted > have:
                    out["warnings"].append(f"the ANT+ stick is full: {wanted} meters paired, {have - 1} channels "
                                           "follow meters (one searches); add a second stick or use BLE")
        # Every chip: those paired (in the configuration or here: each can be set to nobody) and those
        # heard without a rider, counted across sessions (a new session's pipeline counts from zero).
        heard = self.chips.update((parts.get("ingest") or {}).get("unmapped") or {})
        paired = {k.split(":", 1)[1] for k in pairs if k.startswith("chip:")}
        for chip in sorted(paired | set(heard)):
            out["chips"].append({"id": chip, "key": f"chip:{chip}", "crossings": heard.get(chip, 0),
                                 **owner(f"chip:{chip}")})
        out["pairings"] = [{"key": k, "rider": v, "rider_name": names.get(v)} for k, v in sorted(pairs.items())]
        return out

    def pair(self, body: Mapping[str, Any]) -> dict[str, Any]:
        _texts(body, ("kind", "id", "rider"))
        kind, sensor, rider = str(body.get("kind") or ""), str(body.get("id") or ""), body.get("rider")
        result = self.book.pair(kind, sensor, str(rider or "")) if rider else self.book.unpair(kind, sensor)
        self.sessions.riders_changed()
        if rider and self.on_pair is not None:
            self.on_pair(kind, sensor)
        return result

    # -- notes ---------------------------------------------------------------------------------

    def _recorded(self, session: str) -> bool:
        if self.spool.sessions.has_record(session) or session == self.sessions.current().get("session"):
            return True
        return any(s == session for s, *_ in self.spool.queries.segment_sessions())

    def note(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        _texts(body, ("session", "rider_id", "number", "text"))
        session, rider, number = (str(body.get(k) or "") for k in ("session", "rider_id", "number"))
        if not session or not rider or not number:
            raise RiderBookError("a note needs the session, the rider and the segment number")
        if not NUMBER.match(number) or len(rider) > 64:
            raise RiderBookError(f"{number[:20]!r} of {rider[:64]!r} is not a segment result",
                                 hint="a segment number is lap.segment, such as 2.3")
        # A note never creates a session: only one the box recorded takes notes.
        if len(session) > 128 or not self._recorded(session):
            raise NotFound(f"no session {session[:128]!r} on this box", where="notes")
        notes = add_note(self.spool, session, rider, number, str(body.get("text") or ""))
        live = self.sessions.live
        if live is not None:  # the session's record, with its notes, goes to Kafka (compacted: the latest wins)
            live.ingest.submit(record_of(self.spool, session, self.settings))
        return notes


class HeardChips:
    """Crossings of chips nobody owned, per chip, over the box's sessions: each session's pipeline
    counts from zero, so a count that falls means a new session and the old one is kept."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}
        self._before: dict[str, int] = {}
        self._lock = threading.Lock()

    def update(self, unmapped: Mapping[str, int]) -> dict[str, int]:
        with self._lock:
            for key, count in unmapped.items():
                if not key.startswith("transponder:"):
                    continue
                chip = key.split(":", 1)[1]
                seen = self._seen.get(chip, 0)
                if count < seen:
                    self._before[chip] = self._before.get(chip, 0) + seen
                self._seen[chip] = count
            return {chip: self._before.get(chip, 0) + n for chip, n in self._seen.items()}
