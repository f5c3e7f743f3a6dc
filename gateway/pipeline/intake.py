"""The queue between the sources and the spool: ``submit`` never blocks a source; the ingest loop
takes a batch when one is due. A crossing or a result (what the coach waits for), a sample a closed
segment waits for, or a call makes the batch go at once; power samples otherwise wait for
``interval_s`` or ``batch_size`` of them.

Calls (run a function on the ingest thread once everything submitted before it is committed) wait
in their own queue, each with the number of events that must be taken before it runs: they are
never mixed with the events.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.model import PowerSample
from gateway.pipeline.runs import Event

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Batching:
    """When a batch goes: after ``interval_s``, or at once when ``size`` events wait; at most
    ``max_batch`` in one (more than ``size`` for a replay: see ``pipeline.build``); at most
    ``max_queue`` waiting (more are refused and counted: ``overflow``)."""

    interval_s: float = 0.05
    size: int = 500
    max_batch: int | None = None
    max_queue: int = 200_000


class IntakeQueue:
    """Thread-safe. ``take`` is called by one thread only (the ingest loop's)."""

    def __init__(self, batching: Batching) -> None:
        self.batch_size = batching.size  # this many waiting: taken without waiting for the interval
        self.max_batch = max(batching.size, batching.max_batch or batching.size)  # at most this many in one batch
        self.interval_s = batching.interval_s
        self.max_queue = batching.max_queue
        self._events: deque[Event] = deque()
        self._calls: deque[tuple[int, Callable[[], object]]] = deque()  # (events taken before it, function)
        self._cond = threading.Condition()
        self._taken = 0  # events taken by the loop in all
        self._urgent = 0  # crossings and results queued: while any is, batches go at once
        self._hurry = False  # a sample a closed segment waits for is queued
        self._idle = False  # the loop waits for a first event: a submit wakes it
        self.closing = False
        # Meters of riders whose segment waits for their next sample (``await_meters``).
        self._awaited: frozenset[tuple[str, str]] = frozenset()
        self.overflow = 0

    @property
    def awaiting(self) -> bool:
        """Some meters' next sample is awaited (``await_meters``)."""
        return bool(self._awaited)

    @property
    def pending(self) -> int:
        """Events submitted but not yet taken."""
        return len(self._events)

    def submit(self, event: Event) -> bool:
        """Queue ``event``; False (counted, logged) only if the queue is full because the spool stalled.

        A power sample takes no lock (a deque's append is atomic): only the loop's wake-up does,
        when it waits for a first event or a full batch."""
        events = self._events
        if len(events) >= self.max_queue:
            with self._cond:
                self.overflow += 1
                if self.overflow == 1 or self.overflow % 10_000 == 0:
                    log.error("ingest queue full (%d events): the spool is not keeping up; %d events refused",
                              self.max_queue, self.overflow)
            return False
        events.append(event)
        if type(event) is not PowerSample:
            with self._cond:
                self._urgent += 1
                self._cond.notify_all()
        elif self._awaited and (event[0], event[1]) in self._awaited:
            with self._cond:
                self._hurry = True
                self._cond.notify_all()
        elif self._idle or len(events) == self.batch_size:
            with self._cond:
                self._cond.notify_all()
        return True

    def submit_many(self, events: Sequence[Event]) -> int:
        """Queue ``events`` in order, as many as there is room for; returns how many (a replay at full
        speed hands over its recording a stretch at a time: the rest is its to offer again)."""
        queue = self._events
        room = self.max_queue - len(queue)
        if room <= 0:
            return 0
        taken = events if len(events) <= room else events[:room]
        queue.extend(taken)
        urgent = sum(type(e) is not PowerSample for e in taken)
        with self._cond:
            self._urgent += urgent
            self._cond.notify_all()
        return len(taken)

    def call(self, fn: Callable[[], object]) -> None:
        with self._cond:
            self._calls.append((self._taken + len(self._events), fn))
            self._cond.notify_all()

    def await_meters(self, meters: frozenset[tuple[str, str]]) -> None:
        """``meters``' next sample makes its batch go at once (a closed segment waits for it); samples of
        theirs already queued do too (on the loop's thread, between two batches)."""
        self._awaited = meters
        if meters and len(self._events) < self.batch_size:
            queued = [e for e in list(self._events) if type(e) is PowerSample]  # list(): a copy made in C
            if any((e[0], e[1]) in meters for e in queued):
                self._hurry = True

    def close(self) -> None:
        """What is queued is still taken; then ``take`` returns None."""
        with self._cond:
            self.closing = True
            self._cond.notify_all()

    def take(self, until_due: float | None) -> tuple[list[Event], Callable[[], object] | None] | None:
        """The next batch, and the call due after it (if any): waits for a first event (at most
        ``until_due`` seconds: a periodic task is due; ([], None) then), then for the batch to fill.
        None once closed and empty."""
        with self._cond:
            self._idle = True  # before looking at the queue: a submit after this look wakes us
            while not self._events and not self._calls and not self.closing:
                if not self._cond.wait(until_due):
                    break
            self._idle = False
            if not self._events and not self._calls:
                return None if self.closing else ([], None)
            deadline = time.monotonic() + self.interval_s
            while len(self._events) < self.batch_size and not (
                    self.closing or self._urgent or self._hurry or self._calls):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            self._hurry = False
            n = min(len(self._events), self.max_batch)
            call = None
            if self._calls:
                marker = self._calls[0][0]
                if marker - self._taken <= n:  # the batch ends where the call is due
                    n = marker - self._taken
                    call = self._calls.popleft()[1]
            popleft = self._events.popleft
            batch = [popleft() for _ in range(n)]
            self._taken += n
            self._urgent -= n - list(map(type, batch)).count(PowerSample)  # counted in C
            return batch, call
