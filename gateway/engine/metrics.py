"""Pure power metrics: 1 Hz resampling, Normalized Power, IF, TSS, W/kg, coverage.

Definitions (DESIGN.md, "Metrics"), the ones coaches check against their head units and
GoldenCheetah / TrainingPeaks:

- power is resampled to 1 Hz on the segment's own time grid (one bin per second from the start
  gate); empty seconds inside a silence of at most ``max_gap_s`` hold the previous reading (a
  meter that skips a message is still being ridden), a longer silence is *excluded*, never
  zero-filled, and lowers ``coverage``;
- NP: 30-sample rolling mean ('valid' window) over the covered seconds, 4th power, mean, 4th root;
  a segment with fewer than 30 covered seconds gets the mean power and the flag ``short_segment``;
  that is the ``segment`` window (the seed system's: the rolling mean starts again at each start
  gate). The ``ride`` window is the head units' lap NP (Garmin, Wahoo): the ride-long rolling mean,
  whose values ending inside the stretch are averaged, so its first 29 s reach back before the gate;
- IF = NP / FTP; TSS = duration_s x NP x IF / (FTP x 3600) x 100; W/kg = average power / weight.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, pairwise
from operator import le
from statistics import fmean
from typing import NamedTuple

# Plain Python, no NumPy: the live box computes a segment of a few thousand samples as its rider
# passes a gate (a 10-minute segment at 4 Hz in 0.9 ms, tools/bench engine), and importing NumPy cost
# the box 13 MB of its memory and 70 ms of its start-up (tools/bench daemon). Callers may pass
# arrays of any kind: they are read as floats.

NP_WINDOW_S = 30
DEFAULT_MAX_GAP_S = 5.0
NP_WINDOWS = ("segment", "ride")
PREROLL_S = 120.0  # how far back the ride window looks for its first rolling values (the engine keeps 120 s)

Floats = Iterable[float]


def floats(values: Floats) -> list[float]:
    """``values`` (a list, an ``array``, a NumPy array) as a list of Python floats."""
    tolist = getattr(values, "tolist", None)
    if tolist is not None:  # array('d') and NumPy arrays convert in C (to floats, or ints from an int array)
        converted: list[float] = tolist()
        return converted
    return [math.nan if v is None else float(v) for v in values]


@dataclass(frozen=True)
class PowerMetrics:
    """What one stretch of riding yields; None where it is undefined (no power, no FTP, no weight)."""

    duration_s: float
    samples: int
    coverage: float
    power_avg: float | None
    cadence_avg: float | None
    normalized_power: float | None
    intensity_factor: float | None
    tss: float | None
    watts_per_kg: float | None
    flags: tuple[str, ...] = field(default=())
    covered_s: int = 0  # seconds with power (held through short silences) inside the stretch
    np_window: str = "segment"


def resample_1hz(times: Floats, values: Floats, start: float, end: float,
                 max_gap_s: float = DEFAULT_MAX_GAP_S) -> list[float]:
    """Per-second means of ``values`` on the grid [start, start+1), ..., up to ``end`` (NaN: excluded).

    A run of empty seconds between two samples at most ``max_gap_s`` apart holds the earlier
    value (a meter that skipped a message was still being ridden); a longer silence is a dropout
    and its seconds are NaN, i.e. excluded. Samples outside [start, end) and NaN values are ignored.
    """
    return _grid(floats(times), floats(values), start, end, max_gap_s)[0]


def _grid(t_all: list[float], v_all: list[float], start: float, end: float, max_gap_s: float,
          bounds: list[int] | None = None) -> tuple[list[float], int]:
    """``resample_1hz``'s grid, and how many samples lay inside. ``bounds``: ``_bounds`` of the same
    times and stretch, when the caller has them (power and cadence share them)."""
    n_bins = math.ceil(end - start - 1e-9) if end > start else 0
    if n_bins <= 0:
        return [], 0
    if len(t_all) != len(v_all):
        raise ValueError(f"{len(t_all)} times for {len(v_all)} values")
    bounds = _bounds(t_all, start, end) if bounds is None else bounds
    sums, counts, heard = _bins_in_order(v_all, bounds) if bounds else _bins(t_all, v_all, start, end, n_bins)
    out = [s / c if c else math.nan for s, c in zip(sums, counts, strict=True)]
    filled = [i for i, c in enumerate(counts) if c]
    if not filled or len(filled) == n_bins:
        return out, heard
    # Silences: when the samples either side of each were heard (a second pass, only when there are
    # silences: a meter at 4 Hz fills every second, and the common case stays one loop).
    edges = {i for a, b in pairwise(filled) if b - a > 1 for i in (a, b)}
    edges.add(filled[-1])
    first, last = _edge_times(t_all, v_all, (start, end), edges)
    for a, b in pairwise(filled):
        if b - a > 1 and first[b] - last[a] <= max_gap_s:
            out[a + 1:b] = [out[a]] * (b - a - 1)
    tail = filled[-1]
    if tail < n_bins - 1 and end - last[tail] <= max_gap_s:
        out[tail + 1:] = [out[tail]] * (n_bins - tail - 1)  # a silence running to the end: measured to ``end``
    return out, heard


def _bins(t_all: list[float], v_all: list[float], start: float, end: float,
          n_bins: int) -> tuple[list[float], list[int], int]:
    """Each second's sum and count of the samples inside, and how many were inside, in any order."""
    sums = [0.0] * n_bins
    counts = [0] * n_bins
    beyond = 0  # inside [start, end) but past the last whole second's bin (float rounding at ``end``)
    for t, v in zip(t_all, v_all, strict=True):
        if start <= t < end and v == v:  # v == v: not NaN
            i = int(t - start)  # t - start >= 0: truncation is floor
            if i < n_bins:
                sums[i] += v
                counts[i] += 1
            else:
                beyond += 1
    return sums, counts, sum(counts) + beyond


