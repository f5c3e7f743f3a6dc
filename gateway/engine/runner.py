"""Feeds accepted events to the segment engine and its results back into ingest; restores after a restart."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from gateway.engine.segments import SegmentEngine
from gateway.ingest import Accepted
from gateway.model import GateCrossing, PowerSample, SegmentResult
from gateway.spool import Spool

log = logging.getLogger(__name__)


class EngineRunner:
    """Thread-safe glue: ``on_accepted`` is an ingest subscriber, ``tick`` runs on a timer."""

    def __init__(self, engine: SegmentEngine, emit: Callable[[SegmentResult], object]) -> None:
        self.engine = engine
        self.emit = emit
        self._lock = threading.Lock()

    def on_accepted(self, batch: list[Accepted]) -> None:
        with self._lock:
            results = [r for a in batch for r in self._feed(a.event, a.rider_id)]
        for result in results:
            self.emit(result)

    def _feed(self, event: object, rider_id: str | None) -> list[SegmentResult]:
        if isinstance(event, PowerSample):
            return self.engine.add_power(rider_id, event.wall_time, event.power, event.cadence) if rider_id else []
        if isinstance(event, GateCrossing):
            if rider_id is None:
                self.engine.add_unknown_crossing(event.transponder, event.gate, event.wall_time)
                return []
            return self.engine.add_crossing(rider_id, event.gate, event.wall_time)
        return []

    def tick(self, now: float | None = None) -> None:
        with self._lock:
            results = self.engine.tick(time.time() if now is None else now)
        for result in results:
            self.emit(result)

    def flush(self) -> None:
        with self._lock:
            results = self.engine.flush()
        for result in results:
            self.emit(result)

    def restore(self, spool: Spool) -> int:
        """Rebuild the open segments of this session from the spool; returns how many rows were read.

        Crossings and results of the session are read in full (they are few); power samples only
        from the earliest segment still open, so a restart mid-segment yields the full result.
        """
        session = self.engine.session_id
        crossings, stored = [], []
        count = 0
        with self._lock:
            for row in spool.since(0, kinds=("crossing", "segment"), session_id=session):
                count += 1
                (stored if row.kind == "segment" else crossings).append(row.message)
            for msg in crossings:
                if msg.get("rider_id"):
                    self.engine.add_crossing(msg["rider_id"], msg["gate"], msg["wallTime"])
                else:
                    self.engine.add_unknown_crossing(msg["transponder"], msg["gate"], msg["wallTime"])
            # After the crossings, so the spans exist: a stored result marks its span done, a
            # withdrawn one undoes that.
            for msg in stored:
                if "withdrawn" in msg.get("flags", ()):
                    self.engine.forget_emitted(msg["rider_id"], msg["start"], msg["end"], msg["number"])
                else:
                    self.engine.mark_emitted(msg["rider_id"], msg["start"], msg["end"], msg["number"])
            horizon = self.engine.open_since()
            if horizon is None:
                return count
            # Rows are in acceptance order, power samples a little behind or ahead of crossings:
            # start scanning well before the first crossing near the horizon.
            start_seq = min((m["seq"] for m in crossings if m["wallTime"] >= horizon - 60.0), default=0)
            results: list[SegmentResult] = []
            for row in spool.since(max(start_seq - 5000, 0), kinds=("power",), session_id=session):
                count += 1
                msg = row.message
                if msg.get("rider_id") and msg["wallTime"] >= horizon - 1.0:
                    results += self.engine.add_power(msg["rider_id"], msg["wallTime"], msg["instantPower"],
                                                     msg.get("cadence"))
        for result in results:
            self.emit(result)
        log.info("engine: session %s restored from %d spool rows; %d result(s) completed", session, count,
                 len(results))
        return count
