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
from array import array
from collections import defaultdict
from dataclasses import dataclass, field, replace

from gateway.decode.ant_power import AntPowerDecoder
from gateway.engine.course import Course, Crossing, Span, assemble
from gateway.engine.metrics import PREROLL_S
from gateway.engine.segments import RiderInfo, SegmentEngine, same
from gateway.errors import DecodeError
from gateway.hub.clocks import MIN_SHARED, BoxClock, estimate_pairs
from gateway.model import SegmentResult

STALE_S = 30.0  # as the box's ANT+ source: a longer silence and the next page only sets the reference
CLOCK_SLACK_S = 10.0  # how far a page's place may move as the clocks are estimated again
DIRTY_S = 2.0  # the grain at which what a box delivers marks segments for computing again
MOVED_S = 0.05  # a segment whose ends moved more than this (a crossing heard late) is computed again
CLOCK_EVERY = 50  # new pages two boxes share before their clocks are estimated again (at least; see CLOCK_GROWTH)
CLOCK_GROWTH = 0.25  # and at least this share of what they shared so far: estimates grow rarer as they settle
CLOCK_MOVED_S = 0.02  # clocks estimated again that move a box's times more than this: compute everything again


@dataclass
class _Page:
    page: bytes
    heard: dict[str, float] = field(default_factory=dict)  # box -> its receive time
    implausible: bool = False  # a box flagged what it decoded: fed to the decoder, never averaged


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
    # A BLE meter's samples (one box holds its connection: nothing to merge), per box by box time:
    # (box time, power, cadence), as the box decoded them.
    direct: dict[str, list[tuple[float, float, float]]] = field(default_factory=lambda: defaultdict(list))
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
        self._latest: dict[str, float] = {}  # box -> the latest time it sent
        # For each two boxes (by name), the receive times of the pages both heard: the clocks' data.
        self._pairs: dict[tuple[str, str], tuple[array[float], array[float]]] = {}
        self._shared = 0  # pages heard by more than one box, in all
        self._shared_at_settle = 0
        self._estimated: dict[tuple[str, str], int] = {}  # each pair's shared pages at the last estimate
        self._estimate_due = False
        self._everything = False
        self.unknown: dict[str, int] = defaultdict(int)

    def add_riders(self, riders: dict[str, RiderInfo]) -> None:
        """Riders of a box that joined the course session (those already known stay as they are)."""
        for rid, info in riders.items():
            self.riders.setdefault(rid, _Rider(info))

    # -- what the boxes send ---------------------------------------------------------------------

    def _rider(self, rider_id: str | None) -> _Rider | None:
        rider = self.riders.get(rider_id or "")
        if rider is None:
            self.unknown[rider_id or "(none)"] += 1
        return rider

    def _box(self, box: str) -> None:
        if box not in self.boxes:
            self.boxes.append(box)
            self._estimate_due = True  # a new box: its clock is estimated at the next settle

    @staticmethod
    def _touch(rider: _Rider, box: str, box_t: float) -> None:
        rider.dirty.add((box, int(box_t // DIRTY_S)))

    def add_page(self, box: str, rider_id: str | None, box_t: float, raw: str,
                 decoded: tuple[float | None, float | None] = (None, None), *, implausible: bool = False) -> None:
        """A power sample a box heard: its radio identity ``raw`` (``kind:device:hex``), receive time,
        and the power and cadence the box decoded (used for BLE, whose notification one box holds);
        ``implausible``: the box flagged it (kept, never averaged, as on the box)."""
        rider = self._rider(rider_id)
        kind, _, rest = raw.partition(":")
        device, _, payload = rest.rpartition(":")
        if rider is None or not device:
            return
        if kind in ("ble", "file"):  # one box's (a BLE connection, a file added to its session)
            if not implausible:
                self._add_direct(rider, box, box_t, decoded)
            return
        if kind != "ant":
            return
        self._box(box)
        meter = rider.meters[device]
        page = meter.pages.get(raw)
        if page is None:
            try:
                page = meter.pages[raw] = _Page(bytes.fromhex(payload))
            except ValueError:
                return
            bisect.insort(meter.order, (self.placed(box, box_t), raw))
        elif box in page.heard:
            return  # delivered again (a hub taking over a rider reads what it had): nothing new
        else:
            for other, other_t in page.heard.items():
                first, second = sorted((box, other))
                times = self._pairs.setdefault((first, second), (array("d"), array("d")))
                times[0].append(box_t if first == box else other_t)
                times[1].append(other_t if first == box else box_t)
            self._shared += 1
        page.heard[box] = box_t
        page.implausible |= implausible
        self._latest[box] = max(box_t, self._latest.get(box, box_t))
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

    def _add_direct(self, rider: _Rider, box: str, box_t: float, decoded: tuple[float | None, float | None]) -> None:
        power, cadence = decoded
        if power is None:
            return
        self._box(box)
        samples = rider.direct[box]
        at = bisect.bisect_left(samples, (box_t,))
        if at < len(samples) and samples[at][0] == box_t:
            return  # delivered again
        samples.insert(at, (box_t, power, math.nan if cadence is None else cadence))
        self._touch(rider, box, box_t)

    # -- one timeline ---------------------------------------------------------------------------

    def estimate_clocks(self) -> None:
        before = {box: self.placed(box, t) for box, t in self._latest.items()}
        self.clocks = estimate_pairs(self._pairs, self.boxes, self.synchronised)
        self._estimated = {pair: len(times[0]) for pair, times in self._pairs.items()}
        self._estimate_due = False
        if any(abs(self.placed(box, self._latest[box]) - t) > CLOCK_MOVED_S for box, t in before.items()):
            # Pages move on the timeline: their order is drawn again and every segment computed again
            # (what comes out the same, within the clocks' accuracy, is not written again).
            self._everything = True
            for rider in self.riders.values():
                for meter in rider.meters.values():
                    meter.order = sorted((self._place(meter.pages[raw]), raw) for _, raw in meter.order)

    def placed(self, box: str, box_t: float) -> float:
        clock = self.clocks.get(box)
        return box_t if clock is None else clock.to_reference(box_t)

    def _place(self, page: _Page) -> float:
        """A page on the timeline: the mean of where each box that heard it places it."""
        return sum(self.placed(b, t) for b, t in page.heard.items()) / len(page.heard)

    def _samples(self, rider: _Rider, lo: float, hi: float) -> list[tuple[float, float, float, tuple[str, ...]]]:
        """The rider's merged power stream in [lo, hi) on the reference timeline: each page once,
        decoded in order from the page before ``lo`` (t, power, cadence, the boxes that heard it)."""
        out = []
        for meter in rider.meters.values():
            first = bisect.bisect_left(meter.order, (lo - STALE_S - CLOCK_SLACK_S,))
            last = bisect.bisect_right(meter.order, (hi + CLOCK_SLACK_S,))
            pages = [meter.pages[raw] for _, raw in meter.order[first:last]]
            placed = sorted((self._place(p), p.page, tuple(sorted(p.heard)), p.implausible) for p in pages)
            decoder, previous = AntPowerDecoder(), -math.inf
            for t, page, boxes, implausible in placed:
                if t - previous > STALE_S:
                    decoder = AntPowerDecoder()
                previous = t
                try:
                    fields = decoder.feed(page)
                except DecodeError:
                    continue
                if "power_w" in fields and lo <= t < hi and not implausible:
                    cadence = fields.get("cadence_rpm")
                    out.append((t, float(fields["power_w"]), math.nan if cadence is None else float(cadence), boxes))
        for box, samples in rider.direct.items():
            shift = self.placed(box, lo) - lo  # the box's times, a second either side
            first = bisect.bisect_left(samples, (lo - shift - 1.0,))
            last = bisect.bisect_right(samples, (hi - shift + 1.0,))
            out += [(t, p, c, (box,)) for t, p, c in ((self.placed(box, bt), p, c) for bt, p, c in samples[first:last])
                    if lo <= t < hi]
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
        if self._estimate_wanted():
            self.estimate_clocks()
        self._shared_at_settle = self._shared
        all_riders, self._everything = all_riders or self._everything, False
        changes: list[Change] = []
        for rid, rider in self.riders.items():
            if all_riders or rider.dirty or rider.crossings_changed:
                # Where the new pages fall, on the timeline as the clocks now place them.
                touched = {int(self.placed(box, b * DIRTY_S) // DIRTY_S) for box, b in rider.dirty}
                changes += self._recompute(rid, rider, touched, everything=all_riders)
                rider.dirty, rider.crossings_changed = set(), False
        return changes

    def _estimate_wanted(self) -> bool:
        """Whether the clocks are estimated again at this settle: a new box; two boxes that now share
        enough pages to be linked; a pair's pages grown by a quarter; or shared pages the last
        estimate did not see and none arriving since the last settle (a box's spool delivered in
        batches: its clock ends on all its pages, not on what the first batch held)."""
        if self._estimate_due:
            return True
        quiet = self._shared == self._shared_at_settle
        for pair, times in self._pairs.items():
            now, before = len(times[0]), self._estimated.get(pair, 0)
            if now > before and (quiet or before < MIN_SHARED <= now
                                 or now - before >= max(CLOCK_EVERY, CLOCK_GROWTH * before)):
                return True
        return False

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
            old = rider.results.get(result.number)
            if result.number not in wanted or (old is not None and same(old, result)):
                continue
            if old is not None and old.start != result.start:  # results are kept by (number, start)
                changes.append(Change(replace(old, flags=(*old.flags, "withdrawn")), ()))
            rider.results[result.number] = result
            heard = {b for t, _, _, boxes in samples if result.start <= t < result.end for b in boxes}
            heard |= {by_box[t] for t in (result.start, result.end) if t in by_box}
            changes.append(Change(result, tuple(sorted(heard))))
        return changes

