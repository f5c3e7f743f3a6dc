"""A source's link state for the status page: searching, connected, lost, no adapter; since when; counters."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from gateway.status import StatusBoard

DEVICES_KEPT = 64  # devices a source lists (an ANT+ stick hears 8 channels' worth; BLE scans more)


class Link:
    """Read live by the status board at every snapshot, so counters are never stale."""

    def __init__(self, status: StatusBoard | None, name: str) -> None:
        self.name = name
        self.state = "starting"
        self.since = time.time()
        self.detail: str | None = None
        self.counters: Counter[str] = Counter()
        self.devices: dict[str, Any] = {}
        self.extra: dict[str, Any] = {}
        self._lock = threading.Lock()  # sources count on their own threads; the board reads on others
        if status is not None:
            status.provide(f"source.{name}", self.snapshot)

    def set(self, state: str, detail: str | None = None) -> None:
        with self._lock:
            if state != self.state or detail != self.detail:
                self.state, self.detail, self.since = state, detail, time.time()

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counters[key] += n

    def device(self, key: str, **info: Any) -> None:
        """A device heard (kept newest last; past ``DEVICES_KEPT`` the longest unheard goes: a flood of
        strangers' meters must not grow the status without end)."""
        with self._lock:
            self.devices[key] = {**self.devices.pop(key, {}), **info, "seen": time.time()}
            if len(self.devices) > DEVICES_KEPT:
                del self.devices[next(iter(self.devices))]

    def note(self, **info: Any) -> None:
        """Extra state for the status page (a receiver's clock offset, ...)."""
        with self._lock:
            self.extra.update(info)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"state": self.state, "since": self.since, "detail": self.detail, "counters": dict(self.counters),
                    "devices": {k: dict(v) for k, v in self.devices.items()}, **self.extra}


def backoff(attempt: int, ceiling: float) -> float:
    """1, 2, 4, ... seconds up to ``ceiling``."""
    return min(ceiling, 2.0 ** min(attempt, 10))
