"""A thread-safe board where each component posts its state for the page and `status`."""

from __future__ import annotations

import threading
import time
from typing import Any


class StatusBoard:
    """Components ``post`` a JSON-able dict under their name; readers take a ``snapshot``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parts: dict[str, dict[str, Any]] = {}
        self.started = time.time()

    def post(self, name: str, **state: Any) -> None:
        with self._lock:
            self._parts[name] = {**state, "updated": time.time()}

    def get(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            part = self._parts.get(name)
            return dict(part) if part else None

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            parts = {k: dict(v) for k, v in self._parts.items()}
        return {"time": time.time(), "uptime_s": round(time.time() - self.started, 1), "components": parts}
