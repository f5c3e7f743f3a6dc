"""What both roots of the box share (the daemon, ``service.daemon``; a command-line replay,
``service.replay_run``): the state directory and its lock, the spool and the results it serves, the
rider book, replays, the page and its broadcaster, the status board and its supervisor, signals and
the tick.

A root is a template: ``run`` opens the shared parts, calls ``_start`` (the root's own parts),
serves, ticks until stopped or until ``_tick`` says it is done, then calls ``_stop_parts`` and
``_close_parts`` before closing what it opened. Only the roots know every layer; nothing imports
them but the command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import __version__
from gateway.config import Config
from gateway.pipeline.accepted import Accepted
from gateway.pipeline.riderbook import RiderBook
from gateway.results.sqlite import SpoolResults
from gateway.service.state_dir import DiskReserve, StateLock, prepare_state_dir
from gateway.spool.store import Policy, Spool
from gateway.status import StatusBoard
from gateway.watch.supervise import Supervisor

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway.replay.manager import ReplayManager
    from gateway.service.setup import SetUpService
    from gateway.web.server import WebServer
    from gateway.web.stream import Broadcaster

log = logging.getLogger(__name__)


def open_spool(config: Config, state_dir: Path) -> Spool:
    sp = config.settings.spool
    policy = Policy(max_bytes=int(sp.max_size_mb * 1024 * 1024), retention_s=sp.retention_h * 3600.0,
                    full_policy=sp.full_policy, synchronous=sp.synchronous)
    return Spool(sp.path or state_dir / "spool.sqlite", config.gateway_id, policy).open()


class Root:
    """Runs until ``stop()``, SIGTERM/SIGINT, or ``_tick`` returning False."""

    tick_interval: float | None = None  # None: the supervisor's

    def __init__(self, config: Config, *, state_dir: Path | None = None, port: int | None = None,
                 web: bool | None = None) -> None:
        self.config = config
        self.settings = config.settings
        self.state_dir = state_dir or config.state_dir
        self.port = self.settings.web.port if port is None else port
        self.web_enabled = self.settings.web.enabled if web is None else web
        self.status = StatusBoard()
        self.supervisor = Supervisor(self.status, self.state_dir)
        self.reserve = DiskReserve(self.state_dir, int(self.settings.spool.reserve_mb * 2**20))
        self.web_port: int | None = None
        # The parts, typed; their modules are imported when the part is made (a page-less box never
        # imports Flask).
        self.spool: Spool | None = None
        self.results: SpoolResults | None = None
        self.book: RiderBook | None = None
        self.replays: ReplayManager | None = None
        self.broadcaster: Broadcaster | None = None
        self.server: WebServer | None = None
        self._degraded = False
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def spool_error(self) -> str | None:
        return self.spool.counters.last_error if self.spool is not None else None

    def stop(self) -> None:
        """Ask a running root to stop; safe from any thread."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    # -- what a root adds ----------------------------------------------------------------------

    async def _start(self, spool: Spool) -> None:
        """The root's own parts, before the page starts."""

    async def _started(self) -> None:
        """What starts once the page serves (sources, replays)."""

    async def _tick(self) -> bool:
        """Every tick, on the loop; False ends the run."""
        return True

    async def _stop_parts(self) -> None:
        """On the loop, first thing when stopping."""

    def _close_parts(self) -> None:
        """On a worker thread, before the spool closes: commit what was accepted."""

    def _force_stop(self) -> None:
        """A second signal: what must still happen before the process exits."""

    def _threads(self) -> dict[str, bool]:
        return {}

    def _post_parts(self) -> None:
        """The root's own lines on the status board (on a worker thread)."""

    def setup(self) -> SetUpService | None:
        """What the page's set-up needs; none unless the root keeps a live session."""
        return None

    # -- the run -------------------------------------------------------------------------------

    def _listeners(self) -> list[Callable[[list[Accepted]], None]]:
        return [self.broadcaster.on_accepted] if self.broadcaster is not None else []

    def _open(self) -> Spool:
        spool = self.spool = open_spool(self.config, self.state_dir)
        squads = {r.id: r.squad for r in self.settings.riders}
        self.results = SpoolResults(spool, squads.get, self.settings.course.key)
        if self._degraded:
            spool.appender.intake_paused = "degraded: the disk is full"
        else:
            self.reserve.ensure()
        if self.web_enabled:
            from gateway.web.stream import Broadcaster

            self.broadcaster = Broadcaster(self.results, self.settings.metrics.min_coverage,
                                           release=spool.release_thread)
        self.book = RiderBook(self.state_dir / "riders.json", self.settings.riders)
        self.status.post("riderbook", damaged=self.book.damaged)
        return spool

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
        handled: list[int] = []
        try:
            spool = self._open()
            await self._start(spool)
            from gateway.replay.manager import ReplayManager

            self.replays = ReplayManager(self.config, spool, listeners=self._listeners(), book=self.book)
            if self.web_enabled:
                self.start_web(app_later=True)
            self.status.post("daemon", state="running", pid=os.getpid(), web_port=self.web_port)
            handled = self._handle_signals()
            await self._started()
            await asyncio.to_thread(self._post_status)
            self.supervisor.tick()
            self.supervisor.ready()  # the spool is open, the sources run and the page's port answers
            if self.web_enabled:
                await asyncio.to_thread(self.load_web_app)
            await self._tick_until_stopped()
            log.info("stopping")
        finally:
            self.supervisor.stopping()
            for sig in handled:
                self._loop.remove_signal_handler(sig)
            await self._stop_parts()
            if self.replays is not None:
                await self.replays.close()
            if self.server is not None:
                # Before the spool closes: a request still answering would read a connection
                # closed under it (SQLite may free it while another thread is in it).
                await asyncio.to_thread(self.server.stop)
            await asyncio.to_thread(self._close)
            self.status.post("daemon", state="stopped", pid=os.getpid())
            self.supervisor.write_status_file(final=True)  # `status` says stopped at once, not 45 s later
            lock.release()

    def _close(self) -> None:
        # Order matters: everything accepted is committed before the spool closes.
        self._close_parts()
        if self.broadcaster is not None:
            self.broadcaster.close()  # its thread reads the spool for a session it has not seen
        if self.spool is not None:
            self.spool.close()

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
            self._force_stop()
            os._exit(128 + sig)
        log.info("%s received: stopping (a second one forces it)", signal.Signals(sig).name)
        if self._stop is not None:
            self._stop.set()

    async def _tick_until_stopped(self) -> None:
        assert self._stop is not None
        interval = self.tick_interval or self.supervisor.tick_interval
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval)
            if not await self._tick():
                break
            await asyncio.to_thread(self._post_status)
            self.supervisor.tick()

    def _post_status(self) -> None:
        assert self.spool is not None
        if self._degraded and self.reserve.room():
            log.info("the disk has room again: new events are accepted (no longer degraded)")
            self._degraded = False
            self.spool.appender.intake_paused = None
            self.reserve.ensure()
            self.status.post("degraded", reason=None)
        self.status.post("spool", **self.spool.status())
        self._post_parts()
        if self.replays is not None:
            self.status.post("replays", replays=[{k: r[k] for k in ("session", "state", "elapsed_s", "duration_s",
                                                                   "results", "factor")}
                                                 for r in self.replays.statuses()])

    # -- the page ------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self.supervisor.alive(web_ok=True, threads=self._threads())

    def start_web(self, *, app_later: bool = False) -> WebServer:
        """Serve the page (again, on the same port, once a test has stopped ``server``).

        ``app_later``: listen now, build the page's app (Flask: a third of the box's start-up) with
        ``load_web_app`` afterwards; a request that comes before waits for it."""
        from gateway.web.server import WebServer

        web = self.settings.web
        server = WebServer(None, web.host, self.web_port if self.web_port is not None else self.port,
                           streams=web.max_streams, request_threads=web.request_threads,
                           max_body=max(web.max_body_kb * 1024, web.max_upload_mb * 2**20))
        if self.spool is not None:
            server.after_request = self.spool.release_thread
        server.start()
        self.web_port = server.port
        self.server = server
        if not app_later:
            self.load_web_app()
        return server

    def load_web_app(self) -> None:
        from gateway.watch.metrics import registry
        from gateway.web.app import create_app
        from gateway.web.bridge import LoopBridge
        from gateway.web.parts import Guards, WebParts

        assert self._loop is not None and self.server is not None
        web, server = self.settings.web, self.server
        depths = self.broadcaster.queue_depths if self.broadcaster is not None else None
        setup = self.setup()
        server.set_app(create_app(WebParts(
            self.config, self.status, Guards.of(web), results=self.results, broadcaster=self.broadcaster,
            replays=self.replays, bridge=LoopBridge(self._loop), setup=setup, files=setup, health=self.health,
            metrics=registry(self.status, depths), stop=server.stop_streams)))
