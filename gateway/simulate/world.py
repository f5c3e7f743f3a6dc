"""The simulated course: a lap with its gates at distances, riders with speed and power along it,
boxes at positions with a radio range and a clock of their own. Plain values, seeded: the same
world and seed give the same session, byte for byte."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

# How each kind of terrain changes a rider's pace and effort (speed in km/h at FTP, power as a
# share of FTP): a cross-country lap is climbs ridden hard and descents ridden fast and easy.
TERRAIN = {"climb": (11.0, 1.05), "descent": (32.0, 0.45), "technical": (17.0, 0.8), "flat": (24.0, 0.85)}
ANT_PERIOD_S = 8182 / 32768  # the power profile's channel period: about 4 messages a second


@dataclass(frozen=True)
class Gate:
    id: str
    at_m: float  # along the lap from the start/finish


@dataclass(frozen=True)
class SimCourse:
    """A lap of ``lap_m`` metres with its gates in order (the first at 0 m: the start/finish) and the
    terrain of each segment (segment k runs from gate k-1 to gate k, the last back to the finish)."""

    lap_m: float
    gates: tuple[Gate, ...]
    terrain: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.gates or self.gates[0].at_m != 0:
            raise ValueError("the first gate is the start/finish, at 0 m")
        if any(b.at_m <= a.at_m for a, b in zip(self.gates, self.gates[1:], strict=False)) \
                or self.gates[-1].at_m >= self.lap_m:
            raise ValueError("gates must be in order along the lap, within it")
        if len(self.terrain) != len(self.gates) or any(t not in TERRAIN for t in self.terrain):
            raise ValueError(f"one terrain per segment, each one of {', '.join(TERRAIN)}")

    def bounds(self, k: int) -> tuple[float, float]:
        """Segment ``k``'s start and end along the lap (1-based)."""
        start = self.gates[k - 1].at_m
        return start, self.gates[k].at_m if k < len(self.gates) else self.lap_m

    def segment_at(self, metres: float) -> int:
        """The segment (1-based) holding ``metres`` along the lap."""
        m = metres % self.lap_m
        return sum(1 for g in self.gates if g.at_m <= m)


@dataclass(frozen=True)
class SimRider:
    rider_id: str
    name: str
    ftp_w: float
    device: int  # the ANT+ device number of the rider's power meter
    transponder: str
    start_s: float = 0.0  # when the rider starts, after the session's start
    pace: float = 1.0  # faster (> 1) or slower than the terrain's speed at FTP


@dataclass(frozen=True)
class BoxClock:
    """How a box's clock differs from the truth: ``offset_s``, a drift in parts per million, and a
    receive jitter (one normal draw per message, standard deviation ``jitter_ms``)."""

    offset_s: float = 0.0
    drift_ppm: float = 0.0
    jitter_ms: float = 0.0

    def read(self, true_t: float, t0: float) -> float:
        """The box's clock when the truth is ``true_t`` (the drift counts from ``t0``)."""
        return true_t + self.offset_s + (true_t - t0) * self.drift_ppm * 1e-6


@dataclass(frozen=True)
class SimBox:
    """A box at ``at_m`` along the lap hearing ANT+ meters within ``range_m`` (and holding BLE
    connections for the riders nearest to it), with a timing receiver for the gates in ``gates``."""

    box_id: str
    at_m: float
    range_m: float = 30.0
    gates: tuple[str, ...] = ()
    clock: BoxClock = field(default_factory=BoxClock)
    reception: float = 0.95  # the share of messages in range that arrive (a forest, a body in the way)

    def hears(self, metres: float, lap_m: float) -> bool:
        d = abs(metres % lap_m - self.at_m % lap_m)
        return min(d, lap_m - d) <= self.range_m


@dataclass(frozen=True)
class World:
    course: SimCourse
    riders: tuple[SimRider, ...]
    boxes: tuple[SimBox, ...]
    laps: int = 3
    t0: float = 1_790_000_000.0  # the session's start, true time
    chip_offsets_s: dict[str, float] = field(default_factory=dict)  # each chip's own clock against the truth


def demo_course() -> SimCourse:
    """The embedded defaults' demo loop, laid out: 4.2 km, two climbs, a descent, a technical run."""
    return SimCourse(4200.0, (Gate("SF", 0.0), Gate("G1", 1300.0), Gate("G2", 2300.0), Gate("G3", 3300.0)),
                     ("climb", "descent", "climb", "technical"))


def riders_from(config_riders: Sequence[tuple[str, str, float | None, str | None]]) -> tuple[SimRider, ...]:
    """Simulated riders from configured ones ((id, name, FTP, transponder)): ANT+ device numbers
    10001 on, a start every 20 s, paces spread around 1."""
    out = []
    for i, (rid, name, ftp, chip) in enumerate(config_riders):
        out.append(SimRider(rid, name, float(ftp or 250.0), 10001 + i, chip or f"SIM-{i + 1:04d}",
                            start_s=20.0 * i, pace=1.0 + 0.04 * math.sin(i * 1.7)))
    return tuple(out)


def boxes_at(course: SimCourse, places: Sequence[str], range_m: float = 30.0) -> tuple[SimBox, ...]:
    """Boxes at gates (``"G2"``) or distances (``"1850"``): the ones at a gate hold its timing
    receiver. The first box keeps the true time; the others are off by seconds and drift, as boxes
    without a shared clock are."""
    gates = {g.id: g.at_m for g in course.gates}
    out = []
    for i, place in enumerate(places):
        at = gates.get(place)
        metres = at if at is not None else float(place)
        clock = BoxClock(0.0, 0.0, 5.0) if i == 0 else BoxClock(1.7 * i * (-1) ** i, 40.0 * (-1) ** i, 5.0)
        out.append(SimBox(f"box-{i + 1}", metres, range_m, (place,) if at is not None else (), clock))
    return tuple(out)
