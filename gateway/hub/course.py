"""One course session at the hub: the boxes along a course, each hearing riders for seconds a lap,
put together into one stream per rider, and the engine run on it.

- **Merge, exactly.** A power sample carries its radio identity (wire schema 4): the meter and the
  page's bytes, the same at every box in range. The pages of a meter from every box are one set
  (a page heard twice is one page), placed on one timeline (``hub.clocks``), and decoded again here
  in order, with the box's own decoder (``decode.ant_power``): the power of a page is the
  difference to the page before it, and the page before it may be one another box heard.
  Samples without an identity (files, synthetic loads) take no part: there is no rule here that
  guesses that two samples are one.
- **Crossings once.** A chip stamps each gate with its own clock; a crossing two receivers heard is
  one (transponder, gate, chip time). Crossings are placed on the timeline by their chip time plus
  the chip's offset (the median over its crossings of the placed receive time minus the chip
  time): segment times are the chip's own, exact whichever box heard each gate.
- **The engine** (``engine.segments.SegmentEngine``, the box's) computes each segment from the
  merged stream; its coverage is the share of the segment's seconds with power from any box. A page
  or crossing arriving late (a box delivering its spool after the session) recomputes the
  segments it falls in: what changed is returned as a correction, what no longer exists as a
  withdrawal.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field, replace

from gateway.decode.ant_power import AntPowerDecoder
from gateway.engine.course import Course, Crossing, Span, assemble
from gateway.engine.metrics import PREROLL_S
from gateway.engine.segments import RiderInfo, SegmentEngine
from gateway.errors import DecodeError
from gateway.hub.clocks import BoxClock, estimate
from gateway.model import SegmentResult

STALE_S = 30.0  # as the box's ANT+ source: a longer silence and the next page only sets the reference
CLOCK_SLACK_S = 10.0  # how far a page's place may move as the clocks are estimated again
DIRTY_S = 2.0  # the grain at which what a box delivers marks segments for computing again
MOVED_S = 0.05  # a segment whose ends moved more than this (a crossing heard late) is computed again
CLOCK_EVERY = 200  # new shared pages before the clocks are estimated again


@dataclass
class _Page:
    page: bytes
    heard: dict[str, float] = field(default_factory=dict)  # box -> its receive time


@dataclass
class _Meter:
    pages: dict[str, _Page] = field(default_factory=dict)  # by radio identity
    order: list[tuple[float, str]] = field(default_factory=list)  # (placed when first heard, identity), sorted


@dataclass
class _Rider:
    info: RiderInfo
    meters: dict[str, _Meter] = field(default_factory=lambda: defaultdict(_Meter))
    crossings: dict[tuple[str, int], tuple[str, float, float]] = field(default_factory=dict)
    # (gate, chip time in ms) -> (box, box time, chip time or NaN)
    results: dict[str, SegmentResult] = field(default_factory=dict)  # by segment number ("2.3")
    dirty: set[tuple[str, int]] = field(default_factory=set)  # (box, DIRTY_S bucket of its time) touched
    crossings_changed: bool = False


@dataclass(frozen=True)
class Change:
    """A course result that is new or corrected (``result``), or withdrawn (``result.flags`` says
    so), with the boxes whose pages or crossings it rests on."""

    result: SegmentResult
    boxes: tuple[str, ...]


class CourseSession:
    def __init__(self, session_id: str, course: Course, riders: dict[str, RiderInfo], *,
                 np_window: str = "segment", synchronised: dict[str, bool] | None = None,
                 receiver_latency_s: float = 0.0) -> None:
        self.session_id = session_id
        # From a chip's pass to the box stamping the receiver's line: a crossing's place on the
        # timeline is its receive time less this (the power's radio latency is a few milliseconds).
        self.receiver_latency_s = receiver_latency_s
        self.course = course
        self.np_window = np_window
        self.riders = {rid: _Rider(info) for rid, info in riders.items()}
        self.synchronised = dict(synchronised or {})
        self.boxes: list[str] = []
        self.clocks: dict[str, BoxClock] = {}
        self._shared_since_estimate = 0
        self.unknown: dict[str, int] = defaultdict(int)

    # -- what the boxes send ---------------------------------------------------------------------

    def _rider(self, rider_id: str | None) -> _Rider | None:
        rider = self.riders.get(rider_id or "")
        if rider is None:
            self.unknown[rider_id or "(none)"] += 1
        return rider

    def _box(self, box: str) -> None:
        if box not in self.boxes:
            self.boxes.append(box)
            self._shared_since_estimate = CLOCK_EVERY  # a new box: its clock is estimated at the next settle

    @staticmethod
    def _touch(rider: _Rider, box: str, box_t: float) -> None:
        rider.dirty.add((box, int(box_t // DIRTY_S)))

    def add_page(self, box: str, rider_id: str | None, box_t: float, raw: str) -> None:
        """A power sample a box heard: its radio identity ``raw`` (``kind:device:hex``) and receive time."""
        rider = self._rider(rider_id)
        kind, _, rest = raw.partition(":")
        device, _, payload = rest.rpartition(":")
        if rider is None or kind != "ant" or not device:
            return
        self._box(box)
        meter = rider.meters[device]
        page = meter.pages.get(raw)
        placed = self.placed(box, box_t)
        if page is None:
            try:
                page = meter.pages[raw] = _Page(bytes.fromhex(payload))
            except ValueError:
                return
            bisect.insort(meter.order, (placed, raw))
        elif box not in page.heard:
            self._shared_since_estimate += 1
        page.heard[box] = box_t
        self._touch(rider, box, box_t)

    def add_crossing(self, box: str, rider_id: str | None, gate: str, box_t: float, chip_t: float | None) -> None:
        """A crossing a box's receiver gave: the chip's own time when the timing system has one."""
        rider = self._rider(rider_id)
        if rider is None:
            return
        self._box(box)
        stamp = chip_t if chip_t is not None else box_t
        key = (gate, round(stamp * 1000))
        if key not in rider.crossings:
            rider.crossings[key] = (box, box_t, stamp if chip_t is not None else math.nan)
            rider.crossings_changed = True

    # -- one timeline ---------------------------------------------------------------------------

    def estimate_clocks(self) -> None:
        heard: dict[str, dict[str, float]] = {}
        for rider in self.riders.values():
            for meter in rider.meters.values():
                for raw, page in meter.pages.items():
                    if len(page.heard) > 1:
                        heard[raw] = page.heard
        self.clocks = estimate(heard, self.boxes, self.synchronised)
        self._shared_since_estimate = 0

    def placed(self, box: str, box_t: float) -> float:
        clock = self.clocks.get(box)
        return box_t if clock is None else clock.to_reference(box_t)

    def _samples(self, rider: _Rider, lo: float, hi: float) -> list[tuple[float, float, float, tuple[str, ...]]]:
        """The rider's merged power stream in [lo, hi) on the reference timeline: each page once,
        decoded in order from the page before ``lo`` (t, power, cadence, the boxes that heard it)."""
        out = []
        for meter in rider.meters.values():
            first = bisect.bisect_left(meter.order, (lo - STALE_S - CLOCK_SLACK_S,))
            last = bisect.bisect_right(meter.order, (hi + CLOCK_SLACK_S,))
            pages = [meter.pages[raw] for _, raw in meter.order[first:last]]
            placed = sorted((statistics.fmean(self.placed(b, t) for b, t in p.heard.items()), p.page,
                             tuple(sorted(p.heard))) for p in pages)
            decoder, previous = AntPowerDecoder(), -math.inf
            for t, page, boxes in placed:
                if t - previous > STALE_S:
                    decoder = AntPowerDecoder()
                previous = t
                try:
                    fields = decoder.feed(page)
                except DecodeError:
                    continue
                if "power_w" in fields and lo <= t < hi:
                    cadence = fields.get("cadence_rpm")
                    out.append((t, float(fields["power_w"]), math.nan if cadence is None else float(cadence), boxes))
        out.sort(key=lambda s: s[0])
        return out

    def _placed_crossings(self, rider: _Rider) -> list[tuple[Crossing, str]]:
        items = list(rider.crossings.values())
        offsets = [self.placed(box, box_t) - self.receiver_latency_s - chip for box, box_t, chip in items
                   if not math.isnan(chip)]
        chip_offset = statistics.median(offsets) if offsets else 0.0
        out = [(Crossing(self.placed(box, box_t) - self.receiver_latency_s if math.isnan(chip) else chip + chip_offset,
                         gate), box)
               for (gate, _), (box, box_t, chip) in rider.crossings.items()]
        return sorted(out, key=lambda c: c[0])

    # -- results --------------------------------------------------------------------------------

    def settle(self, *, all_riders: bool = False) -> list[Change]:
        """Compute what changed since the last settle: new segments, segments whose pages or
        crossings changed (corrections), segments that no longer exist (withdrawals)."""
        if self._shared_since_estimate >= CLOCK_EVERY:
            self.estimate_clocks()
        changes: list[Change] = []
        for rid, rider in self.riders.items():
            if all_riders or rider.dirty or rider.crossings_changed:
                # Where the new pages fall, on the timeline as the clocks now place them.
                touched = {int(self.placed(box, b * DIRTY_S) // DIRTY_S) for box, b in rider.dirty}
                changes += self._recompute(rid, rider, touched, everything=all_riders)
                rider.dirty, rider.crossings_changed = set(), False
        return changes

    @staticmethod
    def _stale(rider: _Rider, span: Span, touched: set[int]) -> bool:
        """Whether ``span``'s result must be computed (again): new, moved, or pages delivered in it."""
        old = rider.results.get(span.number)
        if old is None or abs(old.start - span.start) > MOVED_S or abs(old.end - span.end) > MOVED_S:
            return True
        first, last = int(span.start // DIRTY_S) - 1, int(span.end // DIRTY_S) + 1
        return any(b in touched for b in range(first, last + 1))

    def _recompute(self, rid: str, rider: _Rider, touched: set[int], *, everything: bool) -> list[Change]:
        crossings = self._placed_crossings(rider)
        spans = {s.number: s for s in assemble([c for c, _ in crossings], self.course).spans}
        affected = [s for s in spans.values() if everything or self._stale(rider, s, touched)]
        changes = [Change(replace(old, flags=(*old.flags, "withdrawn")), ())
                   for k, old in list(rider.results.items()) if k not in spans]
        for k in [k for k in rider.results if k not in spans]:
            del rider.results[k]
        if not affected:
            return changes
        start = min(s.start for s in affected) - (PREROLL_S if self.np_window == "ride" else 0.0)
        samples = self._samples(rider, start, max(s.end for s in affected))
        engine = SegmentEngine(self.course, {rid: rider.info}, self.session_id, np_window=self.np_window)
        computed: list[SegmentResult] = []
        for c, _ in crossings:
            computed += engine.add_crossing(rid, c.gate, c.time)
        if samples:
            computed += engine.add_power_run(rid, [s[0] for s in samples], [s[1] for s in samples],
                                             [s[2] for s in samples])
        computed += engine.flush()
        wanted = {s.number for s in affected}
        by_box = {c.time: box for c, box in crossings}
        for result in computed:
            if result.number not in wanted or rider.results.get(result.number) == result:
                continue
            rider.results[result.number] = result
            heard = {b for t, _, _, boxes in samples if result.start <= t < result.end for b in boxes}
            heard |= {by_box[t] for t in (result.start, result.end) if t in by_box}
            changes.append(Change(result, tuple(sorted(heard))))
        return changes
