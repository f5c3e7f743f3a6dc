"""The uplink's state for the status page: connected or down since when, counters, the backlog."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LinkState:
    connected: bool = False
    down_since: float | None = None
    last_error: str | None = None
    delivered: int = 0
    failed: int = 0
    reconnects: int = 0
    in_flight: int = 0
    backlog_rows: int = 0
    backlog_oldest: float | None = None
    topics_ready: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {k: v for k, v in self.__dict__.items() if k != "lock"}