def _bounds(t_all: list[float], start: float, end: float) -> list[int]:
    """Where each second of [start, end) begins in ``t_all``, and where the last ends, found by
    bisection; empty when the times are not in order (the engine's always are)."""
    if not all(map(le, t_all, t_all[1:])):
        return []
    n_bins = math.ceil(end - start - 1e-9)
    return [bisect_left(t_all, start), *(bisect_left(t_all, min(start + k + 1, end)) for k in range(n_bins))]


def _bins_in_order(v_all: list[float], bounds: list[int]) -> tuple[list[float], list[int], int]:
    """``_bins`` for samples in time order: each second's samples summed as a slice, in a third of
    the time of a loop over every sample."""
    sums = [0.0] * (len(bounds) - 1)
    counts = [0] * (len(bounds) - 1)
    for k, (lo, hi) in enumerate(pairwise(bounds)):
        if hi > lo:
            total = sum(v_all[lo:hi])
            if total == total:
                sums[k], counts[k] = total, hi - lo
            else:  # a NaN among them: left out
                heard = [v for v in v_all[lo:hi] if v == v]
                sums[k], counts[k] = sum(heard), len(heard)
    return sums, counts, sum(counts)


def _edge_times(times: list[float], values: list[float], span: tuple[float, float],
                edges: set[int]) -> tuple[dict[int, float], dict[int, float]]:
    """The first and the last sample time of each second in ``edges`` (samples as ``resample_1hz`` keeps them)."""
    start, end = span
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    for t, v in zip(times, values, strict=True):
        if start <= t < end and v == v:
            i = int(t - start)
            if i in edges:
                if t < first.get(i, math.inf):
                    first[i] = t
                if t > last.get(i, -math.inf):
                    last[i] = t
    return first, last


def _fourth_power_mean_root(rolling: Sequence[float]) -> float:
    return float((math.fsum(r ** 4 for r in rolling) / len(rolling)) ** 0.25)


def _rolling_means(p: Sequence[float]) -> list[float]:
    """The 30-value rolling means of ``p`` ('valid' window: one per full window)."""
    csum = [0.0, *accumulate(p)]
    return [(csum[k + NP_WINDOW_S] - csum[k]) / NP_WINDOW_S for k in range(len(p) - NP_WINDOW_S + 1)]


def _covered(p_1hz: Floats) -> list[float]:
    return [v for v in floats(p_1hz) if v == v]


def normalized_power(p_1hz: Floats) -> tuple[float | None, bool]:
    """(NP, short) over the covered seconds of a 1 Hz series; NaN seconds are left out, not zeroed.

    ``short`` is True when fewer than 30 covered seconds exist: NP is then the mean power.
    """
    p = _covered(p_1hz)
    if not p:
        return None, True
    if len(p) < NP_WINDOW_S:
        return fmean(p), True
    return _fourth_power_mean_root(_rolling_means(p)), False


def normalized_power_ride(pre_1hz: Floats, p_1hz: Floats) -> tuple[float | None, bool]:
    """(NP, short) of a stretch by the ``ride`` window: rolling means over the covered seconds of
    ``pre_1hz`` (the seconds before the stretch) followed by ``p_1hz`` (the stretch), joined across
    dropouts as head units do; only the rolling values that end inside the stretch count."""
    pre, cur = _covered(pre_1hz), _covered(p_1hz)
    if not cur:
        return None, True
    joined = pre + cur
    if len(joined) < NP_WINDOW_S:
        return fmean(cur), True
    # rolling[k] ends at joined index k + 29; the stretch starts at joined index len(pre).
    inside = _rolling_means(joined)[max(0, len(pre) - NP_WINDOW_S + 1):]
    if not inside:
        return fmean(cur), True
    return _fourth_power_mean_root(inside), len(cur) < NP_WINDOW_S


