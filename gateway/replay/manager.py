"""Several replays at once, each its own session with its own ingest and engine, on one spool."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.config import EMBEDDED, Config
from gateway.engine.course import Course
from gateway.engine.segments import RiderInfo, SegmentEngine
from gateway.errors import GatewayError
from gateway.pipeline.ingest import Accepted, Ingest, Plausible, Roster
from gateway.pipeline.runner import EngineRunner
from gateway.replay.files import expand, load_session, merged
from gateway.replay.player import Clock, Player
from gateway.spool.store import Spool

log = logging.getLogger(__name__)

KEEP_FINISHED = 5  # finished replays whose final status stays listed (a looping demo makes one a minute)


class ReplayError(GatewayError):
    """A replay control that cannot be done (unknown session, bad speed)."""


def check_factor(factor: object) -> float:
    """A speed factor from outside (config, API, command line): a finite number from 0 to 1000."""
    if isinstance(factor, bool) or not isinstance(factor, int | float) or not math.isfinite(factor) \
            or not 0 <= factor <= 1000:
        raise ReplayError(f"the speed factor must be a number from 0 to 1000, got {factor!r}", where="replay",
                          hint="1 = real time, 0.5 = twice as fast, 0 = as fast as possible")
    return float(factor)


@dataclass
class Replay:
    player: Player
    ingest: Ingest
    runner: EngineRunner
    files: list[str]
    loop: bool
    task: asyncio.Task[None] | None = None
    results: int = 0
    stored: int = 0
    started: float = field(default_factory=time.time)


class ReplayManager:
    def __init__(self, config: Config, spool: Spool, *, clock: Clock | None = None,
                 listeners: list[Callable[[list[Accepted]], None]] | None = None) -> None:
        self.config = config
        self.spool = spool
        self.clock = clock
        self.listeners = listeners or []
        self.replays: dict[str, Replay] = {}
        # Final statuses of finished replays; the replays themselves (their events, their ingest
        # thread and its spool connection) are released when they end.
        self.finished: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._counter = itertools.count(1)

    def _session_id(self) -> str:
        return f"replay-{time.strftime('%Y%m%d-%H%M%S')}-{next(self._counter)}"

    async def start(self, files: list[str], *, factor: float | None = None, loop: bool = False,
                    offset_s: float = 0.0, course_from_file: bool | None = None) -> str:
        """Read every file, then start playing; returns the new session id (raises on a bad file).

        The course comes from the files when ``course_from_file`` is set, and by default when the
        box runs on its embedded defaults (no course of its own): see ``files.load_session``.
        """
        cfg = self.config
        from_file = cfg.source == EMBEDDED if course_from_file is None else course_from_file
        factor = cfg.section("replay")["simulationFactor"] if factor is None else factor
        check_factor(factor)
        if loop and factor <= 0:
            # At full speed a loop would start a new replay (and store a whole session) every second.
            raise ReplayError(f"a looping replay needs a speed factor above 0, got {factor:g}", where="replay",
                              hint="use 0.05 for twenty times real time")
        gates = [g["id"] for g in cfg.section("course")["gates"]]
        specs = expand(files)
        if offset_s:
            specs = [type(s)(s.path, s.rider, s.offset_s + offset_s) for s in specs]
        loaded = await asyncio.to_thread(load_session, specs, gates, cfg.section("riders"), from_file=from_file)
        recordings = loaded.recordings
        riders = cfg.section("riders") + loaded.strangers
        course = Course.from_config(cfg.section("course"))
        if loaded.gates != gates:
            course = Course(tuple(loaded.gates), tuple(f"Segment {k}" for k in range(1, len(loaded.gates) + 1)),
                            course.debounce_s, course.max_segment_s)
        session = self._session_id()
        sp = cfg.section("spool")
        ingest = Ingest(self.spool, Roster(riders), session, batch_interval_s=sp["batch_interval_ms"] / 1000.0,
                        batch_size=sp["batch_size"],
                        plausible=Plausible.from_config(cfg.section("sources")["plausible"]))
        engine = SegmentEngine(course, RiderInfo.roster(riders), session, np_window=cfg.section("metrics")["np_window"])
        if loaded.gates != gates:
            # The page names a session's segments from its course: this one is the files'.
            await asyncio.to_thread(self.spool.set_meta, f"course:{session}",
                                    json.dumps({"gates": [{"id": g} for g in course.gates],
                                                "segments": [{"name": n} for n in course.segment_names]}))
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
        replay.stored += len(batch)

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
            self._release(replay)
        session = replay.player.session_id
        if replay.ingest.rejected:
            log.error("replay %s %s: %d of %d events stored, %d refused by the spool (%s)", session, state,
                      replay.stored, replay.player.position, replay.ingest.rejected,
                      self.spool.counters.last_error or "full")
        else:
            log.info("replay %s %s after %d events, %d segment results", session, state, replay.player.position,
                     replay.results)
        if state == "finished" and replay.loop:
            try:
                await self.start(replay.files, factor=replay.player.factor, loop=True)
            except GatewayError as exc:
                log.error("replay %s cannot start again: %s", session, exc)

    def _release(self, replay: Replay) -> None:
        session = replay.player.session_id
        self.finished[session] = self._status_of(replay, final=True)
        self.replays.pop(session, None)
        while len(self.finished) > KEEP_FINISHED:
            self.finished.popitem(last=False)

    async def _tick(self, replay: Replay) -> None:
        # Time-only riders (no power stream) finish their segments on the recording's clock.
        while True:
            await asyncio.sleep(0.5)
            replay.runner.tick(replay.player.recorded_now())

    def get(self, session: str) -> Replay:
        try:
            return self.replays[session]
        except KeyError:
            if session in self.finished:
                raise ReplayError(f"replay {session} has ended: start a new one", where="replay") from None
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
            if factor is None:
                raise ReplayError("speed needs a factor of 0 or more (1 = real time, 0.5 = twice as fast)")
            check_factor(factor)
            player.set_speed(factor)
        else:
            raise ReplayError(f"unknown action {action!r}: use pause, resume, stop or speed")
        return self.status(session)

    def status(self, session: str) -> dict[str, Any]:
        if session in self.finished:
            return dict(self.finished[session])
        return self._status_of(self.get(session))

    @staticmethod
    def _status_of(replay: Replay, final: bool = False) -> dict[str, Any]:
        status = {**replay.player.status(), "results": replay.results, "files": replay.files,
                  "stored": replay.stored, "rejected": replay.ingest.rejected}
        if not final and status["state"] in ("finished", "stopped") and replay.task is not None \
                and not replay.task.done():
            status["state"] = "finishing"  # the last segments are being closed and stored
        return status

    def statuses(self) -> list[dict[str, Any]]:
        """Finished replays (the last few) first, then the running ones, oldest first."""
        return [dict(s) for s in self.finished.values()] + [self._status_of(r) for r in self.replays.values()]

    def active(self) -> list[str]:
        return [s for s, r in self.replays.items() if r.task is not None and not r.task.done()]

    async def wait(self, session: str) -> None:
        if session in self.finished:
            return
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
