"""Typed events shared by every layer: what sources produce and the engine consumes."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class PowerSample(NamedTuple):
    """One power reading from a meter, as the source saw it (no rider yet: ingest maps that).

    ``wall_time`` is unix seconds from the box's or the file's clock. A named tuple rather than a
    frozen dataclass like the other events: there are hundreds of thousands of these in a replay,
    and a frozen dataclass costs twice as much to build (immutable all the same).
    """

    source: str
    sensor: str
    wall_time: float
    power: float
    cadence: float | None = None
    torque: float | None = None
    # What makes this the same sample at another box (``radio_identity``): every box in range of an
    # ANT+ meter receives the same page. None for samples from files and synthetic ones.
    raw: str | None = None


@dataclass(frozen=True, slots=True)
class GateCrossing:
    """A transponder passing a timing gate.

    ``wall_time`` is on the box's timeline; ``receiver_time`` is the time as the timing system
    stamped it (the chip's own clock for Freelap), None for files. ``lap`` is
    set by files that number their laps (None: the engine counts start/finish crossings).
    """

    source: str
    transponder: str
    gate: str
    wall_time: float
    receiver_time: float | None = None
    lap: int | None = None  # from a file that numbers its laps: the lap of the segment starting here


@dataclass(frozen=True)
class SessionRecord:
    """What a consumer needs to read a session's other events without the box's YAML: sent when the
    session starts and whenever it changes (the sessions topic is compacted: the latest wins)."""

    session_id: str
    kind: str  # "live" or "replay"
    name: str
    started: float
    ended: float | None
    course: Mapping[str, Any]  # id, name, gates, segments (names, terrains)
    riders: tuple[Mapping[str, Any], ...]  # as used: id, name, squad, weight_kg, ftp_w
    files: tuple[str, ...] = ()  # a replay's files (names only)
    tags: Mapping[str, str] = field(default_factory=dict)
    notes: str = ""
    # What else the coach recorded: "pairings" (sensor -> rider, from when), "result_notes".
    extra: Mapping[str, Any] = field(default_factory=dict)


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

    @property
    def key(self) -> tuple[str, str, str, float]:
        """What a correction shares with the result it replaces (a withdrawn result and its
        re-emission have the same): session, rider, number and start."""
        return (self.session_id, self.rider_id, self.number, self.start)


DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_day(text: object) -> dt.date:
    """A day as the box writes it, YYYY-MM-DD and nothing else (``2026-2-1`` and ``2026-12- 1``, which
    strptime takes, were then compared as text); ValueError saying why."""
    if not isinstance(text, str) or not DAY.match(text):
        raise ValueError(f"{str(text)[:40]!r} is not a date written YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a day of the calendar") from None


def radio_identity(kind: str, device: str, payload: bytes) -> str:
    """A received message's identity, the same at every box that heard it: the radio, the device
    (ANT+ device number, BLE address) and the payload's bytes, which carry the meter's event count
    and accumulated values (an ANT+ page repeats its bytes only when every counter has rolled over
    together)."""
    return f"{kind}:{device}:{payload.hex()}"


def current_results(results: Iterable[SegmentResult]) -> list[SegmentResult]:
    """Results in the order produced, with every withdrawn one taken out (a correction re-emits it
    with the flag ``withdrawn``, then the corrected results follow)."""
    out: dict[tuple[str, str, str, float], SegmentResult] = {}
    for result in results:
        if "withdrawn" in result.flags:
            out.pop(result.key, None)
        else:
            out[result.key] = result
    return list(out.values())
