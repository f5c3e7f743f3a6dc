"""What a committed event looks like to those who follow the spool's commits (the engine, the page,
a replay's counters): the typed event and its stamps, never the spool's row nor its JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from gateway.pipeline.runs import Event, PowerRun


class Accepted(NamedTuple):
    """An event committed to the spool: its sequence number, when it was committed (the box's clock),
    the rider it belongs to (None if unknown).

    ``usable`` is False for a power sample outside the plausible ranges: stored and forwarded with
    its flag, never averaged into a segment. ``event`` is a ``PowerRun`` for a long run of one
    meter's samples committed together (a replay at full speed): ``seq`` is then its first sample's.
    """

    event: Event | PowerRun
    seq: int
    committed: float
    rider_id: str | None
    usable: bool = True


def events_in(batch: Sequence[Accepted]) -> int:
    """How many events a committed batch holds (a ``PowerRun`` counts its samples)."""
    return len(batch) + sum(len(a.event.walls) - 1 for a in batch if type(a.event) is PowerRun)
