"""Autouse checks that fail a test which leaves threads, asyncio tasks or sockets behind.

A leak in a long-running daemon is a slow death on a box nobody can reach, so every test is held
to it. Session-scoped fixtures (the Kafka broker, shared clients) are set up before the first
snapshot and are not counted.
"""

from __future__ import annotations

import asyncio
import asyncio.runners
import os
import threading
import time
from collections.abc import Iterator

import pytest

GRACE_S = 3.0


def _socket_inodes() -> set[str]:
    out = set()
    fd_dir = "/proc/self/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            out.add(target)
    return out


def _threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.is_alive()}


def _wait_for(check: callable, grace: float = GRACE_S) -> object:  # type: ignore[valid-type]
    deadline = time.monotonic() + grace
    while True:
        leftover = check()
        if not leftover or time.monotonic() > deadline:
            return leftover
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("allow_leaks"):
        yield
        return
    threads_before = _threads()
    sockets_before = _socket_inodes()
    leaked_tasks: list[str] = []
    original = asyncio.runners._cancel_all_tasks  # type: ignore[attr-defined]

    def record_then_cancel(loop: asyncio.AbstractEventLoop) -> None:
        # asyncio.run() silently cancels tasks still pending when the main coroutine returns:
        # those are exactly the tasks the code under test forgot to stop.
        leaked_tasks.extend(repr(t) for t in asyncio.all_tasks(loop) if not t.done())
        original(loop)

    asyncio.runners._cancel_all_tasks = record_then_cancel  # type: ignore[attr-defined]
    try:
        yield
    finally:
        asyncio.runners._cancel_all_tasks = original  # type: ignore[attr-defined]
    problems = []
    if leaked_tasks:
        problems.append(f"asyncio tasks still pending when their loop ended: {leaked_tasks}")
    allowed = tuple(p for m in request.node.iter_markers("allow_threads") for p in m.args)
    threads = _wait_for(lambda: {t for t in _threads() - threads_before if not t.name.startswith(allowed or ("\0",))})
    if threads:
        problems.append(f"threads left running: {sorted(t.name for t in threads)}")
    sockets = _wait_for(lambda: _socket_inodes() - sockets_before)
    if sockets:
        problems.append(f"{len(sockets)} socket(s) left open: {sorted(sockets)}")
    if problems:
        pytest.fail("test leaked resources: " + "; ".join(problems), pytrace=False)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_leaks: skip the leak checks (only for tests of the checks)")
    config.addinivalue_line("markers", "allow_threads(*prefixes): threads so named belong to a longer-lived "
                                       "fixture (e.g. a module's browser), not to the test")
