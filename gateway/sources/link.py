"""A source's link state for the status page: searching, connected, lost, no adapter; since when; counters."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from gateway.status import StatusBoard


class Link:
    def __init__(self, status: StatusBoard | None, name: str) -> None:
        self.status = status
        self.name = name
        self.state = "starting"
        self.since = time.time()
        self.detail: str | None = None
        self.counters: Counter[str] = Counter()
        self.devices: dict[str, Any] = {}
        self._post()

    def set(self, state: str, detail: str | None = None) -> None:
        if state != self.state or detail != self.detail:
            self.state, self.detail, self.since = state, detail, time.time()
            self._post()

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] += n
        if self.counters[key] == 1 or self.counters[key] % 100 == 0:
            self._post()

    def device(self, key: str, **info: Any) -> None:
        self.devices[key] = {**self.devices.get(key, {}), **info, "seen": time.time()}

    def _post(self) -> None:
        if self.status is not None:
            self.status.post(f"source.{self.name}", state=self.state, since=self.since, detail=self.detail,
                             counters=dict(self.counters), devices=self.devices)


def backoff(attempt: int, ceiling: float) -> float:
    """1, 2, 4, ... seconds up to ``ceiling``."""
    return min(ceiling, 2.0 ** min(attempt, 10))
