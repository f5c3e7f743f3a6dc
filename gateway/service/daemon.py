"""The box's daemon: the root that keeps a live session, opens the radios and the serial port,
forwards to Kafka and plays the replays the config names. What it shares with a command-line
replay (spool, page, status, signals, the tick) is ``service.root``.

Threads and what each one owns (nothing else touches what a thread owns but through the hand-off
named):

- event loop (main): the sources' tasks (bleak, the load generator), replays' players, the status
  tick, sd_notify. Hands events to ``IntakeQueue.submit`` (a deque under a condition; never blocks).
- ``ingest``, one per session (live, and each replay): the spool's appends, the session's engine and
  its clock tick. In: ``IntakeQueue.submit`` and ``call``; out: its subscribers, called on it with
  the committed ``Accepted`` records (the engine runner, the broadcaster's queue, replay counters).
- ``broadcaster``: the page's live results; reads the spool's results for a group, fills the SSE
  clients' bounded queues. In: batches the ingest threads hand over without waiting.
- ``forwarder``: the Kafka producer and its delivery callbacks (librdkafka calls them inside
  ``poll`` on this thread). In: undelivered spool rows (its own connection); out: delivery marks.
- openant's and pyserial's reader threads: the USB stick and the serial port. Out:
  ``loop.call_soon_threadsafe`` to the loop.
- waitress threads (streams and requests): one request each. Replay control goes to the loop
  through ``LoopBridge.call``; SSE clients read their bounded queues.
- ``asyncio.to_thread`` workers: blocking file reads and spool status for the loop, awaited.

Each thread is supervised: a source task that fails is logged, shown and restarted with backoff;
a dead ingest or forwarder thread makes /healthz 503 (systemd's watchdog and Restart= then act).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config import Config
from gateway.errors import GatewayError
from gateway.pipeline import session
from gateway.pipeline.build import SessionPipeline
from gateway.service.root import Root
from gateway.service.sessions import LiveSessions
from gateway.service.setup import SetUpService
from gateway.sources.source import Pairable, Source, build_sources
from gateway.spool.store import Spool
from gateway.uplink.forwarder import status as forwarder_status
from gateway.watch.supervise import supervised

if TYPE_CHECKING:
    from gateway.uplink.forwarder import Forwarder

log = logging.getLogger(__name__)

TOUCH_EVERY_S = 60.0  # how often the live session's "last seen" is written: what a crash leaves


class Daemon(Root):
    """The box: runs the configured pieces until ``stop()`` or SIGTERM/SIGINT."""

    def __init__(self, config: Config, *, state_dir: Path | None = None, port: int | None = None,
                 web: bool | None = None) -> None:
        super().__init__(config, state_dir=state_dir, port=port, web=web)
        self.forwarder: Forwarder | None = None
        self.sessions: LiveSessions | None = None
        self._sources: list[Source] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._last_touch = 0.0

    @property
    def live(self) -> SessionPipeline | None:
        return self.sessions.live if self.sessions is not None else None

    async def _start(self, spool: Spool) -> None:
        assert self.book is not None
        self.sessions = LiveSessions(self.settings, spool, self.book, self.config.gateway_id, self._listeners())
        live = self.sessions.open()
        if self.settings.kafka.enabled:
            from gateway.uplink.forwarder import Forwarder

            self.forwarder = Forwarder(spool, self.settings.kafka).start()
        log.info("session %s; spool %s holds %d events (%d undelivered)", live.session_id, spool.path,
                 spool.ledger.last_seq(), spool.ledger.backlog()[0])

    async def _started(self) -> None:
        assert self.sessions is not None and self.book is not None
        # Meters paired on the page count like the YAML's.
        roster = replace(self.settings, riders=self.book.riders_on(time.time()))
        self._sources = build_sources(roster, self.sessions.submit, self.status)
        if self._sources or self.sessions.info.get("named"):
            # A box with sensors, or a session the coach started: its record.
            self.sessions.publish()
        self._tasks = [asyncio.create_task(supervised(s, self.status), name=f"source.{s.name}")
                       for s in self._sources]
        if self.settings.files.watch_dir is not None:
            self._tasks.append(asyncio.create_task(self._watch_files(self.settings.files.watch_dir),
                                                   name="files-folder"))
        await self._start_config_replays()

    async def _watch_files(self, folder: Path) -> None:
        from gateway.service.filewatch import FolderWatch

        setup = self.setup()
        assert setup is not None and setup.completion is not None and self.spool is not None
        sessions = self.sessions
        assert sessions is not None
        watch = FolderWatch(folder, setup.completion, self.spool, self.status,
                            lambda: sessions.current().get("session"))
        while True:
            try:
                await asyncio.to_thread(watch.poll)
            except Exception:  # a bug in one look must not end the watching
                log.exception("files folder %s", folder)
            await asyncio.sleep(self.settings.files.poll_s)

    async def _start_config_replays(self) -> None:
        assert self.replays is not None
        replay = self.settings.sources.replay
        if replay.enabled and replay.files:
            try:
                await self.replays.start(list(replay.files), loop=replay.loop, offset_s=replay.offset_s)
            except GatewayError as exc:  # the page and live sources still serve
                log.error("replay from the config cannot start: %s", exc)

    async def _tick(self) -> bool:
        if self.live is not None and self.spool is not None and time.time() - self._last_touch > TOUCH_EVERY_S:
            await asyncio.to_thread(session.touch, self.spool)
            self._last_touch = time.time()
        return True

    async def _stop_parts(self) -> None:
        for source in self._sources:
            source.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _close_parts(self) -> None:
        # Everything accepted is committed before the forwarder gets its last chance.
        if self.sessions is not None:
            self.sessions.stop()
        if self.forwarder is not None:
            self.forwarder.stop(timeout=5.0)
        if self.spool is not None and self.live is not None:
            session.touch(self.spool)

    def _force_stop(self) -> None:
        if self.live is not None:
            self.live.stop(timeout=1.0)

    def _threads(self) -> dict[str, bool]:
        threads = {"spool": self.live is not None and self.live.ingest.alive}
        if self.forwarder is not None:
            threads["forwarder"] = self.forwarder.alive
        return threads

    def _post_parts(self) -> None:
        if self.live is not None:
            ingest = self.live.ingest
            self.status.post("engine", session=ingest.session_id, **self.live.runner.stats)
            self.status.post("ingest", overflow=ingest.overflow, rejected=ingest.rejected,
                             unmapped=dict(ingest.unmapped), implausible=dict(ingest.implausible))
        self.status.post("kafka", **forwarder_status(self.forwarder))

    def setup(self) -> SetUpService | None:
        """What the page's set-up needs: sessions, riders and pairings, radios, notes."""
        if self.sessions is None:
            return None
        assert self.book is not None and self.spool is not None
        from gateway.pipeline.completion import SessionCompletion

        sessions = self.sessions
        completion = SessionCompletion(self.settings, self.spool,
                                       live_session=lambda: sessions.current().get("session"),
                                       subscribers=[self.broadcaster.on_accepted] if self.broadcaster else [])
        return SetUpService(self.sessions, self.book, self.spool, self.status, self.settings, on_pair=self._paired,
                            completion=completion)

    def _paired(self, kind: str, sensor: str) -> None:
        """A meter paired on the page: its source follows it now (on the event loop's thread)."""
        for source in self._sources:
            if source.name == kind and isinstance(source, Pairable) and self._loop is not None:
                self._loop.call_soon_threadsafe(source.pair_meter, sensor)
