"""Keeping the daemon watchable: sd_notify (READY, WATCHDOG, STATUS, STOPPING), health, a status file.

The status file (``<state_dir>/status.json``, rewritten every tick) is what
``trackside-gateway status`` reads, so it works with the page switched off too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from gateway.service import health
from gateway.service.notify import Notifier
from gateway.sources.source import Source
from gateway.status import StatusBoard

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"
STALE_S = 10.0


class Supervisor:
    def __init__(self, status: StatusBoard, state_dir: Path, notifier: Notifier | None = None) -> None:
        self.status = status
        self.state_dir = state_dir
        self.notifier = notifier or Notifier()
        self.last_tick = time.monotonic()
        self._synced: bool | None = None
        self._synced_at = 0.0

    @property
    def tick_interval(self) -> float:
        """Ping the watchdog at least twice per WatchdogSec."""
        return min(1.0, self.notifier.watchdog_s / 2) if self.notifier.watchdog_s else 1.0

    def ready(self) -> None:
        self.notifier.ready(self.summary())

    def tick(self) -> None:
        """Called from the event loop itself: a hung loop stops the watchdog pings, and systemd restarts us."""
        self.last_tick = time.monotonic()
        now = time.time()
        if now - self._synced_at > 30:
            self._synced, self._synced_at = health.clock_synchronised(), now
        disk = health.disk(self.state_dir)
        components = self.status.snapshot()["components"]
        self.status.post("health", disk=disk, clock_synchronised=self._synced,
                         warnings=health.warnings(components, disk, self._synced, now))
        self.notifier.watchdog()
        self.notifier.status(self.summary())
        self._write_status_file()

    def summary(self) -> str:
        """One line for systemctl status: riders seen, backlog, links, the first warning."""
        parts = self.status.snapshot()["components"]
        engine, spool, kafka = parts.get("engine", {}), parts.get("spool", {}), parts.get("kafka", {})
        link = "uplink off" if not kafka.get("enabled") else ("uplink up" if kafka.get("connected") else "uplink DOWN")
        text = f"riders seen {engine.get('riders_seen', 0)}, backlog {spool.get('backlog_rows', 0)}, {link}"
        warnings = parts.get("health", {}).get("warnings") or []
        return text + (f"; {warnings[0]}" if warnings else "")

    def alive(self, web_ok: bool = True, threads: dict[str, bool] | None = None) -> dict[str, Any]:
        """The /healthz verdict: the event loop ticks, the pipeline's threads run, the page answers."""
        checks = {"engine": time.monotonic() - self.last_tick < 5 * max(1.0, self.tick_interval), "web": web_ok,
                  **(threads or {})}
        return {"ok": all(checks.values()), "checks": checks}

    def stopping(self) -> None:
        self.notifier.stopping()

    def _write_status_file(self) -> None:
        path = self.state_dir / STATUS_FILE
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps({**self.status.snapshot(), "pid": os.getpid()}, default=str))
            tmp.replace(path)
        except OSError:
            pass  # a full disk is reported by the spool; the status file is best effort


def read_status_file(state_dir: Path) -> dict[str, Any] | None:
    try:
        doc: dict[str, Any] = json.loads((state_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    doc["stale"] = time.time() - doc.get("time", 0) > STALE_S
    return doc


async def supervised(source: Source, status: StatusBoard, retry_max_s: float = 30.0) -> None:
    """Run a source as long as the daemon runs: one whose task fails is logged, shown on the status
    (``task.<name>``) and started again with backoff, never left dead in silence."""
    failures = 0
    while True:
        try:
            await source.run()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures += 1
            wait = min(retry_max_s, 2.0 ** min(failures, 10))
            log.exception("source %s failed (%d times); starting it again in %.0f s", source.name, failures, wait)
            status.post(f"task.{source.name}", state="restarting", failures=failures,
                        error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(Exception):
                source.stop()
            await asyncio.sleep(wait)