def intensity_factor(np_w: float | None, ftp_w: float | None) -> float | None:
    if np_w is None or not ftp_w:
        return None
    return np_w / ftp_w


def training_stress_score(duration_s: float, np_w: float | None, ftp_w: float | None) -> float | None:
    if_ = intensity_factor(np_w, ftp_w)
    if if_ is None or np_w is None or ftp_w is None:
        return None
    return duration_s * np_w * if_ / (ftp_w * 3600.0) * 100.0


# How many seconds a ride's or lap's TSS counts (the segments of the live engine count their duration
# from the timing system):
#   rolling - the number of 30-s rolling values, i.e. the seconds with power minus 29: what Garmin
#             head units store (Edge 520, 800, 810, 1000: measured on real rides), the default;
#   timer   - the head unit's timer time, pauses left out (what Wahoo stores, with its own NP);
#   nonzero - only the seconds with non-zero power.
TSS_TIME_CHOICES = ("rolling", "timer", "nonzero")


def tss_seconds(rule: str, m: PowerMetrics, power_inside: Floats) -> float:
    """The seconds TSS counts for a stretch under ``rule`` (see TSS_TIME_CHOICES)."""
    if rule == "rolling":
        return float(max(m.covered_s - (NP_WINDOW_S - 1), 0))
    if rule == "nonzero":
        return float(sum(1 for v in floats(power_inside) if v > 0))
    if rule == "timer":
        return m.duration_s
    raise ValueError(f"tss time must be one of {TSS_TIME_CHOICES}, got {rule!r}")


def watts_per_kg(power_w: float | None, weight_kg: float | None) -> float | None:
    if power_w is None or not weight_kg:
        return None
    return power_w / weight_kg


class Stretch(NamedTuple):
    """Raw samples of one rider (any rate, any order) and the stretch [start, end) to measure."""

    times: Floats
    power: Floats
    cadence: Floats | None
    start: float
    end: float


def power_metrics(stretch: Stretch, *, ftp_w: float | None = None, weight_kg: float | None = None,
                  max_gap_s: float = DEFAULT_MAX_GAP_S, duration_s: float | None = None,
                  np_window: str = "segment") -> PowerMetrics:
    """Every metric of the stretch [start, end) from raw samples (any rate, any order).

    ``duration_s`` overrides end - start for TSS, e.g. a head unit's timer time that leaves out pauses.
    ``np_window`` ``ride`` also reads the samples of the ``PREROLL_S`` before ``start`` (see module doc).
    """
    if np_window not in NP_WINDOWS:
        raise ValueError(f"np_window must be one of {NP_WINDOWS}, got {np_window!r}")
    times, power, cadence, start, end = stretch
    duration = float(end - start) if duration_s is None else float(duration_s)
    t, p = floats(times), floats(power)
    bounds = _bounds(t, start, end) if end > start else []
    p_1hz, samples = _grid(t, p, start, end, max_gap_s, bounds)
    if samples == 0:
        return PowerMetrics(duration, 0, 0.0, None, None, None, None, None, None, ("no_power",), np_window=np_window)
    covered = _covered(p_1hz)
    coverage = len(covered) / len(p_1hz)
    flags: list[str] = []
    if coverage < 1.0:
        flags.append("power_gap")
    power_avg = fmean(covered)
    if np_window == "ride":
        np_w, short = normalized_power_ride(_grid(t, p, start - PREROLL_S, start, max_gap_s)[0], p_1hz)
    else:
        np_w, short = normalized_power(p_1hz)
    if short:
        flags.append("short_segment")
    cadence_avg = None
    if cadence is not None:
        c_heard = _covered(_grid(t, floats(cadence), start, end, max_gap_s, bounds)[0])
        if c_heard:
            cadence_avg = fmean(c_heard)
    return PowerMetrics(
        duration_s=duration,
        samples=samples,
        coverage=coverage,
        power_avg=power_avg,
        cadence_avg=cadence_avg,
        normalized_power=np_w,
        intensity_factor=intensity_factor(np_w, ftp_w),
        tss=training_stress_score(duration, np_w, ftp_w),
        watts_per_kg=watts_per_kg(power_avg, weight_kg),
        flags=tuple(flags),
        covered_s=len(covered),
        np_window=np_window,
    )
