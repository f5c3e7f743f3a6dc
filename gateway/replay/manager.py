"""Several replays at once, each its own session with its own ingest and engine, on one spool."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from gateway.config import EMBEDDED, Config, rider
from gateway.config.settings import RiderSettings
from gateway.errors import Busy, GatewayError, NotFound, ReplayError
from gateway.model import GateCrossing, PowerSample, SegmentResult
from gateway.pipeline.accepted import Accepted, events_in
from gateway.pipeline.build import Described, SessionPipeline, build
from gateway.pipeline.riderbook import RiderBook
from gateway.pipeline.session import new_session_id
from gateway.pipeline.stored import stored_events
from gateway.replay.files import expand, load_session, merged
from gateway.replay.player import Clock, Player, check_factor
from gateway.spool.store import Spool

log = logging.getLogger(__name__)

KEEP_FINISHED = 5  # finished replays whose final status stays listed (a looping demo makes one a minute)
MAX_FILES = 64  # a squad's power and timing files; more in one replay is a mistake, and costs memory


@dataclass
class Replay:
    player: Player
    pipeline: SessionPipeline
    files: list[str]
    loop: bool
    counts: dict[str, int] = field(default_factory=dict)  # results and rows stored, counted on its ingest thread
    task: asyncio.Task[None] | None = None
    started: float = field(default_factory=time.time)
    name: str = ""
    of_session: str | None = None  # a review: the stored session it plays again
    tags: dict[str, str] = field(default_factory=dict)  # equipment or conditions, for comparisons

    @property
    def results(self) -> int:
        return self.counts.get("results", 0)

    @property
    def stored(self) -> int:
        return self.counts.get("stored", 0)


def _count(counts: dict[str, int], batch: list[Accepted]) -> None:
    counts["results"] += sum(1 for a in batch if type(a.event) is SegmentResult)
    counts["stored"] += events_in(batch)


class ReplayManager:
    def __init__(self, config: Config, spool: Spool, *, clock: Clock | None = None,
                 listeners: list[Callable[[list[Accepted]], None]] | None = None,
                 book: RiderBook | None = None) -> None:
        self.config = config
        self.book = book
        self.spool = spool
        self.clock = clock
        self.listeners = listeners or []
        self.replays: dict[str, Replay] = {}
        # Final statuses of finished replays; the replays themselves (their events, their ingest
        # thread and its spool connection) are released when they end.
        self.finished: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._starting = 0  # replays being read or built, not yet playing

    def _session_id(self) -> str:
        return new_session_id(self.config.gateway_id, prefix="replay-")

    @contextlib.contextmanager
    def _admitted(self, what: str) -> Iterator[None]:
        """A place among ``replay.max_active`` for a replay or review being started: each holds a
        thread and its recording in memory (160 reviews at once took the box past its unit's
        MemoryMax and TasksMax). Starting ones count too: reading files outlives a request that
        timed out."""
        limit = self.config.settings.replay.max_active
        if len(self.active()) + self._starting >= limit:
            raise Busy(f"{limit} replays are playing or starting already; {what} was not started",
                       where="replay", hint="stop one, or wait for one to end (replay.max_active)")
        self._starting += 1
        try:
            yield
        finally:
            self._starting -= 1

    async def start(self, files: list[str], *, factor: float | None = None, loop: bool = False,
                    offset_s: float = 0.0, course_from_file: bool | None = None,
                    tags: dict[str, str] | None = None) -> str:
        """Read every file, then start playing; returns the new session id (raises on a bad file).

        The course comes from the files when ``course_from_file`` is set, and by default when the
        box runs on its embedded defaults (no course of its own): see ``files.load_session``.
        """
        with self._admitted("this replay"):
            return await self._start(files, factor=factor, loop=loop, offset_s=offset_s,
                                     course_from_file=course_from_file, tags=tags)

    async def _start(self, files: list[str], *, factor: float | None, loop: bool, offset_s: float,
                     course_from_file: bool | None, tags: dict[str, str] | None) -> str:
        settings = self.config.settings
        from_file = self.config.source == EMBEDDED if course_from_file is None else course_from_file
        factor = check_factor(settings.replay.simulation_factor if factor is None else factor)
        if loop and factor <= 0:
            # At full speed a loop would start a new replay (and store a whole session) every second.
            raise ReplayError(f"a looping replay needs a speed factor above 0, got {factor:g}", where="replay",
                              hint="use 0.05 for twenty times real time")
        gates = settings.course.gate_ids
        specs = expand(files)
        if len(specs) > MAX_FILES:
            raise ReplayError(f"{len(specs)} files in one replay; at most {MAX_FILES} are played together",
                              where="replay", hint="replay a session's files (one per rider, and its timing file)")
        if offset_s:
            specs = [type(s)(s.path, s.rider, s.offset_s + offset_s) for s in specs]
        loaded = await asyncio.to_thread(load_session, specs, gates, settings.riders, from_file=from_file)
        session = self._session_id()
        counts = {"results": 0, "stored": 0}
        events = merged(loaded.recordings)
        # FTP and weight as they were on the recording's date.
        roster = self.book.riders_on(events[0].wall_time) if self.book and events else settings.riders
        pipeline = build(settings, self.spool, session, riders=(*roster, *map(rider, loaded.strangers)),
                         gates=loaded.gates, subscribers=[lambda batch: _count(counts, batch), *self.listeners],
                         replay=True)
        if loaded.gates != gates:
            # The page names a session's segments from its course: this one is the files'.
            course = {**pipeline.course.as_dict(), "id": pipeline.course.key}
            await asyncio.to_thread(self.spool.sessions.set_course, session, course)
        player = Player(session, events, pipeline.ingest, factor=factor, clock=self.clock,
                        label=", ".join(r.path for r in loaded.recordings))
        # Time-only riders (no power stream) finish their segments on the recording's clock; a
        # rider's last segment closes with the last sample of the rider's file.
        pipeline.clock = player.recorded_now
        ends: dict[str, float] = {}
        for r in loaded.recordings:
            if r.samples and r.rider:
                ends[r.rider] = max(ends.get(r.rider, -math.inf), r.samples[-1].wall_time)
        pipeline.runner.engine.set_stream_ends(ends)
        names = [PurePath(r.path).name for r in loaded.recordings]
        replay = Replay(player, pipeline, files, loop, counts=counts, name=replay_name(names), tags=dict(tags or {}))
        pipeline.start()
        pipeline.publish("replay", started=player.first, about=Described(replay.name, names, replay.tags))
        self.replays[session] = replay
        replay.task = asyncio.create_task(self._play(replay), name=f"replay {session}")
        log.info("replay %s: %d events from %d file(s) at factor %g", session, len(player.events),
                 len(loaded.recordings), factor)
        return session

    async def review(self, stored: str, *, factor: float | None = None) -> str:
        """Play a session stored in the spool again, through the same pipeline, as a new session
        ("look at lap 2, segment 4"); returns the new session id."""
        with self._admitted("this review"):
            return await self._review(stored, factor=factor)

    async def _review(self, stored: str, *, factor: float | None) -> str:
        settings = self.config.settings
        factor = check_factor(settings.replay.simulation_factor if factor is None else factor)
        events, record, ends = await asyncio.to_thread(stored_session, self.spool, stored)
        if not events:
            raise NotFound(f"no power samples or gate crossings of session {stored!r} are in the spool",
                           where="review", hint="delivered events are pruned after spool.retention_h hours")
        course = record.get("course") or self.spool.sessions.course(stored) or {}
        gates = [g["id"] if isinstance(g, dict) else str(g) for g in course.get("gates") or []] or None
        riders = tuple(RiderSettings(str(r["id"]), str(r.get("name") or r["id"]), r.get("squad"), r.get("weight_kg"),
                                     r.get("ftp_w")) for r in record.get("riders") or ())
        if not riders:
            riders = self.book.riders_on(events[0].wall_time) if self.book else settings.riders
        known = {r.id for r in riders}
        strangers = sorted(ends.keys() - known)
        riders = (*riders, *(rider({"id": s, "name": s}) for s in strangers))
        session = self._session_id()
        counts = {"results": 0, "stored": 0}
        pipeline = build(settings, self.spool, session, riders=riders, gates=gates,
                         subscribers=[lambda batch: _count(counts, batch), *self.listeners], replay=True)
        if course:
            await asyncio.to_thread(self.spool.sessions.set_course, session, course)
        name = f"review of {record.get('name') or stored}"
        player = Player(session, events, pipeline.ingest, factor=factor, clock=self.clock, label=name)
        pipeline.clock = player.recorded_now
        pipeline.runner.engine.set_stream_ends(ends)
        replay = Replay(player, pipeline, [], False, counts=counts, name=name, of_session=stored)
        pipeline.start()
        pipeline.publish("replay", started=player.first, about=Described(name, extra={"review_of": stored}))
        self.replays[session] = replay
        replay.task = asyncio.create_task(self._play(replay), name=f"review {session}")
        log.info("review %s of %s: %d events at factor %g", session, stored, len(events), factor)
        return session

    async def _play(self, replay: Replay) -> None:
        try:
            state = await replay.player.run()
        finally:
            player = replay.player
            names = [PurePath(f).name for f in player.label.split(", ") if f] if replay.of_session is None else []
            review = {"review_of": replay.of_session} if replay.of_session else None
            replay.pipeline.publish("replay", started=player.first, ended=player.recorded_now(),
                                    about=Described(replay.name, names, replay.tags, extra=review))
            if player.state == "finished":
                # Everything played is committed before every open segment is closed.
                await asyncio.to_thread(replay.pipeline.finish)
            else:
                await asyncio.to_thread(replay.pipeline.stop)
            self._release(replay)
        session = replay.player.session_id
        rejected = replay.pipeline.ingest.rejected
        if rejected:
            log.error("replay %s %s: %d of %d events stored, %d refused by the spool (%s)", session, state,
                      replay.stored, replay.player.position, rejected, self.spool.counters.last_error or "full")
        else:
            log.info("replay %s %s after %d events, %d segment results", session, state, replay.player.position,
                     replay.results)
        if state == "finished" and replay.loop:
            try:
                await self.start(replay.files, factor=replay.player.factor, loop=True, tags=replay.tags)
            except GatewayError as exc:
                log.error("replay %s cannot start again: %s", session, exc)

    def _release(self, replay: Replay) -> None:
        session = replay.player.session_id
        self.finished[session] = self._status_of(replay, final=True)
        self.replays.pop(session, None)
        while len(self.finished) > KEEP_FINISHED:
            self.finished.popitem(last=False)

    def get(self, session: str) -> Replay:
        try:
            return self.replays[session]
        except KeyError:
            if session in self.finished:
                raise ReplayError(f"replay {session} has ended: start a new one", where="replay") from None
            raise NotFound(f"no replay with session id {session!r}", where="replay") from None

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
        status = {**replay.player.status(), "results": replay.results, "files": replay.files, "name": replay.name,
                  "review_of": replay.of_session,
                  "stored": replay.stored, "rejected": replay.pipeline.ingest.rejected}
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


def replay_name(files: list[str]) -> str:
    """A replay's name on the page's session list: its file, or its first file and how many more."""
    if len(files) <= 1:
        return f"replay of {files[0] if files else 'nothing'}"
    return f"replay of {files[0]} and {len(files) - 1} more"


def stored_session(spool: Spool, session_id: str) -> tuple[list[PowerSample | GateCrossing], dict[str, Any],
                                                             dict[str, float]]:
    """A stored session's power samples and crossings as events (named by rider), its record, and
    each rider's last power sample (where the rider's stream ends: see ``set_stream_ends``)."""
    events: list[tuple[float, int, PowerSample | GateCrossing]] = []
    ends: dict[str, float] = {}
    for stored in stored_events(spool, session_id, "review"):
        event, rider_id = stored.event, stored.rider_id
        if isinstance(event, PowerSample) and rider_id is not None:
            wall = event.wall_time
            ends[rider_id] = max(wall, ends.get(rider_id, wall))
            events.append((wall, 1, PowerSample("replay:review", rider_id, wall, event.power, event.cadence,
                                                event.torque)))
        elif isinstance(event, GateCrossing):
            events.append((event.wall_time, 0, GateCrossing("replay:review", rider_id or event.transponder,
                                                            event.gate, event.wall_time, lap=event.lap)))
    events.sort(key=lambda e: (e[0], e[1]))
    return [e[2] for e in events], spool.sessions.record(session_id) or {}, ends
