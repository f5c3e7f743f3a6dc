"""A folder the box watches for riders' recordings (a USB stick the coach plugs in after the
session): each new FIT or Axiamo file goes to the stored session whose time it overlaps, exactly as
if added on the set-up page (``pipeline.completion``). What became of each file is on the status
page; a file the box is not sure about waits for the coach on the set-up page."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.complete.align import MAX_OFFSET_S
from gateway.complete.headunit import KINDS, read_head_unit
from gateway.errors import GatewayError
from gateway.pipeline.completion import SessionCompletion
from gateway.spool.store import Spool
from gateway.status import StatusBoard

log = logging.getLogger(__name__)
KEPT = 20  # the newest outcomes shown on the status page


class FolderWatch:
    def __init__(self, folder: Path, completion: SessionCompletion, spool: Spool, status: StatusBoard,
                 live_session: Callable[[], str | None]) -> None:
        self.folder = folder
        self.completion = completion
        self.spool = spool
        self.status = status
        self.live_session = live_session
        self._seen: dict[str, tuple[int, float]] = {}
        self.outcomes: list[dict[str, Any]] = []

    def poll(self) -> None:
        """Look at the folder once: every file new or changed since the last look is added."""
        try:
            entries = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in KINDS and p.is_file())
        except OSError as exc:  # the stick is not plugged in: nothing to do, and said once
            self._post(f"{self.folder}: {exc.strerror or exc}")
            return
        for path in entries:
            try:
                stat = path.stat()
            except OSError:
                continue
            mark = (stat.st_size, stat.st_mtime)
            if self._seen.get(path.name) == mark or time.time() - stat.st_mtime < 2.0:
                continue  # known, or still being copied
            self._seen[path.name] = mark
            self._add(path)
        self._post(None)

    def _add(self, path: Path) -> None:
        try:
            file = read_head_unit(path, path.name)
        except GatewayError as exc:
            self._note(path.name, "refused", f"{path.name}: {exc.message}; nothing changed")
            return
        session = self._session_of(file.start, file.end)
        if session is None:
            self._note(path.name, "refused", f"{path.name}: no session on this box at the time the file was "
                       "recorded; nothing changed")
            return
        try:
            (outcome,) = self.completion.add(session, [(path, path.name)], who=f"folder {self.folder}")
        except GatewayError as exc:
            self._note(path.name, "refused", f"{path.name}: {exc.message}")
            return
        message = outcome.message + (": add it on the set-up page" if outcome.status == "choose" else "")
        self._note(path.name, outcome.status, message, session)

    def _session_of(self, start: float, end: float) -> str | None:
        """The stored session (not the one running) that overlaps the file the most."""
        live = self.live_session()
        best, overlap = None, 0.0
        for session, record in self.spool.sessions.records().items():
            if session == live or record.get("started") is None:
                continue
            lo = float(record["started"]) - MAX_OFFSET_S
            hi = float(record.get("ended") or record["started"] + 12 * 3600) + MAX_OFFSET_S
            shared = min(hi, end) - max(lo, start)
            if shared > overlap:
                best, overlap = session, shared
        return best

    def _note(self, name: str, status: str, message: str, session: str | None = None) -> None:
        log.info("files folder: %s", message)
        self.outcomes = [*self.outcomes, {"file": name, "status": status, "message": message, "session": session,
                                          "at": time.time()}][-KEPT:]

    def _post(self, problem: str | None) -> None:
        waiting = [o["message"] for o in self.outcomes if o["status"] in ("choose", "refused")]
        self.status.post("files", folder=str(self.folder), problem=problem, outcomes=self.outcomes,
                         warnings=waiting[-3:])
