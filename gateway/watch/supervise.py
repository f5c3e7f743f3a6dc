"""Keeping the daemon watchable: sd_notify (READY, WATCHDOG, STATUS, STOPPING), health, a status file.

The status file (``<state_dir>/status.json``) is what ``trackside-gateway status`` reads, so it
works with the page switched off too. It is written when what it says changes (at most every
``WRITE_EVERY_S``), at least every ``HEARTBEAT_S`` (its time says the daemon is alive), and at
exit with the stopped state: every second, it cost the SD card about 50 MB a minute once a flood of
unknown chips had made it 841 KB.
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

from gateway.sources.link import backoff
from gateway.sources.source import Source
from gateway.status import StatusBoard
from gateway.watch import health
from gateway.watch.notify import Notifier

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"
WRITE_EVERY_S = 5.0
HEARTBEAT_S = 30.0
STALE_S = HEARTBEAT_S + 15.0  # no write for this long: the daemon is gone (or hung)
_VOLATILE = frozenset({"time", "uptime_s", "updated", "age_s"})


class Supervisor:
    def __init__(self, status: StatusBoard, state_dir: Path, notifier: Notifier | None = None) -> None:
        self.status = status
        self.state_dir = state_dir
        self.notifier = notifier or Notifier()
        self.last_tick = time.monotonic()
        self._synced: bool | None = None
        self._synced_at = 0.0
        self._written_at = -1e9
        self._written: str | None = None
        self._urgent: str | None = None

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
        self.write_status_file()

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

    def write_status_file(self, final: bool = False) -> None:
        """Write the status file if what it says changed; ``final``: the stopped state at exit, if this
        process wrote one before (a start refused leaves the state directory as it was)."""
        if final and self._written is None:
            return
        snap = self.status.snapshot()
        now = time.monotonic()
        steady = json.dumps(_steady(snap), sort_keys=True, default=str)
        parts = snap["components"]
        # A state or a warning is said at once; counters that move every second, every few seconds.
        urgent = json.dumps([parts.get("health", {}).get("warnings"),
                             sorted((k, str(v.get("state"))) for k, v in parts.items())], default=str)
        due = (now - self._written_at >= HEARTBEAT_S or urgent != self._urgent
               or (steady != self._written and now - self._written_at >= WRITE_EVERY_S))
        if not (final or due):
            return
        path = self.state_dir / STATUS_FILE
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps({**snap, "pid": os.getpid()}, default=str))
            tmp.replace(path)
            self._written, self._urgent, self._written_at = steady, urgent, now
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()  # a full disk is reported by the spool; the status file is best effort



def _steady(value: Any) -> Any:
    """``value`` without the times that change at every snapshot."""
    if isinstance(value, dict):
        return {k: _steady(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_steady(v) for v in value]
    return value


def read_status_file(state_dir: Path) -> dict[str, Any] | None:
    try:
        doc: dict[str, Any] = json.loads((state_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    stopped = (doc.get("components", {}).get("daemon") or {}).get("state") == "stopped"
    doc["stale"] = stopped or time.time() - doc.get("time", 0) > STALE_S
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
            wait = backoff(failures, retry_max_s)
            log.exception("source %s failed (%d times); starting it again in %.0f s", source.name, failures, wait)
            status.post(f"task.{source.name}", state="restarting", failures=failures,
                        error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(Exception):
                source.stop()
            await asyncio.sleep(wait)
