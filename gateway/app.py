"""The composition root: the one place that knows every layer and wires them into a daemon."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

from gateway import __version__
from gateway.config import Config
from gateway.errors import GatewayError
from gateway.status import StatusBoard

log = logging.getLogger(__name__)

# Sources whose capability has not landed yet are named, not silently ignored.
_PENDING_SOURCES = ("ant", "ble", "serial", "replay")


def prepare_state_dir(path: Path) -> Path:
    """Create the state directory and prove it is writable, or say what to do."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise GatewayError(
            f"cannot use the state directory: {exc.strerror or exc}",
            where=str(path), hint="set gateway.state_dir in the config or pass --state-dir",
        ) from None
    return path


class Daemon:
    """Runs the configured pieces until ``stop()`` or SIGTERM/SIGINT."""

    def __init__(self, config: Config, *, state_dir: Path | None = None, port: int | None = None) -> None:
        self.config = config
        self.state_dir = state_dir or config.state_dir
        self.port = config.section("web")["port"] if port is None else port
        self.status = StatusBoard()
        self.web_port: int | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def stop(self) -> None:
        """Ask a running daemon to stop; safe from any thread."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        prepare_state_dir(self.state_dir)
        log.info("trackside-gateway %s, box %s, config %s, state in %s",
                 __version__, self.config.gateway_id, self.config.source, self.state_dir.resolve())
        for name in _PENDING_SOURCES:
            if self.config.section("sources")[name]["enabled"]:
                log.warning("source '%s' is enabled but not built into this version yet; it is skipped", name)
        server = None
        web = self.config.section("web")
        if web["enabled"]:
            from gateway.web.app import create_app
            from gateway.web.server import WebServer

            server = WebServer(create_app(self.config, self.status), web["host"], self.port)
            server.start()
            self.web_port = server.port
        self.status.post("daemon", state="running", pid=os.getpid(), web_port=self.web_port)
        handled = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._loop.add_signal_handler(sig, self._stop.set)
                handled.append(sig)
            except (RuntimeError, ValueError):
                pass  # not the main thread (tests run the daemon in a thread): stop() still works
        try:
            await self._stop.wait()
            log.info("stopping")
        finally:
            for sig in handled:
                self._loop.remove_signal_handler(sig)
            if server is not None:
                server.stop()
            self.status.post("daemon", state="stopped", pid=os.getpid())
