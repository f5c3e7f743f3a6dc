"""How a head unit's clock lies against the boxes': the offset (and drift) that best lays the
file's power over the samples the boxes heard live, else over the gate crossings.

The file records its meter's power each second on its own clock (usually GPS time); the boxes
heard the same meter for seconds a lap on theirs. Sliding the file over the live samples, the
offset where the two agree best (least mean squared difference of power) is the clock difference:
a climb's surge and a corner's lull line up at one place only. The search is coarse (0.5 s over
±``max_offset_s``) then fine (0.05 s around the best); the confidence is how much better the best
is than the best place at least 5 s away. With the live samples split in halves (a long session),
the two offsets give the drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

MIN_LIVE_S = 30.0  # seconds of pedalling heard live below which the power says nothing reliable
CONFIDENT = 1.5  # the best place must be this many times better than any place 5 s away
APART_S = 5.0
MAX_OFFSET_S = 900.0

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Alignment:
    """``file time + offset_s + drift_ppm * 1e-6 * (file time - t_ref) = box time``."""

    offset_s: float
    drift_ppm: float
    t_ref: float
    confidence: float  # best against the runner-up: 1.0 says nothing, CONFIDENT and above is sure
    method: str  # "power" (live samples), "crossings" (gates against the file's laps), "none"
    evidence_s: float  # seconds of live samples (or crossings) it rests on

    @property
    def sure(self) -> bool:
        return self.method != "none" and self.confidence >= CONFIDENT

    def to_box(self, t: Array) -> Array:
        return t + self.offset_s + self.drift_ppm * 1e-6 * (t - self.t_ref)


NONE = Alignment(0.0, 0.0, 0.0, 0.0, "none", 0.0)


def _scores(file_t: Array, file_p: Array, live_t: Array, live_p: Array, offsets: Array) -> Array:
    """Mean squared power difference of the live samples against the file moved by each offset
    (NaN where fewer than half the live samples fall inside the file)."""
    good = ~np.isnan(file_p)
    ft, fp = file_t[good], file_p[good]
    out = np.full(offsets.size, np.nan)
    for i, off in enumerate(offsets):
        at = live_t - off  # the live samples' times on the file's clock
        inside = (at >= ft[0]) & (at <= ft[-1])
        if inside.sum() * 2 < live_t.size:
            continue
        out[i] = float(np.mean((np.interp(at[inside], ft, fp) - live_p[inside]) ** 2))
    return out


def _best(file_t: Array, file_p: Array, live_t: Array, live_p: Array, max_offset_s: float,
          guess: float) -> tuple[float, float]:
    coarse = np.arange(guess - max_offset_s, guess + max_offset_s + 0.25, 0.5)
    scores = _scores(file_t, file_p, live_t, live_p, coarse)
    if np.isnan(scores).all():
        return guess, 0.0
    k = int(np.nanargmin(scores))
    fine = np.arange(coarse[k] - 0.6, coarse[k] + 0.6, 0.05)
    fine_scores = _scores(file_t, file_p, live_t, live_p, fine)
    best = float(fine[int(np.nanargmin(fine_scores))])
    away = np.abs(coarse - best) >= APART_S
    runner_up = float(np.nanmin(scores[away])) if np.any(away & ~np.isnan(scores)) else np.inf
    floor = float(np.nanmin(fine_scores))
    return best, (runner_up + 1.0) / (floor + 1.0)  # +1 W²: a perfect match is not infinitely sure


def by_power(file_t: Array, file_p: Array, live_t: Array, live_p: Array, *,
             max_offset_s: float = MAX_OFFSET_S, guess: float = 0.0) -> Alignment:
    """The file's clock against the boxes' from the power both recorded (``live_*``: what the boxes
    heard of this rider, box time)."""
    order = np.argsort(live_t)
    live_t, live_p = live_t[order], live_p[order]
    keep = ~np.isnan(live_p)
    live_t, live_p = live_t[keep], live_p[keep]
    # Seconds heard with the rider pedalling: a stretch of zeros (a stop, a descent) fits any file's
    # stretch of zeros and says nothing of whose file it is nor of its clock.
    heard_s = float(np.unique(np.floor(live_t[live_p > 0])).size)
    if heard_s < MIN_LIVE_S or file_t.size < 30:
        return Alignment(guess, 0.0, 0.0, 0.0, "none", heard_s)
    offset, confidence = _best(file_t, file_p, live_t, live_p, max_offset_s, guess)
    drift, t_ref = 0.0, float(np.mean(live_t)) - offset
    half = live_t.size // 2
    span = float(live_t[-1] - live_t[0])
    if span > 1200.0 and heard_s >= 2 * MIN_LIVE_S:
        # Each half on its own, close to the whole's offset: the two places give the drift.
        first, _ = _best(file_t, file_p, live_t[:half], live_p[:half], 3.0, offset)
        second, _ = _best(file_t, file_p, live_t[half:], live_p[half:], 3.0, offset)
        t1, t2 = float(np.mean(live_t[:half])) - offset, float(np.mean(live_t[half:])) - offset
        drift = (second - first) / (t2 - t1) * 1e6
        offset = (first + second) / 2 + drift * 1e-6 * (t_ref - (t1 + t2) / 2)
    return Alignment(offset, drift, t_ref, confidence, "power", heard_s)


def by_crossings(laps: Array, crossings: Array, *, max_offset_s: float = MAX_OFFSET_S) -> Alignment:
    """The file's clock from its lap marks (file time) against the rider's gate crossings (box
    time): the offset most lap marks agree on within a second. For files whose laps were marked at
    the start/finish gate (auto-lap by position, or a button at the line)."""
    if laps.size < 2 or crossings.size < 2:
        return NONE
    candidates = (crossings[:, None] - laps[None, :]).ravel()
    candidates = candidates[np.abs(candidates) <= max_offset_s]
    if candidates.size == 0:
        return NONE
    votes = np.array([np.sum(np.abs(candidates - c) <= 1.0) for c in candidates])
    best = float(np.median(candidates[np.abs(candidates - candidates[int(np.argmax(votes))]) <= 1.0]))
    agree = int(votes.max())
    others = votes[np.abs(candidates - best) > APART_S]
    runner_up = int(others.max()) if others.size else 0
    return Alignment(best, 0.0, float(np.mean(laps)), agree / max(runner_up, 1), "crossings", float(agree))
