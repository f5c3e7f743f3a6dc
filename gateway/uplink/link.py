"""The uplink's state for the status page: connected or down since when, counters, the backlog."""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field
from typing import Any

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


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
    refused_last: str | None = None  # the last event the producer or broker refused, and why
    # Sending to acknowledgement, one sample per delivery report (one per rider per batch): counts per
    # bucket (LATENCY_BUCKETS, then +Inf) and the sum.
    latency: dict[str, Any] = field(default_factory=lambda: {"buckets": [0] * (len(LATENCY_BUCKETS) + 1), "sum": 0.0})
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def observe(self, seconds: float) -> None:
        """One delivery's latency (call with the lock held)."""
        self.latency["buckets"][bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency["sum"] += seconds

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            out = {k: v for k, v in self.__dict__.items() if k != "lock"}
            out["latency"] = {"buckets": list(self.latency["buckets"]), "sum": self.latency["sum"]}
            return out
