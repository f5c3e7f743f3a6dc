"""Feeds accepted events to the segment engine and its results back into ingest; restores after a restart.

Everything here runs on the session's ingest thread (see pipeline.ingest): the engine needs no lock.
``stats`` is a snapshot refreshed on that thread, for the status page to read from any other.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from gateway.engine.segments import SegmentEngine
from gateway.model import GateCrossing, PowerSample, SegmentResult
from gateway.pipeline.accepted import Accepted
from gateway.pipeline.runs import PowerRun
from gateway.spool.store import Spool
from gateway.wire import WireError, decode_event

log = logging.getLogger(__name__)

# Restore reads power samples from the first crossing this long before the oldest open segment, and
# this many rows before it: samples are committed a little behind or ahead of crossings.
RESTORE_LOOKBACK_S = 60.0
RESTORE_ROWS_BEFORE = 5000


class EngineRunner:
    """``on_accepted`` is an ingest subscriber; ``tick`` and ``flush`` run on the ingest thread too."""

    def __init__(self, engine: SegmentEngine, emit: Callable[[SegmentResult], object],
                 awaiting: Callable[[frozenset[str]], object] = lambda riders: None) -> None:
        self.engine = engine
        self.emit = emit
        self.awaiting = awaiting  # told, after each batch and tick, whose power the engine waits for
        self.errors = 0
        self.stats: dict[str, object] = engine.stats()

    def on_accepted(self, batch: list[Accepted]) -> None:
        results: list[SegmentResult] = []
        add_power = self.engine.add_power
        start = 0
        while start < len(batch):
            at = start
            try:
                # Power samples, hundreds a second, straight to the engine; the rest one by one.
                for at in range(start, len(batch)):
                    a = batch[at]
                    event = a.event
                    if type(event) is PowerSample:
                        if a.usable and a.rider_id:
                            done = add_power(a.rider_id, event.wall_time, event.power, event.cadence)
                            if done:
                                results += done
                    elif a.usable:
                        results += self._feed(event, a.rider_id)
                start = len(batch)
            except Exception as exc:  # MemoryError included: the event is skipped, the batch goes on
                self._failed(batch[at].event, batch[at].seq, exc)
                start = at + 1
        for result in results:
            self.emit(result)
        self.awaiting(self.engine.awaiting_power())

    def _guarded(self, event: object, rider_id: str | None, seq: int | None) -> list[SegmentResult]:
        """One event that breaks the engine is logged and skipped: it stays in the spool, and it must
        never stop the daemon or a restart that reloads it."""
        try:
            return self._feed(event, rider_id)
        except Exception as exc:  # MemoryError included
            self._failed(event, seq, exc)
            return []

    def _failed(self, event: object, seq: int | None, exc: Exception) -> None:
        self.errors += 1
        log.error("engine: event %s (%r) could not be used and is skipped: %s: %s", seq, event,
                  type(exc).__name__, exc)

    def _feed(self, event: object, rider_id: str | None) -> list[SegmentResult]:
        if isinstance(event, PowerRun):
            return self.engine.add_power_run(rider_id, event.walls, event.powers, event.cadences) if rider_id else []
        if isinstance(event, PowerSample):
            return self.engine.add_power(rider_id, event.wall_time, event.power, event.cadence) if rider_id else []
        if isinstance(event, GateCrossing):
            if rider_id is None:
                self.engine.add_unknown_crossing(event.transponder, event.gate, event.wall_time)
                return []
            return self.engine.add_crossing(rider_id, event.gate, event.wall_time, event.lap)
        return []

    def tick(self, now: float | None = None) -> None:
        """Close segments whose power stream went quiet (on the engine's clock: the box's, or a
        replay's recorded time); refresh ``stats``."""
        try:
            results = self.engine.tick(time.time() if now is None else now)
        except Exception as exc:
            self.errors += 1
            log.error("engine: closing segments failed: %s: %s", type(exc).__name__, exc)
            results = []
        self.stats = self.engine.stats()
        for result in results:
            self.emit(result)
        self.awaiting(self.engine.awaiting_power())

    def flush(self) -> None:
        for result in self.engine.flush():
            self.emit(result)

    def restore(self, spool: Spool) -> int:
        """Rebuild the open segments of this session from the spool; returns how many rows were read.

        Crossings and results of the session are read in full (they are few); power samples only
        from the earliest segment still open, so a restart mid-segment yields the full result. A row
        the engine cannot use is logged and skipped: no single stored event can stop a restart.
        """
        session = self.engine.session_id
        crossings: list[tuple[int, GateCrossing, str | None]] = []
        stored = []
        count = 0
        # Before the ingest thread starts: nothing else touches the engine yet.
        for row in spool.queries.since(0, kinds=("crossing", "segment"), session_id=session):
            count += 1
            try:
                decoded = decode_event(row.kind, row.payload)
            except WireError as exc:
                self._skip(row.seq, exc)
                continue
            event = decoded.event
            if isinstance(event, SegmentResult):
                stored.append((event.rider_id, event.start, event.end, event.number, "withdrawn" in event.flags))
            elif isinstance(event, GateCrossing):
                # The engine places a crossing by its time on the box's timeline, not the receiver's.
                crossings.append((row.seq, GateCrossing(event.source, event.transponder, event.gate,
                                                        event.wall_time, lap=event.lap), decoded.rider_id))
        for seq, crossing, rider in crossings:
            self._guarded(crossing, rider, seq)
        # After the crossings, so the spans exist: a stored result marks its span done, a
        # withdrawn one undoes that.
        for rider, start, end, number, withdrawn in stored:
            if withdrawn:
                self.engine.forget_emitted(rider, start, end, number)
            else:
                self.engine.mark_emitted(rider, start, end, number)
        horizon = self.engine.open_since()
        if horizon is None:
            return count
        # Rows are in acceptance order, power samples a little behind or ahead of crossings:
        # start scanning well before the first crossing near the horizon.
        start_seq = min((seq for seq, c, _ in crossings if c.wall_time >= horizon - RESTORE_LOOKBACK_S), default=0)
        results: list[SegmentResult] = []
        for row in spool.queries.since(max(start_seq - RESTORE_ROWS_BEFORE, 0), kinds=("power",), session_id=session):
            count += 1
            try:
                decoded = decode_event("power", row.payload)
            except WireError as exc:
                self._skip(row.seq, exc)
                continue
            sample = decoded.event
            if (decoded.rider_id and not decoded.implausible and isinstance(sample, PowerSample)
                    and sample.wall_time >= horizon - 1.0):
                results += self._guarded(sample, decoded.rider_id, row.seq)
        for result in results:
            self.emit(result)
        log.info("engine: session %s restored from %d spool rows; %d result(s) completed", session, count,
                 len(results))
        return count

    def _skip(self, seq: int, exc: Exception) -> None:
        self.errors += 1
        log.error("engine: spool row %d is not a usable event (%s: %s); skipped", seq, type(exc).__name__, exc)
