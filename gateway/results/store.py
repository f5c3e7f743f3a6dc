"""The one interface through which the page, the API, exports, SSE catch-up and populations read
segment results: on the box the SQLite spool implements it (``gateway.results.sqlite``), on the hub
PostgreSQL does. Nothing above this layer knows which."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from gateway.engine.normalize import Population
from gateway.model import SegmentResult
from gateway.model import current_results as current

__all__ = ["ResultsStore", "current"]


class ResultsStore(Protocol):
    def sessions(self) -> list[dict[str, Any]]:
        """Every session with results, oldest first: ``session``, ``results``, ``first``, ``last``, and
        what else the store knows of it (name, box, course, live or replay)."""
        ...

    def results(self, sessions: Sequence[str]) -> list[SegmentResult]:
        """The current results of these sessions (withdrawn ones taken out), in the order produced."""
        ...

    def population(self, population: Population) -> list[SegmentResult]:
        """The current results a population admits (sessions, squad, rider; on the hub also course and dates)."""
        ...

    def last_seq(self) -> int:
        """The newest stored event's sequence number (the SSE id a page resumes from)."""
        ...

    def results_since(self, seq: int) -> Iterator[tuple[int, SegmentResult]]:
        """Every stored result after ``seq`` with its sequence number, withdrawals included, in order."""
        ...

    def course(self, session: str) -> dict[str, Any] | None:
        """The course a session was ridden on, when the store knows it (else the configured one)."""
        ...

    def course_of(self, session: str) -> str | None:
        """The course id of a session: populations across sessions keep to it."""
        ...

    def record(self, session: str) -> dict[str, Any] | None:
        """The session's record as its box last published it (name, riders as used, tags...)."""
        ...

    def notes(self, session: str) -> list[dict[str, Any]]:
        """The coach's notes on a session's results: rider_id, number, text, at."""
        ...

    def rider_power(self, session: str, rider: str) -> tuple[list[float], list[float]]:
        """A rider's power samples in a session (times, watts), in time order; implausible ones out."""
        ...

    def rider_sessions(self, rider: str) -> list[str]:
        """The sessions with results of a rider, oldest first (critical power from the history)."""
        ...

    def heard_by(self, session: str) -> dict[str, list[str]]:
        """Which boxes each current result rests on, by ``rider_id|number``: a course result's boxes
        (the hub), a box session's own box. Empty: the box serving the page heard them all."""
        ...
