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
    """A transponder passing a timing gate.

    ``wall_time`` is on the box's timeline; ``receiver_time`` is the timing system's own clock when
    the two differed and the crossing was moved (None when they agree, and for files). ``lap`` is
    set by files that number their laps (None: the engine counts start/finish crossings).
    """

    source: str
    transponder: str
    gate: str
    wall_time: float
    mono_time: float | None = None
    receiver_time: float | None = None
    lap: int | None = None  # from a file that numbers its laps: the lap of the segment starting here


@dataclass(frozen=True, slots=True)
class SegmentResult:
    """One rider's metrics over one segment, as stored, forwarded and shown.

    ``number`` is ``"<lap>.<segment>"``; a span over missed gates reads ``"<lap>.<first>-<last>"``
    and has ``segment`` None, so it never joins the population of a single piece of terrain.
    Power fields are None for a rider without power data (a time-only result).
    """

    session_id: str
    rider_id: str
    name: str
    number: str
    lap: int
    segment: int | None
    start: float
    end: float
    duration: float
    start_gate: str
    end_gate: str
    power_avg: float | None
    cadence_avg: float | None
    normalized_power: float | None
    intensity_factor: float | None
    tss: float | None
    watts_per_kg: float | None
    samples: int
    coverage: float
    flags: tuple[str, ...] = ()
    np_window: str = "segment"  # which NP convention (gateway.engine.metrics.NP_WINDOWS)

    def to_wire(self) -> dict[str, object]:
        """The segments topic's JSON fields (DESIGN.md, "Events on the wire")."""
        return {
            "session_id": self.session_id,
            "simulation_id": self.session_id,
            "rider_id": self.rider_id,
            "name": self.name,
            "number": self.number,
            "lap": self.lap,
            "segment": self.segment,
            "start": self.start,
            "end": self.end,
            "duration": self.duration,
            "start_gate": self.start_gate,
            "end_gate": self.end_gate,
            "power_avg": self.power_avg,
            "cadence_avg": self.cadence_avg,
            "normalized_power": self.normalized_power,
            "intensity_factor": self.intensity_factor,
            "tss": self.tss,
            "watts_per_kg": self.watts_per_kg,
            "samples": self.samples,
            "coverage": self.coverage,
            "flags": list(self.flags),
            "np_window": self.np_window,
        }

    @classmethod
    def from_wire(cls, msg: dict[str, object]) -> SegmentResult:
        """The inverse of ``to_wire`` (extra identity fields such as event_id are ignored)."""
        fields = {name: msg.get(name) for name in cls.__dataclass_fields__}
        fields["flags"] = tuple(msg.get("flags") or ())  # type: ignore[arg-type]
        fields["np_window"] = msg.get("np_window") or "segment"  # results stored before it was said
        return cls(**fields)  # type: ignore[arg-type]
