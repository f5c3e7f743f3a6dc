"""Box clocks from shared broadcasts: one timeline for the boxes of a course session.

An ANT+ page is received by every box in range at the same moment (the radio's latency is the
same few milliseconds at each). So for a page two boxes both heard, the difference of their receive
times is the difference of their clocks at that moment, give or take each box's receive jitter.
Over a session the difference drifts (a Raspberry Pi's crystal is off by tens of ppm): each pair of
boxes that shares pages gets a line, offset + drift x time, fitted by least squares with the
outliers of a first fit set aside. Boxes that never hear the same meter are linked through a third
that hears both; each box is placed against the reference box along the path resting on the most
pages. The reference is a box with a synchronised clock, else the first by name of the largest
group of linked boxes: a rule that a late box does not change. A box that shares none keeps its own
clock (a group of boxes linked only among themselves: its first box's), and says so.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

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


def fit(ta: npt.ArrayLike, tb: npt.ArrayLike) -> Line | None:
    """The line of ``tb - ta`` against ``ta`` for pages heard by box a at ``ta`` and box b at ``tb``."""
    xa, xb = np.asarray(ta, dtype=np.float64), np.asarray(tb, dtype=np.float64)
    if xa.size < MIN_SHARED:
        return None
    line = _least_squares(xa, xb)
    residuals = np.abs(xb - xa - (line.offset_s + line.drift * (xa - line.t_ref)))
    spread = float(np.median(residuals)) * 1.4826
    if spread > 0:
        kept = residuals <= OUTLIER * spread
        if MIN_SHARED <= int(kept.sum()) < xa.size:
            line = _least_squares(xa[kept], xb[kept])
    return line


def _least_squares(ta: npt.NDArray[np.float64], tb: npt.NDArray[np.float64]) -> Line:
    n = int(ta.size)
    t_ref = float(ta.mean())
    xs = ta - t_ref
    ys = tb - ta
    mean_y = float(ys.mean())
    sxx = float(xs @ xs)
    # Pages all within a few seconds say nothing of the drift: an offset alone then.
    drift = float(xs @ (ys - mean_y)) / sxx if sxx > 60.0 ** 2 * n / 100 else 0.0
    offset = mean_y  # at t_ref, where the x's mean is 0
    rms = math.sqrt(float(np.mean((ys - offset - drift * xs) ** 2)))
    return Line(offset, drift, t_ref, n, rms)


Pairs = Mapping[tuple[str, str], tuple[npt.ArrayLike, npt.ArrayLike]]


def pairs_of(heard: Mapping[str, Mapping[str, float]]) -> dict[tuple[str, str], tuple[list[float], list[float]]]:
    """For each two boxes (in name order) the times at which each received the pages both heard,
    from ``heard``: for each page identity, the box times at which each box received it."""
    pairs: dict[tuple[str, str], tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for times in heard.values():
        if len(times) < 2:
            continue
        names = sorted(times)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                ta, tb = pairs[(a, b)]
                ta.append(times[a])
                tb.append(times[b])
    return dict(pairs)


def estimate(heard: Mapping[str, Mapping[str, float]], boxes: Iterable[str],
             synchronised: Mapping[str, bool] | None = None) -> dict[str, BoxClock]:
    """Each box's clock against the reference, from ``heard`` (see ``pairs_of``)."""
    return estimate_pairs(pairs_of(heard), boxes, synchronised)


def estimate_pairs(pairs: Pairs, boxes: Iterable[str], synchronised: Mapping[str, bool] | None = None
                   ) -> dict[str, BoxClock]:
    """Each box's clock against the reference, from the receive times of the pages each two boxes
    (``(a, b)``, a before b by name) both heard."""
    boxes = list(dict.fromkeys(boxes))
    lines: dict[tuple[str, str], Line] = {}
    for (a, b), (ta, tb) in pairs.items():
        line = fit(ta, tb)
        if line is not None:
            lines[(a, b)] = line
    if not boxes:
        return {}
    sync = synchronised or {}
    groups = _groups(boxes, lines)
    # The reference is chosen by rules that new pages do not change (a late box joining the course
    # must not move every result already written): the group with a synchronised clock, else the
    # one with the most boxes; in it, a synchronised box, else the first by name.
    main = min(groups, key=lambda g: (not any(sync.get(b) for b in g), -len(g), g[0]))
    out: dict[str, BoxClock] = {}
    for group in groups:
        reference = min(group, key=lambda b: (not sync.get(b), b))
        placed = _chain(reference, lines)
        if group is not main:  # placed within its group, but nothing links the group to the reference
            placed = {b: replace(c, linked=False) for b, c in placed.items()}
        out.update(placed)
    return out


def _groups(boxes: list[str], lines: Mapping[tuple[str, str], Line]) -> list[list[str]]:
    """The boxes linked by shared pages, group by group."""
    seen: set[str] = set()
    groups = []
    for box in sorted(boxes):
        if box in seen:
            continue
        group, todo = [], [box]
        seen.add(box)
        while todo:
            a = todo.pop()
            group.append(a)
            for x, y in lines:
                b = y if x == a else x if y == a else None
                if b is not None and b not in seen and b in boxes:
                    seen.add(b)
                    todo.append(b)
        groups.append(sorted(group))
    return groups


def _chain(reference: str, lines: dict[tuple[str, str], Line]) -> dict[str, BoxClock]:
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
