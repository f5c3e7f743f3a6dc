"""What many tests share: a free loopback port, a bounded wait, the gateway as a real process."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gateway import config
from gateway.service.daemon import Daemon
from gateway.spool.store import NewEvent, Policy, Spool

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
DATA = TESTS / "data"  # recorded data, with its attribution (data/README.md)
ARTIFACTS = TESTS / "artifacts"  # screenshots and reports the browser tests leave for a person to look at
TOKEN = "s3cret"


def older_spool(path: Path, version: int) -> Any:
    """An open sqlite3 connection to a spool file as a gateway of schema ``version`` left it (its
    migrations only; from schema 6 on, numbered by box1). The caller fills it, sets
    ``PRAGMA user_version`` and commits."""
    import sqlite3

    from gateway.spool.schema import MIGRATIONS

    raw = sqlite3.connect(path)
    for step in range(1, version + 1):
        for statement in MIGRATIONS[step].split(";"):
            if statement.strip():
                raw.execute(statement)
    if version >= 6:
        raw.execute("INSERT INTO gateways (first_seq, gateway_id) VALUES (1, 'box1')")
    return raw


def tmpfs(mount: Path, size: str) -> Iterator[Path]:
    """A real filesystem of ``size`` (tmpfs) at ``mount``, for a full disk; `make test` runs as root."""
    import pytest

    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs and needs root (make test runs as root)")
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path) -> None:
    """Write zeros until the filesystem is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 512)
    except OSError:
        pass
    finally:
        os.close(fd)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], object], timeout: float, what: str, every: float = 0.1) -> None:
    """Poll ``predicate`` until it holds; fail saying what did not happen. Every wait has a deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m gateway ARGS`` with its stderr appended to ``log`` (the handle is the child's alone)."""
    with log.open("ab") as err:
        return subprocess.Popen([sys.executable, "-m", "gateway", *args], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=err)


class RunningDaemon:
    """The daemon on its embedded defaults, or on ``data`` (a validated config's document), with no
    replay from the config and the page on a free loopback port, in a thread."""

    def __init__(self, state: Path, token: str = TOKEN, edit: Callable[[dict[str, Any]], None] | None = None,
                 data: dict[str, Any] | None = None) -> None:
        data = data if data is not None else config.load(None).data
        data["web"].update(admin_token=token, host="127.0.0.1")
        data["sources"]["replay"]["enabled"] = False
        if edit is not None:
            edit(data)
        self.daemon = Daemon(config.Config(data, "test"), state_dir=state, port=0)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.daemon.run()), name="daemon")

    def __enter__(self) -> RunningDaemon:
        self.thread.start()
        deadline = time.monotonic() + 30
        while self.daemon.web_port is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.daemon.stop()
        self.thread.join(30)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.daemon.web_port}"

    def api(self, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(self.base + path, data=json.dumps(body).encode() if body is not None else None,
                                         method="POST" if body is not None else "GET",
                                         headers={"Content-Type": "application/json", "X-Admin-Token": TOKEN})
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read())


class Pty:
    """A real pseudo-terminal pair: the serial source opens the slave through ``link``; tests write
    the receiver's bytes to the master."""

    def __init__(self, link: Path) -> None:
        self.master, slave = os.openpty()
        self.name = os.ttyname(slave)
        os.close(slave)
        link.unlink(missing_ok=True)
        link.symlink_to(self.name)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        os.close(self.master)


def power_event(i: int, rider: str = "r01") -> NewEvent:
    """The ``i``-th power sample of ``rider`` in session s1, as ingest hands it to the spool."""
    return NewEvent("power", rider, "s1", 1000.0 + i, {"wallTime": 1000.0 + i, "instantPower": 200 + i % 7,
                                                        "rider_id": rider})


def open_spool(path: Path, **policy: Any) -> Spool:
    """A spool of box1 at ``path`` with the ``Policy`` fields given."""
    return Spool(path, "box1", Policy(**policy)).open()


def kafka_settings(bootstrap: str = "127.0.0.1:9", topics: dict[str, str] | None = None, **changes: Any) -> Any:
    """The kafka section as the schema's defaults make it, enabled, with ``changes``."""
    import dataclasses

    base = config.load(None).settings.kafka
    return dataclasses.replace(base, enabled=True, bootstrap_servers=bootstrap, topics=topics or base.topics,
                               **changes)
