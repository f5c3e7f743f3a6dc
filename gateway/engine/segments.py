"""The live segment engine: power samples and gate crossings in, segment results out.

Per rider it keeps the crossings (sorted) and a window of power samples. A span closed by a
crossing becomes a result once the rider's power stream has passed the span's end (so late
samples still count) or, failing that, ``grace_s`` after it on the caller's clock (``tick``).
Crossings that arrive out of order are put in their place and the rider's spans re-derived; a
result already emitted that the late crossing proves wrong is withdrawn (re-emitted with the flag
``withdrawn``) and the corrected spans follow.
"""

from __future__ import annotations

import bisect
import math
from array import array
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.counts import bump
from gateway.engine.course import Course, Crossing, Span, assemble
from gateway.engine.metrics import DEFAULT_MAX_GAP_S, PREROLL_S, Floats, PowerMetrics, Stretch, floats, power_metrics
from gateway.model import SegmentResult


@dataclass(frozen=True)
class RiderInfo:
    rider_id: str
    name: str
    ftp_w: float | None = None
    weight_kg: float | None = None
    squad: str | None = None


@dataclass
class _Rider:
    info: RiderInfo
    crossings: list[Crossing] = field(default_factory=list)
    # Compact float arrays (8 bytes a value, not a 32-byte Python float): 100 riders at 4 Hz.
    t: array[float] = field(default_factory=lambda: array("d"))
    p: array[float] = field(default_factory=lambda: array("d"))
    c: array[float] = field(default_factory=lambda: array("d"))
    latest_sample: float = -math.inf
    stream_end: float = math.inf  # a recording's last sample: no sample will pass a span ending later
    pending: dict[tuple[float, float, str], Span] = field(default_factory=dict)
    emitted: dict[tuple[float, float, str], SegmentResult | None] = field(default_factory=dict)
    duplicates: int = 0


