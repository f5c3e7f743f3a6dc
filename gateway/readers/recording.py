"""What every reader yields: one rider's or one timing system's events, sorted, ready to replay."""

from __future__ import annotations

import datetime as dt
import math
import numbers
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from gateway.model import GateCrossing, PowerSample


@dataclass(frozen=True)
class FileSegment:
    """One timed segment as a file numbers it: ``lap.segment``, from ``start`` to ``end``."""

    lap: int
    segment: int
    start: float
    end: float


@dataclass
class Recording:
    """Events from one file; ``rider`` is who the power belongs to (None for a timing file).

    A file that times segments itself says how many a lap has (``per_lap``, the highest segment
    number it uses; ``lap_shapes`` gives each lap's), and ``build`` lays its crossings on any
    course's gates: the course may come from the file.
    """

    path: str
    kind: str
    rider: str | None = None
    samples: list[PowerSample] = field(default_factory=list)
    crossings: list[GateCrossing] = field(default_factory=list)
    per_lap: int | None = None
    lap_shapes: dict[int, int] = field(default_factory=dict)
    build: Callable[[Sequence[str]], list[GateCrossing]] | None = field(default=None, repr=False)

    def shifted(self, offset_s: float) -> Recording:
        """The same recording with every time moved by ``offset_s`` (a head unit whose clock was off)."""
        if not offset_s:
            return self
        return replace(
            self,
            samples=[PowerSample(s.source, s.sensor, s.wall_time + offset_s, s.power, s.cadence, s.torque)
                     for s in self.samples],
            crossings=[replace(c, wall_time=c.wall_time + offset_s) for c in self.crossings],
            build=None,
        )


def crossings_from_segments(source: str, transponder: str, gates: Sequence[str],
                            segments: Sequence[FileSegment]) -> list[GateCrossing]:
    """Crossings that make the engine number its segments as the file does.

    Segment k of a lap runs from gate k-1 to gate k (gate 0 the start/finish, reached again at the
    end of the last segment); each crossing says which lap the segment starting at it belongs to,
    so a file that starts at lap 2 or skips a lap keeps its lap numbers. Rows that follow each
    other share one crossing; where the file skips a segment number between two rows that follow
    each other, the shared crossing is the later row's gate, so the earlier row becomes a span over
    a missed gate (``1.2-3``), flagged and kept out of terrain comparisons, never a renumbered one.
    """
    n = len(gates)
    out: list[GateCrossing] = []
    for seg in sorted(segments, key=lambda s: s.start):
        start_gate = (seg.segment - 1) % n
        end_gate = seg.segment % n
        start = GateCrossing(source, transponder, gates[start_gate], seg.start, lap=seg.lap)
        if out and abs(seg.start - out[-1].wall_time) <= CONTIGUOUS_S:
            out[-1] = replace(start, wall_time=out[-1].wall_time)
        else:
            out.append(start)
        out.append(GateCrossing(source, transponder, gates[end_gate], seg.end,
                                lap=seg.lap + 1 if end_gate == 0 else seg.lap))
    return out


CONTIGUOUS_S = 1.0


def crossings_from_boundaries(source: str, transponder: str, gates: Sequence[str], times: list[float],
                              first_gate: int = 0) -> list[GateCrossing]:
    """Crossings at successive boundaries (lap or segment ends), walking the course's gates in order."""
    n = len(gates)
    return [GateCrossing(source, transponder, gates[(first_gate + i) % n], t) for i, t in enumerate(times)]


_CLOCK = re.compile(r"^\+?\s*(?:(\d+):)?(\d+(?:[.,]\d+)?)(?:\s*\(\d+\))?$")


def _number(value: object) -> float | None:
    """A plain number as float, None for anything else; an empty cell (None, NaN, bool) is an error."""
    if isinstance(value, bool) or value is None or (isinstance(value, float) and math.isnan(value)):
        raise ValueError("empty")
    return float(value) if isinstance(value, int | float) else None


def seconds_of(value: object) -> float:
    """Seconds from a number, a timedelta, a time of day, or text like '1:23.45', '83,45', '+50.1 (2)'."""
    number = _number(value)
    if number is not None:
        return number
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, dt.time):
        return value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6
    match = _CLOCK.match(str(value).strip())
    if not match:
        raise ValueError(f"{value!r} is not a duration")
    minutes, seconds = match.groups()
    return int(minutes or 0) * 60 + float(seconds.replace(",", "."))


MAX_DURATION_S = 24 * 3600.0
MAX_POWER_W = 10_000.0  # beyond any rider: a broken cell, not a sprint


def duration_of(value: object) -> float:
    """A lap, split or segment time in seconds: finite, 0 or more, at most a day."""
    seconds = seconds_of(value)
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_DURATION_S:
        raise ValueError(f"{value!r} is not a duration between 0 and 24 h")
    return seconds


def power_of(value: object) -> float:
    """A power reading in watts from a file: finite, 0 or more, at most 10 kW."""
    if not isinstance(value, numbers.Real | str) or isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    watts = float(value)
    if not math.isfinite(watts) or not 0 <= watts <= MAX_POWER_W:
        raise ValueError(f"{value!r} is not a power between 0 and {MAX_POWER_W:.0f} W")
    return watts


def unix_time(value: object) -> float:
    """Unix seconds from a number (unix seconds), a datetime (UTC unless it says), or ISO text."""
    number = _number(value)
    if number is not None:
        return number
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            value = dt.datetime.fromisoformat(value.strip())
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.timestamp()
    raise ValueError(f"{value!r} is not a time")


def plausible_time(value: object) -> float:
    """``unix_time`` between 1990 and 2100: anything else is a broken cell, and would be a session of
    decades on the replay's clock."""
    t = unix_time(value)
    if not math.isfinite(t) or not 631_152_000.0 <= t <= 4_102_444_800.0:
        raise ValueError(f"{value!r} is not a time between 1990 and 2100")
    return t
