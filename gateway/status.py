"""A thread-safe board where each component posts its state for the page and `status`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class StatusBoard:
    """Components ``post`` a JSON-able dict under their name, or ``provide`` a function that the board
    calls for every snapshot (for counters that change many times a second); readers take a
    ``snapshot``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parts: dict[str, dict[str, Any]] = {}
        self._providers: dict[str, Callable[[], dict[str, Any]]] = {}
        self.started = time.time()

    def provide(self, name: str, snapshot: Callable[[], dict[str, Any]]) -> None:
        with self._lock:
            self._providers[name] = snapshot

    def post(self, name: str, **state: Any) -> None:
        with self._lock:
            self._parts[name] = {**state, "updated": time.time()}

    def get(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            provider = self._providers.get(name)
            part = self._parts.get(name)
        if provider is not None:
            return {**provider(), "updated": time.time()}
        return dict(part) if part else None

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            parts = {k: dict(v) for k, v in self._parts.items()}
            providers = list(self._providers.items())
        now = time.time()
        for name, provider in providers:
            parts[name] = {**provider(), "updated": now}
        return {"time": time.time(), "uptime_s": round(time.time() - self.started, 1), "components": parts}