class SegmentEngine:
    """Assembles segments and computes their results for one session."""

    def __init__(self, course: Course, riders: dict[str, RiderInfo], session_id: str, *,
                 max_gap_s: float = DEFAULT_MAX_GAP_S, grace_s: float = 3.0, keep_s: float = PREROLL_S,
                 np_window: str = "segment") -> None:
        self.course = course
        self.session_id = session_id
        self.np_window = np_window
        self.max_gap_s = max_gap_s
        self.grace_s = grace_s
        self.keep_s = keep_s
        self._riders = {rid: _Rider(info) for rid, info in riders.items()}
        # Counted by name for the status page, the newest gateway.counts.KEPT of each.
        self.unknown_transponders: dict[str, int] = {}
        self.unknown_gates: dict[str, int] = {}
        self.unknown_riders: dict[str, int] = {}

    def set_riders(self, riders: dict[str, RiderInfo]) -> None:
        """New names, FTP and weight (results from now on use them) and riders added meanwhile."""
        for rid, info in riders.items():
            if rid in self._riders:
                self._riders[rid].info = info
            else:
                self._riders[rid] = _Rider(info)

    @property
    def duplicates(self) -> int:
        return sum(r.duplicates for r in self._riders.values())

    def stats(self) -> dict[str, Any]:
        return {
            "riders_seen": sum(1 for r in self._riders.values() if r.crossings or r.t),
            "duplicates": self.duplicates,
            "unknown_transponders": dict(self.unknown_transponders),
            "unknown_gates": dict(self.unknown_gates),
            "unknown_riders": dict(self.unknown_riders),
            "pending": sum(len(r.pending) for r in self._riders.values()),
            "results": sum(len(r.emitted) for r in self._riders.values()),
        }

    def _rider(self, rider_id: str, count: int = 1) -> _Rider | None:
        rider = self._riders.get(rider_id)
        if rider is None:
            bump(self.unknown_riders, rider_id, count)
        return rider

    def add_power(self, rider_id: str, t: float, power: float, cadence: float | None = None) -> list[SegmentResult]:
        rider = self._rider(rider_id)
        if rider is None:
            return []
        if rider.t and t < rider.t[-1]:
            i = bisect.bisect_right(rider.t, t)
            rider.t.insert(i, t)
            rider.p.insert(i, power)
            rider.c.insert(i, math.nan if cadence is None else cadence)
        else:
            rider.t.append(t)
            rider.p.append(power)
            rider.c.append(math.nan if cadence is None else cadence)
        if t > rider.latest_sample:
            rider.latest_sample = t
        if rider.pending:
            return self._passed(rider)
        return []

    def add_power_run(self, rider_id: str, t: Floats, power: Floats, cadence: Floats) -> list[SegmentResult]:
        """Samples of one rider in time order (``cadence`` NaN where there is none): what as many
        ``add_power`` calls would do, the arrays extended at once."""
        columns = [floats(values) for values in (t, power, cadence)]
        times = columns[0]
        rider = self._rider(rider_id, len(times))
        if rider is None or not times:
            return []
        if rider.t and times[0] < rider.t[-1]:
            out: list[SegmentResult] = []
            for sample in zip(*columns, strict=True):
                out += self.add_power(rider_id, *sample)
            return out
        for kept, values in zip((rider.t, rider.p, rider.c), columns, strict=True):
            kept.fromlist(values)
        last = rider.t[-1]
        if last > rider.latest_sample:
            rider.latest_sample = last
        return self._passed(rider) if rider.pending else []

    def add_unknown_crossing(self, transponder: str, gate: str, t: float) -> None:
        """A transponder the roster does not know: counted for the status page, not assembled."""
        bump(self.unknown_transponders, transponder)

    def add_crossing(self, rider_id: str, gate: str, t: float, lap: int | None = None) -> list[SegmentResult]:
        rider = self._rider(rider_id)
        if rider is None:
            return []
        if self.course.index(gate) is None:
            bump(self.unknown_gates, gate)
            return []
        bisect.insort(rider.crossings, Crossing(t, gate, lap))
        assembly = assemble(rider.crossings, self.course)
        rider.duplicates = len(assembly.duplicates)
        spans = {span.key: span for span in assembly.spans}
        out = []
        for key in [k for k in rider.emitted if k not in spans]:
            withdrawn = rider.emitted.pop(key)
            if withdrawn is not None:  # None: restored from the spool, its row says the rest
                out.append(replace(withdrawn, flags=(*withdrawn.flags, "withdrawn")))
        rider.pending = {k: s for k, s in spans.items() if k not in rider.emitted}
        return out + self._passed(rider)

    def _passed(self, rider: _Rider) -> list[SegmentResult]:
        """Results of the spans the rider's power stream has passed the end of (all of them once a
        recording's stream is over: what ``tick`` would close ``grace_s`` later, no sooner)."""
        passed = math.inf if rider.latest_sample >= rider.stream_end else rider.latest_sample
        if any(span.end <= passed for span in rider.pending.values()):
            return self._finalize(rider, lambda span: span.end <= passed)
        return []

    def mark_emitted(self, rider_id: str, start: float, end: float, number: str) -> None:
        """Record a result already stored (after a restart), so it is not computed twice."""
        rider = self._riders.get(rider_id)
        if rider is not None:
            rider.emitted[(start, end, number)] = None
            rider.pending.pop((start, end, number), None)

    def forget_emitted(self, rider_id: str, start: float, end: float, number: str) -> None:
        rider = self._riders.get(rider_id)
        if rider is not None:
            rider.emitted.pop((start, end, number), None)

    def open_since(self) -> float | None:
        """The earliest time whose power samples an open or pending segment still needs."""
        starts = [s.start for r in self._riders.values() for s in r.pending.values()]
        starts += [r.crossings[-1].time for r in self._riders.values() if r.crossings]
        return min(starts, default=None)

    def set_stream_ends(self, ends: dict[str, float]) -> None:
        """A replay's riders' last power samples: a segment ending after its rider's is closed as
        soon as that sample is in, not ``grace_s`` later on the recording's clock."""
        for rid, end in ends.items():
            if rid in self._riders:
                self._riders[rid].stream_end = end

    def awaiting_power(self) -> frozenset[str]:
        """Riders with a power stream whose closed segment waits for it to pass the segment's end."""
        return frozenset(rid for rid, r in self._riders.items() if r.pending and r.t)

    def tick(self, now: float) -> list[SegmentResult]:
        """Emit spans whose power stream went quiet: ``grace_s`` past their end on the caller's clock."""
        out: list[SegmentResult] = []
        for rider in self._riders.values():
            if rider.pending:
                out += self._finalize(rider, lambda span: span.end + self.grace_s <= now)
        return out

    def flush(self) -> list[SegmentResult]:
        """Emit every pending span now (end of a replay or of the session)."""
        out: list[SegmentResult] = []
        for rider in self._riders.values():
            out += self._finalize(rider, lambda span: True)
        return out

    def _finalize(self, rider: _Rider, ready: Any) -> list[SegmentResult]:
        done = sorted((s for s in rider.pending.values() if ready(s)), key=lambda s: s.start)
        out = []
        for span in done:
            del rider.pending[span.key]
            result = self._result(rider, span)
            rider.emitted[span.key] = result
            out.append(result)
        if done:
            self._prune(rider)
        return out

    def _result(self, rider: _Rider, span: Span) -> SegmentResult:
        info = rider.info
        if "too_long" in span.flags:
            m = PowerMetrics(span.end - span.start, 0, 0.0, None, None, None, None, None, None,
                             np_window=self.np_window)
        else:
            # The ride window's first rolling values reach back before the start gate.
            lo = bisect.bisect_left(rider.t, span.start - (PREROLL_S if self.np_window == "ride" else 0.0))
            hi = bisect.bisect_left(rider.t, span.end)
            m = power_metrics(Stretch(rider.t[lo:hi], rider.p[lo:hi], rider.c[lo:hi], span.start, span.end),
                              ftp_w=info.ftp_w, weight_kg=info.weight_kg, max_gap_s=self.max_gap_s,
                              np_window=self.np_window)
        return SegmentResult(
            session_id=self.session_id, rider_id=info.rider_id, name=info.name, number=span.number,
            lap=span.lap, segment=span.segment, start=span.start, end=span.end,
            duration=round(span.end - span.start, 3),
            start_gate=span.start_gate, end_gate=span.end_gate, power_avg=m.power_avg,
            cadence_avg=m.cadence_avg, normalized_power=m.normalized_power,
            intensity_factor=m.intensity_factor, tss=m.tss, watts_per_kg=m.watts_per_kg,
            samples=m.samples, coverage=m.coverage, flags=(*span.flags, *m.flags), np_window=m.np_window,
        )

    def _prune(self, rider: _Rider) -> None:
        # Keep what open spans need, plus a margin for a late crossing that re-derives recent spans.
        horizon = min([s.start for s in rider.pending.values()] + [rider.crossings[-1].time]) - self.keep_s
        cut = bisect.bisect_left(rider.t, horizon)
        if cut:
            del rider.t[:cut], rider.p[:cut], rider.c[:cut]


SAME_W = 0.25  # a result computed again within this (and the same samples) is the one written
SAME_S = 0.05

def same(old: SegmentResult, new: SegmentResult) -> bool:
    """Whether a result computed again says what the one written says, within what a clock estimate
    can tell (a few milliseconds of placement) or a float summed in another order: then the written
    one stands and nothing is sent (the hub's course results; a session completed by files)."""
    def close(a: float | None, b: float | None, tol: float) -> bool:
        return (a is None) == (b is None) and (a is None or b is None or abs(a - b) <= tol)

    return (old.number == new.number and old.flags == new.flags and old.samples == new.samples
            and old.start_gate == new.start_gate and old.end_gate == new.end_gate
            and abs(old.start - new.start) <= SAME_S and abs(old.end - new.end) <= SAME_S
            and close(old.duration, new.duration, 1e-6) and close(old.coverage, new.coverage, 0.005)
            and all(close(getattr(old, f), getattr(new, f), SAME_W)
                    for f in ("power_avg", "normalized_power", "cadence_avg")))
