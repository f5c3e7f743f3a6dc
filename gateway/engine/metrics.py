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

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

NP_WINDOW_S = 30
DEFAULT_MAX_GAP_S = 5.0
NP_WINDOWS = ("segment", "ride")
PREROLL_S = 120.0  # how far back the ride window looks for its first rolling values (the engine keeps 120 s)


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


def resample_1hz(times: ArrayLike, values: ArrayLike, start: float, end: float,
                 max_gap_s: float = DEFAULT_MAX_GAP_S) -> NDArray[np.float64]:
    """Per-second means of ``values`` on the grid [start, start+1), ..., up to ``end``.

    A run of empty seconds between two samples at most ``max_gap_s`` apart holds the earlier
    value (a meter that skipped a message was still being ridden); a longer silence is a dropout
    and its seconds are NaN, i.e. excluded. Samples outside [start, end) and NaN values are ignored.
    """
    t = np.asarray(times, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    n_bins = int(np.ceil(end - start - 1e-9)) if end > start else 0
    if n_bins <= 0:
        return np.empty(0)
    keep = (t >= start) & (t < end) & ~np.isnan(v)
    t, v = t[keep], v[keep]
    idx = np.floor(t - start).astype(np.int64)
    sums = np.bincount(idx, weights=v, minlength=n_bins)[:n_bins]
    counts = np.bincount(idx, minlength=n_bins)[:n_bins]
    out = np.full(n_bins, np.nan)
    has = counts > 0
    out[has] = sums[has] / counts[has]
    if has.all() or not has.any():
        return out
    first_t = np.full(n_bins, np.inf)
    last_t = np.full(n_bins, -np.inf)
    np.minimum.at(first_t, idx, t)
    np.maximum.at(last_t, idx, t)
    bins = np.arange(n_bins)
    prev = np.maximum.accumulate(np.where(has, bins, -1))
    nxt = np.minimum.accumulate(np.where(has, bins, n_bins)[::-1])[::-1]
    empty = ~has & (prev >= 0)
    prev_time = last_t[prev[empty]]
    next_time = np.where(nxt[empty] < n_bins, first_t[np.minimum(nxt[empty], n_bins - 1)], end)
    held = next_time - prev_time <= max_gap_s
    targets = np.flatnonzero(empty)[held]
    out[targets] = out[prev[targets]]
    return out


def normalized_power(p_1hz: ArrayLike) -> tuple[float | None, bool]:
    """(NP, short) over the covered seconds of a 1 Hz series; NaN seconds are left out, not zeroed.

    ``short`` is True when fewer than 30 covered seconds exist: NP is then the mean power.
    """
    p = np.asarray(p_1hz, dtype=np.float64)
    p = p[~np.isnan(p)]
    if p.size == 0:
        return None, True
    if p.size < NP_WINDOW_S:
        return float(p.mean()), True
    csum = np.concatenate(([0.0], np.cumsum(p)))
    rolling = (csum[NP_WINDOW_S:] - csum[:-NP_WINDOW_S]) / NP_WINDOW_S
    return float(np.mean(rolling**4) ** 0.25), False


def normalized_power_ride(pre_1hz: ArrayLike, p_1hz: ArrayLike) -> tuple[float | None, bool]:
    """(NP, short) of a stretch by the ``ride`` window: rolling means over the covered seconds of
    ``pre_1hz`` (the seconds before the stretch) followed by ``p_1hz`` (the stretch), joined across
    dropouts as head units do; only the rolling values that end inside the stretch count."""
    pre = np.asarray(pre_1hz, dtype=np.float64)
    cur = np.asarray(p_1hz, dtype=np.float64)
    pre, cur = pre[~np.isnan(pre)], cur[~np.isnan(cur)]
    if cur.size == 0:
        return None, True
    joined = np.concatenate((pre, cur))
    if joined.size < NP_WINDOW_S:
        return float(cur.mean()), True
    csum = np.concatenate(([0.0], np.cumsum(joined)))
    rolling = (csum[NP_WINDOW_S:] - csum[:-NP_WINDOW_S]) / NP_WINDOW_S
    # rolling[k] ends at joined index k + 29; the stretch starts at joined index pre.size.
    inside = rolling[max(0, pre.size - NP_WINDOW_S + 1):]
    if inside.size == 0:
        return float(cur.mean()), True
    return float(np.mean(inside**4) ** 0.25), cur.size < NP_WINDOW_S


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


def tss_seconds(rule: str, m: PowerMetrics, power_inside: ArrayLike) -> float:
    """The seconds TSS counts for a stretch under ``rule`` (see TSS_TIME_CHOICES)."""
    if rule == "rolling":
        return float(max(m.covered_s - (NP_WINDOW_S - 1), 0))
    if rule == "nonzero":
        return float(np.count_nonzero(np.asarray(power_inside, dtype=np.float64) > 0))
    if rule == "timer":
        return m.duration_s
    raise ValueError(f"tss time must be one of {TSS_TIME_CHOICES}, got {rule!r}")


def watts_per_kg(power_w: float | None, weight_kg: float | None) -> float | None:
    if power_w is None or not weight_kg:
        return None
    return power_w / weight_kg


class Stretch(NamedTuple):
    """Raw samples of one rider (any rate, any order) and the stretch [start, end) to measure."""

    times: ArrayLike
    power: ArrayLike
    cadence: ArrayLike | None
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
    t = np.asarray(times, dtype=np.float64)
    p = np.asarray(power, dtype=np.float64)
    inside = (t >= start) & (t < end) & ~np.isnan(p)
    samples = int(inside.sum())
    p_1hz = resample_1hz(t, p, start, end, max_gap_s)
    covered = ~np.isnan(p_1hz)
    coverage = float(covered.mean()) if p_1hz.size else 0.0
    flags: list[str] = []
    if samples == 0:
        return PowerMetrics(duration, 0, 0.0, None, None, None, None, None, None, ("no_power",), np_window=np_window)
    if coverage < 1.0:
        flags.append("power_gap")
    power_avg = float(p_1hz[covered].mean())
    if np_window == "ride":
        np_w, short = normalized_power_ride(resample_1hz(t, p, start - PREROLL_S, start, max_gap_s), p_1hz)
    else:
        np_w, short = normalized_power(p_1hz)
    if short:
        flags.append("short_segment")
    cadence_avg = None
    if cadence is not None:
        c = np.asarray(cadence, dtype=np.float64)
        c_1hz = resample_1hz(t, c, start, end, max_gap_s)
        if (~np.isnan(c_1hz)).any():
            cadence_avg = float(np.nanmean(c_1hz))
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
        covered_s=int(covered.sum()),
        np_window=np_window,
    )
