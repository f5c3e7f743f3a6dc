"""The composition root of the box: the one place that knows every layer and wires them into a daemon.

Threads and what each one owns (nothing else touches what a thread owns but through the hand-off
named):

- event loop (main): the sources' tasks (bleak, the load generator), replays' players, the status
  tick, sd_notify. Hands events to ``Ingest.submit`` (a locked queue, never blocking).
- ``ingest``, one per session (live, and each replay): the spool writer, the session's engine and
  its clock tick. In: ``Ingest.submit`` and ``Ingest.call``; out: its subscribers, called on it
  (the engine runner, the page's broadcaster, replay counters).
- ``forwarder``: the Kafka producer and its delivery callbacks (librdkafka calls them inside
  ``poll`` on this thread). In: undelivered spool rows (its own connection); out: delivery marks.
- openant's and pyserial's reader threads: the USB stick and the serial port. Out:
  ``loop.call_soon_threadsafe`` to the loop.
- waitress threads (streams and requests): one request each. Replay control goes to the loop
  through ``LoopBridge.call``; SSE clients read bounded queues that the broadcaster fills on the
  ingest threads.
- ``asyncio.to_thread`` workers: blocking file reads and spool status for the loop, awaited.

Each thread is supervised: a source task that fails is logged, shown and restarted with backoff;
a dead ingest or forwarder thread makes /healthz 503 (systemd's watchdog and Restart= then act).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from gateway import __version__
from gateway.config import Config
from gateway.errors import GatewayError
from gateway.pipeline import session
from gateway.pipeline.build import SessionPipeline
from gateway.pipeline.riderbook import RiderBook
from gateway.results.sqlite import SpoolResults
from gateway.service.sessions import LiveSessions
from gateway.service.state_dir import DiskReserve, StateLock, prepare_state_dir
from gateway.service.supervise import Supervisor, supervised
from gateway.sources.source import build_sources
from gateway.spool.store import Policy, Spool
from gateway.status import StatusBoard
from gateway.uplink.forwarder import status as forwarder_status

log = logging.getLogger(__name__)


def open_spool(config: Config, state_dir: Path) -> Spool:
    sp = config.settings.spool
    policy = Policy(max_bytes=int(sp.max_size_mb * 1024 * 1024), retention_s=sp.retention_h * 3600.0,
                    full_policy=sp.full_policy, synchronous=sp.synchronous)
    return Spool(sp.path or state_dir / "spool.sqlite", config.gateway_id, policy).open()


class Daemon:
    """Runs the configured pieces until ``stop()`` or SIGTERM/SIGINT."""

    def __init__(self, config: Config, *, state_dir: Path | None = None, port: int | None = None,
                 web: bool | None = None, replay_files: list[str] | None = None,
                 replay_factor: float | None = None, exit_after_replay: bool = False,
                 progress: Callable[[Any], None] | None = None, course_from_file: bool | None = None,
                 replay_only: bool = False) -> None:
        self.config = config
        self.settings = config.settings
        self.state_dir = state_dir or config.state_dir
        self.port = self.settings.web.port if port is None else port
        self.web_enabled = self.settings.web.enabled if web is None else web
        self.replay_files = replay_files
        self.replay_factor = replay_factor
        self.exit_after_replay = exit_after_replay
        self.progress = progress
        self.course_from_file = course_from_file
        # `trackside-gateway replay`: the files given, nothing else. No radio or serial port is opened,
        # no live session is kept, nothing is forwarded, whatever the config enables for live use.
        self.replay_only = replay_only
        self.status = StatusBoard()
        self.supervisor = Supervisor(self.status, self.state_dir)
        self.reserve = DiskReserve(self.state_dir, int(self.settings.spool.reserve_mb * 2**20))
        self.web_port: int | None = None
        self.replays: Any = None
        self.broadcaster: Any = None
        self.server: Any = None
        self.forwarder: Any = None
        self.spool: Spool | None = None
        self.sessions: LiveSessions | None = None
        self._sources: list[Any] = []
        self.book: RiderBook | None = None
        self._degraded = False
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def live(self) -> SessionPipeline | None:
        return self.sessions.live if self.sessions is not None else None

    @property
    def spool_error(self) -> str | None:
        return self.spool.counters.last_error if self.spool is not None else None

    def stop(self) -> None:
        """Ask a running daemon to stop; safe from any thread."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    # -- start ---------------------------------------------------------------------------------

    def _open(self) -> Spool:
        spool = self.spool = open_spool(self.config, self.state_dir)
        squads = {r.id: r.squad for r in self.settings.riders}
        self.results = SpoolResults(spool, squads.get, self.settings.course.key)
        if self._degraded:
            spool.intake_paused = "degraded: the disk is full"
        else:
            self.reserve.ensure()
        if self.web_enabled:
            from gateway.web.stream import Broadcaster

            self.broadcaster = Broadcaster(self.results)
        return spool

    def _start_live(self, spool: Spool) -> SessionPipeline | None:
        self.book = RiderBook(self.state_dir / "riders.json", self.settings.riders)
        self.status.post("riderbook", damaged=self.book.damaged)
        if self.replay_only:
            log.info("replay only: no live session, no radios, no uplink; spool %s", spool.path)
            return None
        self.sessions = LiveSessions(self.settings, spool, self.book, self.config.gateway_id, self._listeners())
        live = self.sessions.open()
        session_id = live.session_id
        if self.settings.kafka.enabled:
            from gateway.uplink.forwarder import Forwarder

            self.forwarder = Forwarder(spool, self.settings.kafka).start()
        log.info("session %s; spool %s holds %d events (%d undelivered)", session_id, spool.path, spool.last_seq(),
                 spool.backlog()[0])
        return live

    def _listeners(self) -> list[Callable[[Any], None]]:
        return [self.broadcaster.on_accepted] if self.broadcaster is not None else []

    def _degrade_if_full(self) -> None:
        if not prepare_state_dir(self.state_dir):
            return
        self._degraded = True
        released = self.reserve.release()
        log.error("the disk holding %s is full: starting degraded%s: new events are refused until space is "
                  "freed; the uplink still drains the backlog and the page runs", self.state_dir,
                  " (released the space kept in reserve to open the spool)" if released else "")
        self.status.post("degraded", reason="disk full at start-up: new events are refused until space is freed")

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._degrade_if_full()
        lock = StateLock(self.state_dir).acquire()
        from gateway.web.guard import TokenGuard

        self.status.post("security", weak_admin_token=TokenGuard(self.settings.web.admin_token).weak)
        log.info("trackside-gateway %s, box %s, config %s, state in %s",
                 __version__, self.config.gateway_id, self.config.source, self.state_dir.resolve())
        tasks: list[asyncio.Task[None]] = []
        handled: list[int] = []
        sources = []
        try:
            spool = self._open()
            self._start_live(spool)
            from gateway.replay.manager import ReplayManager

            self.replays = ReplayManager(self.config, spool, listeners=self._listeners(), book=self.book)
            if self.web_enabled:
                self.start_web()
            self.status.post("daemon", state="running", pid=os.getpid(), web_port=self.web_port)
            handled = self._handle_signals()
            if self.sessions is not None:
                # Meters paired on the page count like the YAML's.
                assert self.book is not None
                roster = replace(self.settings, riders=self.book.riders_on(time.time()))
                sources = self._sources = build_sources(roster, self.sessions.submit, self.status)
                if sources or self.sessions.info.get("named"):
                    # A box with sensors, or a session the coach started: its record.
                    self.sessions.publish()
            tasks = [asyncio.create_task(supervised(s, self.status), name=f"source.{s.name}") for s in sources]
            await self._start_replays()
            await asyncio.to_thread(self._post_status)
            self.supervisor.tick()
            self.supervisor.ready()  # the spool is open and the page is listening
            await self._tick_until_stopped()
            log.info("stopping")
        finally:
            self.supervisor.stopping()
            for sig in handled:
                self._loop.remove_signal_handler(sig)
            for source in sources:
                source.stop()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if self.replays is not None:
                await self.replays.close()
            await asyncio.to_thread(self._stop_pipeline)
            if self.server is not None:
                self.server.stop()
            self.status.post("daemon", state="stopped", pid=os.getpid())
            self.supervisor.write_status_file(final=True)  # `status` says stopped at once, not 45 s later
            lock.release()

    def _handle_signals(self) -> list[int]:
        assert self._loop is not None
        handled: list[int] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._loop.add_signal_handler(sig, self._on_signal, sig)
                handled.append(sig)
            except (RuntimeError, ValueError):
                pass  # not the main thread (tests run the daemon in a thread): stop() still works
        return handled

    def _on_signal(self, sig: int) -> None:
        if self._stop is not None and self._stop.is_set():
            # A second signal: stop now. Everything accepted is already committed to the spool;
            # only what a source handed over in the last batch interval is not.
            log.warning("second %s: stopping at once", signal.Signals(sig).name)
            if self.live is not None:
                self.live.stop(timeout=1.0)
            os._exit(128 + sig)
        log.info("%s received: stopping (a second one forces it)", signal.Signals(sig).name)
        if self._stop is not None:
            self._stop.set()

    async def _start_replays(self) -> None:
        replay = self.settings.sources.replay
        if replay.enabled and replay.files:
            try:
                await self.replays.start(list(replay.files), loop=replay.loop, offset_s=replay.offset_s)
            except GatewayError as exc:  # the page and live sources still serve
                log.error("replay from the config cannot start: %s", exc)
        if self.replay_files:
            await self.replays.start(self.replay_files, factor=self.replay_factor,
                                     course_from_file=self.course_from_file)

    # -- the page ------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        threads = {} if self.replay_only else {"spool": self.live is not None and self.live.ingest.alive}
        if self.forwarder is not None:
            threads["forwarder"] = self.forwarder.alive
        return self.supervisor.alive(web_ok=True, threads=threads)

    def start_web(self) -> Any:
        """Serve the page (again: tests stop and restart it under a running pipeline)."""
        from gateway.web.app import create_app
        from gateway.web.bridge import LoopBridge
        from gateway.web.server import WebServer

        web = self.settings.web
        assert self._loop is not None
        server = WebServer(None, web.host, self.web_port if self.web_port is not None else self.port,
                           streams=web.max_streams, request_threads=web.request_threads,
                           max_body=web.max_body_kb * 1024)
        server.set_app(create_app(self.config, self.status, results=self.results, replays=self.replays,
                                  bridge=LoopBridge(self._loop), broadcaster=self.broadcaster,
                                  stop=server.stop_streams, health=self.health, morning=self.morning(),
                                  metrics=self.metrics()))
        server.start()
        self.web_port = server.port
        self.server = server
        return server

    def metrics(self) -> Any:
        from gateway.service.metrics import registry

        return registry(self.status, self.broadcaster.queue_depths if self.broadcaster is not None else None)

    def morning(self) -> Any:
        """What the page's set-up needs: sessions, riders and pairings, radios, notes (none for a replay)."""
        from gateway.service.morning import Morning

        if self.sessions is None:
            return None
        assert self.book is not None and self.spool is not None
        return Morning(self.sessions, self.book, self.spool, self.status, self.settings, on_pair=self._paired)

    def _paired(self, kind: str, sensor: str) -> None:
        """A meter paired on the page: its source follows it now (on the event loop's thread)."""
        for source in self._sources:
            if source.name == kind and hasattr(source, "add_meter") and self._loop is not None:
                value: Any = int(sensor) if kind == "ant" and sensor.isdigit() else sensor
                self._loop.call_soon_threadsafe(source.add_meter, value)

    def stop_web(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    # -- every second --------------------------------------------------------------------------

    async def _tick_until_stopped(self) -> None:
        assert self._stop is not None and self.spool is not None
        last_touch = 0.0
        interval = 0.5 if self.progress else self.supervisor.tick_interval
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval)
            if self.progress is not None:
                self.progress(self.replays)
            if self.exit_after_replay and not self.replays.active():
                log.info("replay finished")
                break
            await asyncio.to_thread(self._post_status)
            self.supervisor.tick()
            if self.live is not None and time.time() - last_touch > 60:
                await asyncio.to_thread(session.touch, self.spool)
                last_touch = time.time()

    def _post_status(self) -> None:
        assert self.spool is not None
        if self._degraded and self.reserve.room():
            log.info("the disk has room again: new events are accepted (no longer degraded)")
            self._degraded = False
            self.spool.intake_paused = None
            self.reserve.ensure()
            self.status.post("degraded", reason=None)
        self.status.post("spool", **self.spool.status())
        if self.live is not None:
            ingest = self.live.ingest
            self.status.post("engine", session=ingest.session_id, **self.live.runner.stats)
            self.status.post("ingest", overflow=ingest.overflow, rejected=ingest.rejected,
                             unmapped=dict(ingest.unmapped), implausible=dict(ingest.implausible))
        if self.replays is not None:
            self.status.post("replays", replays=[{k: r[k] for k in ("session", "state", "elapsed_s", "duration_s",
                                                                   "results", "factor")}
                                                 for r in self.replays.statuses()])
        self.status.post("kafka", **forwarder_status(self.forwarder))

    def _stop_pipeline(self) -> None:
        # Order matters: everything accepted is committed before the forwarder gets its last chance.
        if self.sessions is not None:
            self.sessions.stop()
        if self.forwarder is not None:
            self.forwarder.stop(timeout=5.0)
        if self.spool is not None:
            if self.live is not None:
                session.touch(self.spool)
            self.spool.close()
