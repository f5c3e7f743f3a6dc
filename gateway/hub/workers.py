"""`trackside-gateway hub --processes N`: the hub scaled out the way Kafka is made for (#35). One
Python process is bound by its interpreter lock (decoding and psycopg's row writing), so the hub
runs N consuming processes in one consumer group: N workers (a consumer and the course engine each,
no page), which share the topics' partitions, and this one, which serves the page and watches them.
The page is kept out of the consumers: the group gives each member its share of the partitions,
and the consumer that also answered the page finished its share last while the other waited
(``tools/bench hub.scale``, two processes: the other idled for the last 3 s of 28; the page's p95
went from 57 to 13 ms with it out).

The workers are this program again (`hub --consumer-only`), each with a state directory of its own
under the hub's, the same config and environment (the database's DSN), and no systemd
notification socket: only the main process tells systemd it is ready. A worker that dies is started
again after RESTART_S (its partitions go to the others meanwhile, as Kafka's group does); on stop
each gets SIGTERM, then SIGKILL after the timeout. More processes than partitions leave the extra
ones idle: a box creates its topics with `kafka.partitions` (3 by default), so set it to the number
of hub processes or more before the boxes first connect.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.watch.supervise import read_status_file

log = logging.getLogger(__name__)

RESTART_S = 3.0
HUB_PID = "TRACKSIDE_HUB_PID"  # a worker's hub: the worker stops if its parent is no longer this one
SUMMED = ("power_rows", "crossing_rows", "segment_rows", "duplicates_skipped", "dead_letters", "batches")
# The variables through which systemd talks to the main process only.
SYSTEMD_ONLY = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    exited_at: float | None = None
    last_exit: int | None = None
    started: list[float] = field(default_factory=list)


class Workers:
    """``count`` worker processes of the hub, kept running until ``stop``."""

    def __init__(self, count: int, *, config: Path | None, state_dir: Path, log_level: str | None = None,
                 environ: dict[str, str] | None = None,
                 post: Callable[[list[dict[str, Any]]], None] = lambda _: None) -> None:
        self.config = config
        self.state_dir = state_dir
        self.log_level = log_level
        self.environ = {k: v for k, v in (os.environ if environ is None else environ).items()
                        if k not in SYSTEMD_ONLY} | {HUB_PID: str(os.getpid())}
        self.post = post
        self._workers = [_Worker(i) for i in range(1, count + 1)]
        self._stopping = False
        # What workers that exited had written, as their status files last said it: the hub's
        # figures count since the hub started, not since its newest worker did.
        self.carried = dict.fromkeys(SUMMED, 0)
        self._lock = threading.Lock()

    def command(self, worker: _Worker) -> list[str]:
        args = [sys.executable, "-c", "import sys; from gateway.cli.main import main; sys.exit(main())"]
        if self.log_level:
            args += ["--log-level", self.log_level]
        args += ["hub", "--consumer-only", "--state-dir", str(self.state_dir / f"worker-{worker.index}")]
        return args + (["--config", str(self.config)] if self.config else [])

    def start(self) -> None:
        with self._lock:
            for worker in self._workers:
                self._spawn(worker)
        self.post(self.status())

    def _spawn(self, worker: _Worker) -> None:
        worker.process = subprocess.Popen(self.command(worker), env=self.environ, stdin=subprocess.DEVNULL)
        worker.started.append(time.time())
        worker.exited_at = None
        log.info("hub worker %d started (pid %d)", worker.index, worker.process.pid)

    def watch(self, stop: threading.Event) -> None:
        """Start again a worker that exited, RESTART_S after it did, until ``stop`` is set."""
        while not stop.wait(0.5):
            with self._lock:
                if self._stopping:
                    return
                for worker in self._workers:
                    self._check(worker)
            self.post(self.status())

    def _check(self, worker: _Worker) -> None:
        process = worker.process
        if process is None or process.poll() is None:
            if worker.exited_at is not None and time.monotonic() - worker.exited_at >= RESTART_S:
                worker.restarts += 1
                self._spawn(worker)
            return
        worker.last_exit = process.returncode
        figures = self._figures(worker)
        for key in SUMMED:
            self.carried[key] += int(figures.get(key) or 0)
        worker.process = None
        worker.exited_at = time.monotonic()
        log.warning("hub worker %d (pid %d) exited with %s; starting it again in %.0f s (its partitions go "
                    "to the other processes meanwhile)", worker.index, process.pid, process.returncode, RESTART_S)

    def status(self) -> list[dict[str, Any]]:
        return [{"worker": w.index, "pid": w.process.pid if w.process else None,
                 "state": "running" if w.process is not None else "restarting", "restarts": w.restarts,
                 "last_exit": w.last_exit} for w in self._workers]

    def stats(self) -> list[dict[str, Any]]:
        """Each running worker's consumer figures, as its status file last said them."""
        with self._lock:
            return [hub for worker in self._workers if worker.process is not None and (hub := self._figures(worker))]

    def _figures(self, worker: _Worker) -> dict[str, Any]:
        doc = read_status_file(self.state_dir / f"worker-{worker.index}") or {}
        hub = (doc.get("components") or {}).get("hub")
        if not isinstance(hub, dict) or worker.process is None or doc.get("pid") != worker.process.pid:
            return {}  # not written yet, or left by the worker before this one
        return hub

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM to every worker (each writes what it owes and leaves the group), SIGKILL after ``timeout``."""
        with self._lock:
            self._stopping = True
            running = [w.process for w in self._workers if w.process is not None and w.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("hub worker pid %d did not stop within %.0f s: killed", process.pid, timeout)
                process.kill()
                process.wait(10)


def merged(snapshots: list[dict[str, Any]], carried: dict[str, int] | None = None) -> dict[str, Any]:
    """The group's consumer figures from its processes' (``HubStats.snapshot``): counts summed, with
    what ``carried`` holds of processes gone; each partition's lag from the process it is assigned to
    (a partition assigned to none: the largest figure last seen); each box's newest event."""
    out: dict[str, Any] = {key: sum(int(s.get(key) or 0) for s in snapshots) + (carried or {}).get(key, 0)
                           for key in SUMMED}
    lag: dict[str, dict[str, int]] = {}
    owned: set[tuple[str, str]] = set()
    for snap in snapshots:
        assigned = set(snap.get("assigned") or ())
        for topic, partitions in (snap.get("lag") or {}).items():
            for partition, n in partitions.items():
                key = (topic, partition)
                mine = f"{topic}[{partition}]" in assigned
                if mine or (key not in owned and n > lag.get(topic, {}).get(partition, -1)):
                    lag.setdefault(topic, {})[partition] = n
                if mine:
                    owned.add(key)
    last: dict[str, float] = {}
    for snap in snapshots:
        for gateway, t in (snap.get("last_event") or {}).items():
            last[gateway] = max(t, last.get(gateway, t))
    written = [s for s in snapshots if s.get("batches")]
    errors = [s["db_error"] for s in snapshots if s.get("db_error")]
    out.update(lag=lag, last_event=last, assigned=sorted({a for s in snapshots for a in s.get("assigned") or ()}),
               db_connected=any(s.get("db_connected") for s in snapshots)
               and all(s.get("db_connected") for s in written),
               db_error=errors[0] if errors else None, processes=len(snapshots))
    return out
