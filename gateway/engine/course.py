"""The course model and the pure assembly of gate crossings into segments.

Gates are ordered round the lap; gate 0 is the start/finish. Segment k (1-based) runs from gate
k-1 to gate k, and the last segment runs back to the start/finish, so a course of n gates has n
segments. A lap ends at the start/finish: laps count the rider's start/finish crossings, so the
first segment after the first start is "1.1", and anything ridden before a rider's first
start/finish crossing belongs to lap 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Course:
    gates: tuple[str, ...]
    segment_names: tuple[str | None, ...] = ()
    debounce_s: float = 5.0
    max_segment_s: float = 3600.0

    def __post_init__(self) -> None:
        if not self.gates:
            raise ValueError("a course needs at least one gate")

    @property
    def size(self) -> int:
        return len(self.gates)

    def index(self, gate: str) -> int | None:
        try:
            return self.gates.index(gate)
        except ValueError:
            return None


@dataclass(frozen=True, order=True)
class Crossing:
    time: float
    gate: str
    lap: int | None = field(default=None, compare=False)  # a file's own lap number (see assemble)


@dataclass(frozen=True)
class Span:
    """The stretch between two accepted crossings of one rider."""

    lap: int
    first: int
    last: int
    start: float
    end: float
    start_gate: str
    end_gate: str
    flags: tuple[str, ...] = ()

    @property
    def number(self) -> str:
        return f"{self.lap}.{self.first}" if "missed_gate" not in self.flags else f"{self.lap}.{self.first}-{self.last}"

    @property
    def segment(self) -> int | None:
        """The single course segment this span is, or None when it covers missed gates or is too long
        to be a ride over one piece of terrain."""
        return None if "missed_gate" in self.flags or "too_long" in self.flags else self.first

    @property
    def key(self) -> tuple[float, float, str]:
        return (self.start, self.end, self.number)


@dataclass
class Assembly:
    spans: list[Span] = field(default_factory=list)
    duplicates: list[Crossing] = field(default_factory=list)
    unknown_gates: list[Crossing] = field(default_factory=list)


def assemble(crossings: Iterable[Crossing], course: Course) -> Assembly:
    """Spans from one rider's crossings (sorted here by time, so arrival order does not matter).

    - A repeat of the same gate within ``course.debounce_s`` is a duplicate and is left out.
    - Consecutive crossings that skip gates make one span flagged ``missed_gate`` covering every
      segment in between (never silently split or merged into a normal segment).
    - A crossing at a gate the course does not have is set aside in ``unknown_gates``.
    - A crossing that carries a lap number (from a file that numbers its laps) sets the lap of the
      segment starting there; otherwise laps count start/finish crossings.
    - A span longer than ``course.max_segment_s`` is flagged ``too_long``: it is a rider who left the
      course or a clock that jumped, not a segment, and its power is never resampled.
    """
    out = Assembly()
    n = course.size
    lap = 0
    prev: Crossing | None = None
    prev_i = -1
    for c in sorted(crossings):
        i = course.index(c.gate)
        if i is None:
            out.unknown_gates.append(c)
            continue
        if prev is not None and i == prev_i and c.time - prev.time < course.debounce_s:
            out.duplicates.append(c)
            continue
        if prev is not None:
            steps = (i - prev_i) % n or n
            first = prev_i + 1
            last = (prev_i + steps - 1) % n + 1
            flags = ("missed_gate",) if steps > 1 else ()
            if c.time - prev.time > course.max_segment_s:
                flags = (*flags, "too_long")
            out.spans.append(Span(lap, first, last, prev.time, c.time, prev.gate, c.gate, flags))
            # A start/finish passed without a crossing still ends the lap.
            lap += sum(1 for k in range(1, steps) if (prev_i + k) % n == 0)
        if c.lap is not None:
            lap = c.lap  # a file that numbers its laps (e.g. starts at lap 2) keeps its numbers
        elif i == 0:
            lap += 1
        prev, prev_i = c, i
    return out


def course_from_record(record: Mapping[str, Any]) -> Course:
    """The engine's course from a session record's course (gates in order, segment names): what a
    stored session was ridden on, for computing it again (the hub's course sessions, added files)."""
    course = record.get("course") or {}
    gates = tuple(str(g["id"] if isinstance(g, dict) else g) for g in course.get("gates") or ())
    names = tuple((s.get("name") if isinstance(s, dict) else s) for s in course.get("segments") or ())
    return Course(gates or ("SF",), names, float(course.get("debounce_s") or 5.0),
                  float(course.get("max_segment_s") or 3600.0))
