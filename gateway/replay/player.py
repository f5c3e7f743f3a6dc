"""Playback of a recorded session at a chosen speed, with pause, resume, stop and speed changes.

``factor`` is the seed system's ``simulationFactor``: real seconds per recorded second (1 = real
time, 0.5 = twice as fast, 0.2 = five times, 0 = as fast as the pipeline takes it). Time comes
from an injectable clock, so tests never sleep.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from typing import Any, Protocol

from gateway.errors import ReplayError
from gateway.model import GateCrossing, PowerSample

Event = PowerSample | GateCrossing
MAX_FACTOR = 1000.0
STRETCH = 500  # events handed over at once at full speed (factor 0)


def check_factor(factor: object) -> float:
    """A speed factor from outside (config, API, command line): a finite number from 0 to 1000."""
    if isinstance(factor, bool) or not isinstance(factor, int | float) or not math.isfinite(factor) \
            or not 0 <= factor <= MAX_FACTOR:
        raise ReplayError(f"the speed factor must be a number from 0 to {MAX_FACTOR:g}, got {factor!r}",
                          where="replay", hint="1 = real time, 0.5 = twice as fast, 0 = as fast as possible")
    return float(factor)


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class Sink(Protocol):
    """Where a player's events go: a session's intake (``pipeline.ingest.Ingest``)."""

    def submit(self, event: Event) -> bool: ...

    def submit_many(self, events: Sequence[Event]) -> int: ...

    @property
    def pending(self) -> int: ...


class RealClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class Player:
    """Feeds ``events`` (sorted by time) to ``sink`` paced by ``factor``, never more than
    ``max_backlog`` waiting in it; controls from any task."""

    def __init__(self, session_id: str, events: Sequence[Event], sink: Sink, *, factor: float = 1.0,
                 clock: Clock | None = None, max_backlog: int = 50_000, label: str = "") -> None:
        check_factor(factor)
        self.session_id = session_id
        self.events = events
        self.sink = sink
        self.factor = factor
        self.clock = clock or RealClock()
        self.max_backlog = max_backlog
        self.label = label
        self.position = 0
        self.state = "ready"
        self._resume = asyncio.Event()
        self._resume.set()
        self._changed = asyncio.Event()
        self._anchor_real = 0.0
        self._anchor_rec = events[0].wall_time if events else 0.0

    @property
    def first(self) -> float:
        return self.events[0].wall_time if self.events else 0.0

    @property
    def last(self) -> float:
        return self.events[-1].wall_time if self.events else 0.0

    def recorded_now(self) -> float:
        """Where playback stands, in recorded time."""
        if self.position >= len(self.events):
            return self.last
        return self.events[self.position].wall_time if self.position else self.first

    def status(self) -> dict[str, Any]:
        elapsed = self.recorded_now() - self.first
        return {
            "session": self.session_id, "label": self.label, "state": self.state, "factor": self.factor,
            "position": self.position, "events": len(self.events),
            "elapsed_s": round(elapsed, 3), "remaining_s": round(self.last - self.first - elapsed, 3),
            "duration_s": round(self.last - self.first, 3),
        }

    def pause(self) -> None:
        if self.state == "playing":
            self.state = "paused"
            self._resume.clear()
            self._changed.set()

    def resume(self) -> None:
        if self.state == "paused":
            self.state = "playing"
            self._reanchor()
            self._resume.set()
            self._changed.set()

    def stop(self) -> None:
        if self.state in ("ready", "playing", "paused"):
            self.state = "stopped"
            self._resume.set()
            self._changed.set()

    def set_speed(self, factor: float) -> None:
        self.factor = check_factor(factor)
        self._reanchor()
        self._changed.set()

    def _reanchor(self) -> None:
        self._anchor_real = self.clock.now()
        self._anchor_rec = self.recorded_now()

    async def run(self) -> str:
        """Play to the end (or until stopped); returns the final state."""
        if self.state != "ready":
            return self.state
        self.state = "playing"
        self._reanchor()
        while self.position < len(self.events):
            await self._resume.wait()
            if self.state == "stopped":
                return self.state
            if self.factor == 0:
                await self._hand_over()
                continue
            event = self.events[self.position]
            if not await self._wait_for(event.wall_time):
                continue  # paused, stopped or re-timed while waiting: look again
            while self.sink.pending >= self.max_backlog or not self.sink.submit(event):
                await self.clock.sleep(0.01)  # the pipeline is behind: never drop a recorded event
            self.position += 1
            if self.factor == 0 and self.position % 500 == 0:
                await asyncio.sleep(0)
        self.state = "finished"
        return self.state

    async def _hand_over(self) -> None:
        """At full speed: the next stretch of events in one call, within the pipeline's backlog; the
        controls and the status are seen between two stretches."""
        room = min(self.max_backlog - self.sink.pending, STRETCH)
        taken = self.sink.submit_many(self.events[self.position:self.position + room]) if room > 0 else 0
        self.position += taken
        await (self.clock.sleep(0.01) if taken == 0 else asyncio.sleep(0))

    async def _wait_for(self, recorded: float) -> bool:
        """Sleep until ``recorded`` is due; False if a control changed things meanwhile."""
        if self.factor == 0:
            return True
        due = self._anchor_real + (recorded - self._anchor_rec) * self.factor
        delay = due - self.clock.now()
        if delay <= 0:
            return True
        self._changed.clear()
        sleeper = asyncio.ensure_future(self.clock.sleep(delay))
        changed = asyncio.ensure_future(self._changed.wait())
        done, pending = await asyncio.wait({sleeper, changed}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return sleeper in done and not self._changed.is_set()
