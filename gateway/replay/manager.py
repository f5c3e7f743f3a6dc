"""Several replays at once, each its own session with its own ingest and engine, on one spool."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.config import Config
from gateway.engine.course import Course
from gateway.engine.runner import EngineRunner
from gateway.engine.segments import RiderInfo, SegmentEngine
from gateway.errors import GatewayError
from gateway.ingest import Accepted, Ingest, Roster
from gateway.replay.files import expand, load_session, merged
from gateway.replay.player import Clock, Player
from gateway.spool import Spool

log = logging.getLogger(__name__)


class ReplayError(GatewayError):
    """A replay control that cannot be done (unknown session, bad speed)."""


@dataclass
class Replay:
    player: Player
    ingest: Ingest
    runner: EngineRunner
    files: list[str]
    loop: bool
    task: asyncio.Task[None] | None = None
    results: int = 0
    started: float = field(default_factory=time.time)


class ReplayManager:
    def __init__(self, config: Config, spool: Spool, *, clock: Clock | None = None,
                 listeners: list[Callable[[list[Accepted]], None]] | None = None) -> None:
        self.config = config
        self.spool = spool
        self.clock = clock
        self.listeners = listeners or []
        self.replays: dict[str, Replay] = {}
        self._counter = itertools.count(1)

    def _session_id(self) -> str:
        return f"replay-{time.strftime('%Y%m%d-%H%M%S')}-{next(self._counter)}"

    async def start(self, files: list[str], *, factor: float | None = None, loop: bool = False,
                    offset_s: float = 0.0) -> str:
        """Read every file, then start playing; returns the new session id (raises on a bad file)."""
        cfg = self.config
        factor = cfg.section("replay")["simulationFactor"] if factor is None else factor
        if factor < 0:
            raise ReplayError("the speed factor cannot be negative", where="replay")
        gates = [g["id"] for g in cfg.section("course")["gates"]]
        specs = expand(files)
        if offset_s:
            specs = [type(s)(s.path, s.rider, s.offset_s + offset_s) for s in specs]
        recordings, strangers = await asyncio.to_thread(load_session, specs, gates, cfg.section("riders"))
        riders = cfg.section("riders") + strangers
        session = self._session_id()
        sp = cfg.section("spool")
        ingest = Ingest(self.spool, Roster(riders), session, batch_interval_s=sp["batch_interval_ms"] / 1000.0,
                        batch_size=sp["batch_size"])
        engine = SegmentEngine(Course.from_config(cfg.section("course")), RiderInfo.roster(riders), session)
        runner = EngineRunner(engine, ingest.submit)
        replay = Replay(Player(session, merged(recordings), ingest.submit, factor=factor, clock=self.clock,
                               backlog=lambda: ingest.pending, label=", ".join(r.path for r in recordings)),
                        ingest, runner, files, loop)
        ingest.subscribe(runner.on_accepted)
        ingest.subscribe(lambda batch: self._count(replay, batch))
        for listener in self.listeners:
            ingest.subscribe(listener)
        ingest.start()
        self.replays[session] = replay
        replay.task = asyncio.create_task(self._play(replay), name=f"replay {session}")
        log.info("replay %s: %d events from %d file(s) at factor %g", session, len(replay.player.events),
                 len(recordings), factor)
        return session

    @staticmethod
    def _count(replay: Replay, batch: list[Accepted]) -> None:
        replay.results += sum(1 for a in batch if a.row.kind == "segment")

    async def _play(self, replay: Replay) -> None:
        ticker = asyncio.create_task(self._tick(replay))
        try:
            state = await replay.player.run()
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            if replay.player.state == "finished":
                # The engine sees events once committed: let the last ones through, then close
                # every open segment.
                await asyncio.to_thread(replay.ingest.flush, 60.0)
                replay.runner.flush()
            await asyncio.to_thread(replay.ingest.stop)
        log.info("replay %s %s after %d events, %d segment results", replay.player.session_id, state,
                 replay.player.position, replay.results)
        if state == "finished" and replay.loop:
            await self.start(replay.files, factor=replay.player.factor, loop=True)

    async def _tick(self, replay: Replay) -> None:
        # Time-only riders (no power stream) finish their segments on the recording's clock.
        while True:
            await asyncio.sleep(0.5)
            replay.runner.tick(replay.player.recorded_now())

    def get(self, session: str) -> Replay:
        try:
            return self.replays[session]
        except KeyError:
            raise ReplayError(f"no replay with session id {session!r}", where="replay") from None

    def control(self, session: str, action: str, factor: float | None = None) -> dict[str, Any]:
        player = self.get(session).player
        if action == "pause":
            player.pause()
        elif action == "resume":
            player.resume()
        elif action == "stop":
            player.stop()
        elif action == "speed":
            if factor is None or factor < 0:
                raise ReplayError("speed needs a factor of 0 or more (1 = real time, 0.5 = twice as fast)")
            player.set_speed(factor)
        else:
            raise ReplayError(f"unknown action {action!r}: use pause, resume, stop or speed")
        return self.status(session)

    def status(self, session: str) -> dict[str, Any]:
        replay = self.get(session)
        status = {**replay.player.status(), "results": replay.results, "files": replay.files}
        if status["state"] in ("finished", "stopped") and replay.task is not None and not replay.task.done():
            status["state"] = "finishing"  # the last segments are being closed and stored
        return status

    def statuses(self) -> list[dict[str, Any]]:
        return [self.status(s) for s in self.replays]

    def active(self) -> list[str]:
        return [s for s, r in self.replays.items() if r.task is not None and not r.task.done()]

    async def wait(self, session: str) -> None:
        replay = self.get(session)
        if replay.task is not None:
            await replay.task

    async def close(self) -> None:
        for replay in self.replays.values():
            replay.loop = False
            replay.player.stop()
        for replay in list(self.replays.values()):
            if replay.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await replay.task
