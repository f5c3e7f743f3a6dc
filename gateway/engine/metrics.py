"""Pure power metrics: 1 Hz resampling, Normalized Power, IF, TSS, W/kg, coverage.

Definitions (DESIGN.md, "Metrics"), the ones coaches check against their head units and
GoldenCheetah / TrainingPeaks:

- power is resampled to 1 Hz on the segment's own time grid (one bin per second from the start
  gate); empty seconds inside a silence of at most ``max_gap_s`` hold the previous reading (a
  meter that skips a message is still being ridden), a longer silence is *excluded*, never
  zero-filled, and lowers ``coverage``;
- NP: 30-sample rolling mean ('valid' window) over the covered seconds, 4th power, mean, 4th root;
  a segment with fewer than 30 covered seconds gets the mean power and the flag ``short_segment``;
- IF = NP / FTP; TSS = duration_s x NP x IF / (FTP x 3600) x 100; W/kg = average power / weight.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

NP_WINDOW_S = 30
DEFAULT_MAX_GAP_S = 5.0


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


def intensity_factor(np_w: float | None, ftp_w: float | None) -> float | None:
    if np_w is None or not ftp_w:
        return None
    return np_w / ftp_w


def training_stress_score(duration_s: float, np_w: float | None, ftp_w: float | None) -> float | None:
    if_ = intensity_factor(np_w, ftp_w)
    if if_ is None or np_w is None or ftp_w is None:
        return None
    return duration_s * np_w * if_ / (ftp_w * 3600.0) * 100.0


def watts_per_kg(power_w: float | None, weight_kg: float | None) -> float | None:
    if power_w is None or not weight_kg:
        return None
    return power_w / weight_kg


def power_metrics(times: ArrayLike, power: ArrayLike, cadence: ArrayLike | None, start: float, end: float, *,
                  ftp_w: float | None = None, weight_kg: float | None = None,
                  max_gap_s: float = DEFAULT_MAX_GAP_S, duration_s: float | None = None) -> PowerMetrics:
    """Every metric of the stretch [start, end) from raw samples (any rate, any order).

    ``duration_s`` overrides end - start for TSS, e.g. a head unit's timer time that leaves out pauses.
    """
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
        return PowerMetrics(duration, 0, 0.0, None, None, None, None, None, None, ("no_power",))
    if coverage < 1.0:
        flags.append("power_gap")
    power_avg = float(p_1hz[covered].mean())
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
    )
