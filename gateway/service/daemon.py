"""The composition root: the one place that knows every layer and wires them into a daemon."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway import __version__
from gateway.config import Config
from gateway.engine.course import Course
from gateway.engine.segments import RiderInfo, SegmentEngine
from gateway.errors import GatewayError
from gateway.pipeline import session
from gateway.pipeline.ingest import Ingest, Plausible, Roster
from gateway.pipeline.runner import EngineRunner
from gateway.results.sqlite import SpoolResults
from gateway.service.supervise import Supervisor
from gateway.spool.store import Policy, Spool
from gateway.status import StatusBoard

log = logging.getLogger(__name__)

def prepare_state_dir(path: Path) -> bool:
    """Create the state directory and prove it is writable, or say what to do.

    Returns True when the disk is full: the daemon then starts degraded (intake refused, uplink and
    page running), since refusing to start would keep the backlog, the one thing that frees space.
    """
    probe = path / ".write-test"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            with contextlib.suppress(OSError):
                probe.unlink()
            return True
        raise GatewayError(
            f"cannot use the state directory: {exc.strerror or exc}",
            where=str(path), hint="set gateway.state_dir in the config or pass --state-dir",
        ) from None
    return False


class DiskReserve:
    """A file of ``size`` bytes kept in the state directory while the disk has room, and released when
    the disk is found full at start-up: SQLite cannot even open a WAL database on a disk with no
    free block, and the spool must open for its backlog to drain (the one thing that frees space)."""

    NAME = "reserve.bin"

    def __init__(self, state_dir: Path, size: int) -> None:
        self.path = state_dir / self.NAME
        self.size = size

    def release(self) -> bool:
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True

    def ensure(self) -> None:
        if not self.size or self.path.exists() or shutil.disk_usage(self.path.parent).free < 10 * self.size:
            return
        try:
            with self.path.open("wb") as f:
                os.posix_fallocate(f.fileno(), 0, self.size)
        except OSError as exc:
            log.warning("cannot keep %d MB in reserve in %s: %s", self.size // 2**20, self.path.parent, exc)
            self.release()

    def room(self) -> bool:
        """Enough free space to leave degraded mode."""
        return shutil.disk_usage(self.path.parent).free > max(4 * self.size, 2**20)


class StateLock:
    """An exclusive lock on the state directory: two daemons on one spool would both lose batches."""

    NAME = "gateway.lock"

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / self.NAME
        self._fd: int | None = None

    def acquire(self) -> StateLock:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise GatewayError(f"another trackside-gateway (pid {holder}) is already using this state directory",
                               where=str(self.path.parent),
                               hint="stop it first (systemctl stop trackside-gateway), or give this one its own "
                                    "--state-dir") from None
        except OSError:
            os.close(fd)
            raise
        with contextlib.suppress(OSError):  # a full disk: the lock holds, the pid is just not written
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None


def open_spool(config: Config, state_dir: Path) -> Spool:
    sp = config.section("spool")
    policy = Policy(max_bytes=int(sp["max_size_mb"] * 1024 * 1024), retention_s=sp["retention_h"] * 3600.0,
                    full_policy=sp["full_policy"], synchronous=sp["synchronous"])
    path = Path(sp["path"]) if sp["path"] else state_dir / "spool.sqlite"
    return Spool(path, config.gateway_id, policy).open()


class Daemon:
    """Runs the configured pieces until ``stop()`` or SIGTERM/SIGINT."""

    def __init__(self, config: Config, *, state_dir: Path | None = None, port: int | None = None,
                 web: bool | None = None, replay_files: list[str] | None = None,
                 replay_factor: float | None = None, exit_after_replay: bool = False,
                 progress: Callable[[Any], None] | None = None, course_from_file: bool | None = None) -> None:
        self.config = config
        self.state_dir = state_dir or config.state_dir
        self.port = config.section("web")["port"] if port is None else port
        self.web_enabled = config.section("web")["enabled"] if web is None else web
        self.replay_files = replay_files
        self.replay_factor = replay_factor
        self.exit_after_replay = exit_after_replay
        self.progress = progress
        self.course_from_file = course_from_file
        self.replays: Any = None
        self.broadcaster: Any = None
        self._serial: Any = None
        self.server: Any = None
        self.status = StatusBoard()
        self.supervisor = Supervisor(self.status, self.state_dir)
        self.web_port: int | None = None
        self._degraded = False
        self.reserve = DiskReserve(self.state_dir, 0)
        self.spool: Spool | None = None
        self.ingest: Ingest | None = None
        self.runner: EngineRunner | None = None
        self.forwarder: Any = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def spool_error(self) -> str | None:
        return self.spool.counters.last_error if self.spool is not None else None

    def stop(self) -> None:
        """Ask a running daemon to stop; safe from any thread."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    def _start_pipeline(self) -> None:
        cfg = self.config
        self.spool = open_spool(cfg, self.state_dir)
        squads = {r["id"]: r.get("squad") for r in cfg.section("riders")}
        self.results = SpoolResults(self.spool, squads.get)
        if self._degraded:
            self.spool.intake_paused = "degraded: the disk is full"
        else:
            self.reserve.ensure()
        session_id = session.live_session(self.spool, cfg.gateway_id, cfg.section("gateway")["session_gap_h"])
        sp = cfg.section("spool")
        self.ingest = Ingest(self.spool, Roster(cfg.section("riders")), session_id,
                             batch_interval_s=sp["batch_interval_ms"] / 1000.0, batch_size=sp["batch_size"],
                             plausible=Plausible.from_config(cfg.section("sources")["plausible"]))
        engine = SegmentEngine(Course.from_config(cfg.section("course")), RiderInfo.roster(cfg.section("riders")),
                               session_id, np_window=cfg.section("metrics")["np_window"])
        self.runner = EngineRunner(engine, self.ingest.submit)
        self.ingest.subscribe(self.runner.on_accepted)
        self.runner.restore(self.spool)
        self.ingest.start()
        if cfg.section("kafka")["enabled"]:
            from gateway.uplink.forwarder import Forwarder

            self.forwarder = Forwarder(self.spool, cfg.section("kafka")).start()
        log.info("session %s; spool %s holds %d events (%d undelivered)", session_id, self.spool.path,
                 self.spool.last_seq(), self.spool.backlog()[0])

    def _sources(self) -> list[asyncio.Task[None]]:
        cfg = self.config
        tasks = []
        sources = cfg.section("sources")
        meters = [m for r in cfg.section("riders") for m in r["power_meters"]]
        if sources["ant"]["enabled"]:
            from gateway.sources.ant import AntSource

            ant = AntSource(self.ingest.submit, [m["ant"] for m in meters if "ant" in m], status=self.status,  # type: ignore[union-attr]
                            retry_max_s=sources["ant"]["retry_max_s"])
            tasks.append(asyncio.create_task(ant.run(), name="source.ant"))
        if sources["ble"]["enabled"]:
            from gateway.sources.ble import BleSource

            ble = BleSource(self.ingest.submit, [m["ble"] for m in meters if "ble" in m], status=self.status,  # type: ignore[union-attr]
                            scan_timeout_s=sources["ble"]["scan_timeout_s"], retry_max_s=sources["ble"]["retry_max_s"])
            tasks.append(asyncio.create_task(ble.run(), name="source.ble"))
        if sources["serial"]["enabled"]:
            from gateway.decode.lines import LineFormat
            from gateway.sources.receiver_clock import ReceiverClock
            from gateway.sources.serial import SerialSource

            serial = sources["serial"]
            clock: ReceiverClock[bytes] = ReceiverClock(tolerance_s=serial["clock_tolerance_s"],
                                                        max_jump_s=serial["max_clock_jump_s"])
            self._serial = SerialSource(self.ingest.submit, serial["port"], serial["baudrate"],  # type: ignore[union-attr]
                                        LineFormat.from_config(serial), status=self.status, clock=clock)
            tasks.append(asyncio.create_task(self._serial.run(), name="source.serial"))
        load = cfg.section("sources")["load"]
        if load["enabled"]:
            from gateway.sources.load import LoadSource

            assert self.ingest is not None
            gates = [g["id"] for g in cfg.section("course")["gates"]]
            source = LoadSource(self.ingest.submit, cfg.section("riders"), gates, rate_hz=load["rate_hz"],
                                segment_s=load["segment_s"], seed=load["seed"], status=self.status)
            log.warning("synthetic load source enabled: %d riders at %g Hz (benchmarks and tests only)",
                        len(cfg.section("riders")), load["rate_hz"])
            tasks.append(asyncio.create_task(source.run(), name="source.load"))
        return tasks

    def _post_status(self) -> None:
        assert self.spool is not None and self.ingest is not None and self.runner is not None
        if self._degraded and self.reserve.room():
            log.info("the disk has room again: new events are accepted (no longer degraded)")
            self._degraded = False
            self.spool.intake_paused = None
            self.reserve.ensure()
            self.status.post("degraded", reason=None)
        self.status.post("spool", **self.spool.status())
        self.status.post("engine", session=self.ingest.session_id, **self.runner.engine.stats())
        self.status.post("ingest", overflow=self.ingest.overflow, rejected=self.ingest.rejected,
                         unmapped=dict(self.ingest.unmapped), implausible=dict(self.ingest.implausible))
        if self.replays is not None:
            self.status.post("replays", replays=[{k: r[k] for k in ("session", "state", "elapsed_s", "duration_s",
                                                                   "results", "factor")}
                                                 for r in self.replays.statuses()])
        if self.forwarder is not None:
            self.status.post("kafka", enabled=True, **self.forwarder.link.snapshot())
        else:
            self.status.post("kafka", enabled=False)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        disk_full = prepare_state_dir(self.state_dir)
        lock = StateLock(self.state_dir).acquire()
        self.reserve = DiskReserve(self.state_dir, int(self.config.section("spool")["reserve_mb"] * 2**20))
        self._degraded = disk_full
        if disk_full:
            released = self.reserve.release()
            log.error("the disk holding %s is full: starting degraded%s: new events are refused until space is "
                      "freed; the uplink still drains the backlog and the page runs", self.state_dir,
                      " (released the space kept in reserve to open the spool)" if released else "")
            self.status.post("degraded", reason="disk full at start-up: new events are refused until space is freed")
        from gateway.web.guard import TokenGuard

        self.status.post("security", weak_admin_token=TokenGuard(self.config.section("web")["admin_token"]).weak)
        log.info("trackside-gateway %s, box %s, config %s, state in %s",
                 __version__, self.config.gateway_id, self.config.source, self.state_dir.resolve())
        tasks: list[asyncio.Task[None]] = []
        handled = []
        try:
            self._start_pipeline()
            from gateway.replay.manager import ReplayManager

            listeners = []
            if self.web_enabled:
                from gateway.web.stream import Broadcaster

                self.broadcaster = Broadcaster(self.results)
                self.ingest.subscribe(self.broadcaster.on_accepted)  # type: ignore[union-attr]
                listeners.append(self.broadcaster.on_accepted)
            self.replays = ReplayManager(self.config, self.spool, listeners=listeners)  # type: ignore[arg-type]
            if self.web_enabled:
                self.start_web()
            self.status.post("daemon", state="running", pid=os.getpid(), web_port=self.web_port)
            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    self._loop.add_signal_handler(sig, self._on_signal, sig)
                    handled.append(sig)
                except (RuntimeError, ValueError):
                    pass  # not the main thread (tests run the daemon in a thread): stop() still works
            tasks = self._sources()
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
            if self._serial is not None:
                self._serial.stop()
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
            lock.release()

    def _on_signal(self, sig: int) -> None:
        if self._stop is not None and self._stop.is_set():
            # A second signal: stop now. Everything accepted is already committed to the spool;
            # only what a source handed over in the last batch interval is not.
            log.warning("second %s: stopping at once", signal.Signals(sig).name)
            if self.ingest is not None:
                self.ingest.stop(timeout=1.0)
            os._exit(128 + sig)
        log.info("%s received: stopping (a second one forces it)", signal.Signals(sig).name)
        if self._stop is not None:
            self._stop.set()

    def health(self) -> dict[str, Any]:
        threads = {"spool": self.spool is not None and self.ingest is not None and self.ingest.alive}
        if self.forwarder is not None:
            threads["forwarder"] = self.forwarder.alive
        return self.supervisor.alive(web_ok=True, threads=threads)

    def start_web(self) -> Any:
        """Serve the page (again: tests stop and restart it under a running pipeline)."""
        from gateway.web.app import create_app
        from gateway.web.bridge import LoopBridge
        from gateway.web.server import WebServer

        web = self.config.section("web")
        server = WebServer(None, web["host"], self.web_port if self.web_port is not None else self.port,
                           streams=web["max_streams"], request_threads=web["request_threads"],
                           max_body=web["max_body_kb"] * 1024)
        server.set_app(create_app(self.config, self.status, results=self.results, replays=self.replays,
                                  bridge=LoopBridge(self._loop), broadcaster=self.broadcaster,  # type: ignore[arg-type]
                                  stop=server.stop_streams, health=self.health))
        server.start()
        self.web_port = server.port
        self.server = server
        return server

    def stop_web(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    async def _start_replays(self) -> None:
        replay = self.config.section("sources")["replay"]
        if replay["enabled"] and replay["files"]:
            try:
                await self.replays.start(replay["files"], loop=replay["loop"], offset_s=replay["offset_s"])
            except GatewayError as exc:  # the page and live sources still serve
                log.error("replay from the config cannot start: %s", exc)
        if self.replay_files:
            await self.replays.start(self.replay_files, factor=self.replay_factor,
                                     course_from_file=self.course_from_file)

    async def _tick_until_stopped(self) -> None:
        assert self._stop is not None and self.runner is not None and self.spool is not None
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
            self.runner.tick()
            await asyncio.to_thread(self._post_status)
            self.supervisor.tick()
            if time.time() - last_touch > 60:
                session.touch(self.spool)
                last_touch = time.time()

    def _stop_pipeline(self) -> None:
        # Order matters: everything accepted is committed before the forwarder gets its last chance.
        if self.ingest is not None:
            self.ingest.stop()
        if self.forwarder is not None:
            self.forwarder.stop(timeout=5.0)
        if self.spool is not None:
            session.touch(self.spool)
            self.spool.close()
