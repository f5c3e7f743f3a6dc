"""Typed events shared by every layer: what sources produce and the engine consumes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PowerSample:
    """One power reading from a meter, as the source saw it (no rider yet: ingest maps that).

    ``wall_time`` is unix seconds from the box's or the file's clock; ``mono_time`` is the box's
    monotonic receive time (None for replayed files), kept because the box often has no NTP.
    """

    source: str
    sensor: str
    wall_time: float
    power: float
    cadence: float | None = None
    torque: float | None = None
    mono_time: float | None = None


@dataclass(frozen=True, slots=True)
class GateCrossing:
    """A transponder passing a timing gate, timed by the timing system's own clock."""

    source: str
    transponder: str
    gate: str
    wall_time: float
    mono_time: float | None = None
