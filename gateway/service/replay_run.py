"""`trackside-gateway replay`: the root that plays the files given and nothing else.

No radio or serial port is opened, no live session is kept, nothing is forwarded, whatever the
config enables for live use; replays the config names are not played. The page (unless
``web=False``) serves the replays as they run; without it the run ends when the last one does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config import Config
from gateway.replay.manager import ReplayManager
from gateway.service.root import Root
from gateway.spool.store import Spool

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 0.5


@dataclass(frozen=True)
class Play:
    """What to play: the files (as ``replay.files.expand`` reads them), at ``factor`` (None: the
    config's), with the course from the files (None: when no config is given)."""

    files: list[str]
    factor: float | None = None
    course_from_file: bool | None = None


class ReplayRun(Root):
    def __init__(self, config: Config, play: Play, *, state_dir: Path | None = None, port: int | None = None,
                 web: bool = True, progress: Callable[[ReplayManager], None] | None = None) -> None:
        super().__init__(config, state_dir=state_dir, port=port, web=web)
        self.play = play
        self.progress = progress
        self.tick_interval = PROGRESS_EVERY_S if progress is not None else None

    async def _start(self, spool: Spool) -> None:
        log.info("replay only: no live session, no radios, no uplink; spool %s", spool.path)

    async def _started(self) -> None:
        assert self.replays is not None
        await self.replays.start(self.play.files, factor=self.play.factor, course_from_file=self.play.course_from_file)

    async def _tick(self) -> bool:
        if self.replays is None:
            return True
        if self.progress is not None:
            self.progress(self.replays)
        if not self.web_enabled and not self.replays.active():
            log.info("replay finished")
            return False
        return True

    def refused(self) -> list[dict[str, Any]]:
        """The replays whose events the spool refused (a full disk): the command exits 1 for them."""
        return [s for s in (self.replays.statuses() if self.replays else []) if s.get("rejected")]
