"""Ingest: the thread that commits a session's events to the spool, in batches.

An event is accepted once it is committed; only then do subscribers (the engine, the page) see it,
as ``Accepted`` records (the typed event, its sequence number, when it was committed, its rider).
Three parts, as aiokafka splits its accumulator from its sender:

- ``IntakeQueue`` (``pipeline.intake``): ``submit`` never blocks a source; batches are taken when due;
- ``Committer`` (``pipeline.committer``): a batch into the spool's records, one transaction, then the
  subscribers; no thread of its own;
- ``Ingest``, here: the loop that owns the thread, and its periodic tasks.

The thread is also where the session's engine lives: subscribers run on it, ``every`` runs a
periodic task on it (the engine's clock tick), and ``call`` runs a function once everything
submitted before it is committed (closing a replay's open segments). The engine is never touched
from another thread, so it needs no lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from gateway.pipeline.accepted import Accepted, events_in
from gateway.pipeline.committer import Committer
from gateway.pipeline.intake import Batching, IntakeQueue
from gateway.pipeline.plausible import Plausible
from gateway.pipeline.roster import Roster
from gateway.pipeline.runs import Event
from gateway.spool.store import Spool

__all__ = ["Accepted", "Batching", "Ingest", "Periodic", "events_in"]

log = logging.getLogger(__name__)


@dataclass
class Periodic:
    """A task the ingest thread runs about every ``interval_s``."""

    interval_s: float
    run: Callable[[], object]
    due: float = 0.0


class Ingest:
    """Batches submitted events into spool transactions on its own thread."""

    def __init__(self, spool: Spool, roster: Roster, session_id: str, *, batching: Batching | None = None,
                 plausible: Plausible | None = None) -> None:
        self.spool = spool
        self.session_id = session_id
        self.committer = Committer(spool, roster, session_id, plausible)
        self.queue = IntakeQueue(batching or Batching())
        self._periodic: list[Periodic] = []
        self._thread: threading.Thread | None = None

    # -- what the rest of the box sees ------------------------------------------------------

    @property
    def roster(self) -> Roster:
        return self.committer.roster

    @roster.setter
    def roster(self, roster: Roster) -> None:
        """A pairing changed: set on this thread, between two batches (``call``)."""
        self.committer.roster = roster

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def pending(self) -> int:
        """Events submitted but not yet committed."""
        return self.queue.pending

    @property
    def overflow(self) -> int:
        return self.queue.overflow

    @property
    def rejected(self) -> int:
        return self.committer.rejected

    @property
    def unmapped(self) -> dict[str, int]:
        return self.committer.unmapped

    @property
    def implausible(self) -> dict[str, int]:
        return self.committer.implausible

    def subscribe(self, callback: Callable[[list[Accepted]], None]) -> None:
        """``callback`` gets every committed batch, in order, on the ingest thread: keep it quick."""
        self.committer.subscribers.append(callback)

    def every(self, interval_s: float, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the ingest thread about every ``interval_s`` (before ``start``)."""
        self._periodic.append(Periodic(interval_s, fn, time.monotonic() + interval_s))

    def call(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the ingest thread once everything submitted before it is committed."""
        self.queue.call(fn)

    def submit(self, event: Event) -> bool:
        """Queue ``event``; False (counted, logged) only if the queue is full because the spool stalled."""
        return self.queue.submit(event)

    def submit_many(self, events: Sequence[Event]) -> int:
        """Queue ``events`` in order, as many as there is room for; returns how many."""
        return self.queue.submit_many(events)

    def await_riders(self, riders: Collection[str]) -> None:
        """``riders`` have a closed segment that waits for their power stream to pass its end: their
        meters' next sample is committed at once, not after the batch interval (on this thread).

        Without it a crossing's result waited for the batch after it, up to a second on the live box
        (the spool's interval) and more in a replay at 100 times real speed."""
        if riders or self.queue.awaiting:
            self.queue.await_meters(self.committer.meters_of(set(riders)))

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> Ingest:
        self._thread = threading.Thread(target=self._run, name="ingest", daemon=True)
        self._thread.start()
        return self

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far has been committed (or refused)."""
        done = threading.Event()
        self.call(done.set)
        return done.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the thread."""
        self.queue.close()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        try:
            while (taken := self.queue.take(self._until_due())) is not None:
                batch, call = taken
                self._guard(f"a batch of {len(batch)} events could not be committed", self.committer.commit, batch)
                if call is not None:
                    self._guard("a call on the ingest thread failed", call)
                self._run_due()
        finally:
            self.spool.release_thread()

    def _until_due(self) -> float | None:
        if not self._periodic:
            return None
        return max(0.0, min(p.due for p in self._periodic) - time.monotonic())

    def _run_due(self) -> None:
        now = time.monotonic()
        for task in self._periodic:
            if now >= task.due:
                task.due = now + task.interval_s
                self._guard("a periodic task failed", task.run)

    @staticmethod
    def _guard(what: str, fn: Callable[..., object], *args: object) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("ingest: %s", what)
