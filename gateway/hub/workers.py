"""`trackside-gateway hub --processes N`: the hub scaled out the way Kafka is made for (#35). One
Python process is bound by its interpreter lock (decoding and psycopg's row writing), so the hub
runs N processes in one consumer group: this one (the page, and a consumer) and N-1 workers (a
consumer and the course engine each, no page), which share the topics' partitions.

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

log = logging.getLogger(__name__)

RESTART_S = 3.0
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
                        if k not in SYSTEMD_ONLY}
        self.post = post
        self._workers = [_Worker(i) for i in range(1, count + 1)]
        self._stopping = False
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
        worker.process = None
        worker.exited_at = time.monotonic()
        log.warning("hub worker %d (pid %d) exited with %s; starting it again in %.0f s (its partitions go "
                    "to the other processes meanwhile)", worker.index, process.pid, process.returncode, RESTART_S)

    def status(self) -> list[dict[str, Any]]:
        return [{"worker": w.index, "pid": w.process.pid if w.process else None,
                 "state": "running" if w.process is not None else "restarting", "restarts": w.restarts,
                 "last_exit": w.last_exit} for w in self._workers]

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
