"""Box clocks from shared broadcasts: one timeline for the boxes of a course session.

An ANT+ page is received by every box in range at the same moment (the radio's latency is the
same few milliseconds at each). So for a page two boxes both heard, the difference of their receive
times is the difference of their clocks at that moment, give or take each box's receive jitter.
Over a session the difference drifts (a Raspberry Pi's crystal is off by tens of ppm): each pair of
boxes that shares pages gets a line, offset + drift x time, fitted by least squares with the
outliers of a first fit set aside. Boxes that never hear the same meter are linked through a third
that hears both; each box is placed against the reference box (the one with a synchronised clock
and the most shared pages) along the path resting on the most pages. A box that shares none keeps
its own clock, and says so.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MIN_SHARED = 3  # fewer pages than this in common: no line is drawn between two boxes
OUTLIER = 4.0  # residuals beyond this many median absolute deviations are set aside before the second fit


@dataclass(frozen=True)
class Line:
    """``other - this`` as ``offset_s + drift * (t - t_ref)`` for this box's time ``t``."""

    offset_s: float
    drift: float  # seconds per second (40 ppm: 4e-5)
    t_ref: float
    shared: int
    residual_s: float  # the fit's root mean square residual

    def at(self, t: float) -> float:
        return self.offset_s + self.drift * (t - self.t_ref)


@dataclass(frozen=True)
class BoxClock:
    """How to bring a box's times onto the reference box's timeline."""

    box: str
    offset_s: float  # the box's clock minus the reference's, at ``t_ref``
    drift_ppm: float
    t_ref: float
    shared: int  # pages the estimate rests on (the weakest link of its path)
    via: tuple[str, ...]  # the boxes it is linked through to the reference (empty: it is the reference)
    linked: bool  # False: no shared page links it to the reference; its own clock is used as it is

    def to_reference(self, t: float) -> float:
        """A time of this box's clock, on the reference's timeline (solving box = ref + offset +
        drift x (ref - t_ref) for ref)."""
        drift = self.drift_ppm * 1e-6
        return t - (self.offset_s + drift * (t - self.t_ref)) / (1 + drift)


def fit(pairs: list[tuple[float, float]]) -> Line | None:
    """The line of ``tb - ta`` against ``ta`` for pages heard by box a at ``ta`` and box b at ``tb``."""
    if len(pairs) < MIN_SHARED:
        return None
    line = _least_squares(pairs)
    residuals = [abs(tb - ta - line.at(ta)) for ta, tb in pairs]
    spread = sorted(residuals)[len(residuals) // 2] * 1.4826
    if spread > 0:
        kept = [p for p, r in zip(pairs, residuals, strict=True) if r <= OUTLIER * spread]
        if len(kept) >= MIN_SHARED and len(kept) < len(pairs):
            line = _least_squares(kept)
    return line


def _least_squares(pairs: list[tuple[float, float]]) -> Line:
    n = len(pairs)
    t_ref = sum(ta for ta, _ in pairs) / n
    xs = [ta - t_ref for ta, _ in pairs]
    ys = [tb - ta for ta, tb in pairs]
    mean_y = sum(ys) / n
    sxx = sum(x * x for x in xs)
    # Pages all within a few seconds say nothing of the drift: an offset alone then.
    drift = sum(x * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx if sxx > 60.0 ** 2 * n / 100 else 0.0
    offset = mean_y  # at t_ref, where the x's mean is 0
    rms = math.sqrt(sum((y - offset - drift * x) ** 2 for x, y in zip(xs, ys, strict=True)) / n)
    return Line(offset, drift, t_ref, n, rms)


def estimate(heard: Mapping[str, Mapping[str, float]], boxes: Iterable[str],
             synchronised: Mapping[str, bool] | None = None) -> dict[str, BoxClock]:
    """Each box's clock against the reference, from ``heard``: for each page identity, the box
    times at which each box received it. The reference: a box with a synchronised clock, then the
    one sharing the most pages, then the first of ``boxes``."""
    boxes = list(dict.fromkeys(boxes))
    pairs: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for times in heard.values():
        if len(times) < 2:
            continue
        names = sorted(times)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                pairs[(a, b)].append((times[a], times[b]))
    lines: dict[tuple[str, str], Line] = {}
    for (a, b), shared in pairs.items():
        line = fit(shared)
        if line is not None:
            lines[(a, b)] = line
    weight: dict[str, int] = defaultdict(int)
    for (a, b), line in lines.items():
        weight[a] += line.shared
        weight[b] += line.shared
    sync = synchronised or {}
    if not boxes:
        return {}
    reference = max(boxes, key=lambda b: (bool(sync.get(b)), weight[b], -boxes.index(b)))
    return _chain(reference, boxes, lines)


def _chain(reference: str, boxes: list[str], lines: dict[tuple[str, str], Line]) -> dict[str, BoxClock]:
    """Each box placed against ``reference`` along the path whose weakest link rests on the most
    pages (a widest-path search)."""
    out = {reference: BoxClock(reference, 0.0, 0.0, 0.0, 0, (), True)}
    best: dict[str, int] = {reference: 1 << 60}
    frontier = [reference]
    while frontier:
        a = max(frontier, key=lambda b: best[b])
        frontier.remove(a)
        here = out[a]
        for (x, y), line in lines.items():
            if a not in (x, y):
                continue
            b = y if a == x else x
            width = min(best[a], line.shared)
            if width <= best.get(b, 0):
                continue
            best[b] = width
            out[b] = _compose(here, line if a == x else _inverse(line), b, width)
            frontier.append(b)
    for box in boxes:
        if box not in out:
            out[box] = BoxClock(box, 0.0, 0.0, 0.0, 0, (), False)
    return out


def _inverse(line: Line) -> Line:
    """The same line seen from the other box: ``this - other`` against the other box's time."""
    return Line(-line.offset_s, -line.drift / (1 + line.drift), line.t_ref + line.offset_s, line.shared,
                line.residual_s)


def _compose(known: BoxClock, line: Line, box: str, shared: int) -> BoxClock:
    """``box`` = ``known``'s box + ``line``, against the reference: its drift compounds the two, and
    its offset is taken at the reference time where ``known``'s box reads the line's t_ref."""
    drift_known = known.drift_ppm * 1e-6
    t_ref = known.to_reference(line.t_ref)
    offset = known.offset_s + drift_known * (t_ref - known.t_ref) + line.offset_s
    drift = drift_known + line.drift + drift_known * line.drift
    via = () if known.shared == 0 else (*known.via, known.box)  # the reference rests on nothing
    return BoxClock(box, offset, drift * 1e6, t_ref, shared, via, True)
