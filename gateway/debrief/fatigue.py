"""Fatigue across laps: per rider and segment, lap over lap, how time, power, NP and the time score
move, with a robust trend and its uncertainty; quadrant changes in words; where a rider lost most;
who fades on which terrain. Pure: results in, values out.

The trend is Theil-Sen (the median of the slopes between every pair of laps), which one bad lap
(a dropped chain) cannot drag. Its 95 % interval: the slope ± t(n-2) x its standard error, the
error from the laps' scatter about the line (from six laps on, without the farthest lap, so one bad
lap does not widen it either). An interval needs ``MIN_LAPS`` laps (four);
with fewer the trend is shown without one ("too few laps to tell: an interval needs four").
Sen's own interval (from Kendall's S) needs six laps before it can exclude 0: a 3 % a lap fade over
five laps went unseen.

A quadrant counts only outside a neutral band: a time score of -0.19 is the squad's middle, not
"strong". A change of quadrant from one lap to the next is listed when both laps are outside it.
Time lost on a lap against the first is split into what the power explains (the segment's own
slope of log time on log power, within riders, lap by lap) and what it does not: technique, the
line taken, or fatigue that did not show in the power.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import median
from typing import Any

import numpy as np

from gateway.debrief.compare import within_riders
from gateway.engine.normalize import quadrant as quadrant_of

Z95 = 1.959964
MIN_LAPS = 4
NEUTRAL_Z = 0.5  # |z| under this on either axis: the squad's middle, no quadrant
# Two-sided 95 % quantiles of Student's t by degrees of freedom (beyond 30: the normal's).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
       12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


def t95(df: int) -> float:
    """The quantile for ``df`` degrees of freedom, or the next smaller tabulated one's (wider)."""
    return T95[max(k for k in T95 if k <= df)] if df <= 30 else Z95


@dataclass(frozen=True)
class Trend:
    """Change per lap in percent of the first lap's value, with Sen's 95 % interval (None: too few laps)."""

    per_lap_pct: float
    low_pct: float | None
    high_pct: float | None
    laps: int

    @property
    def verdict(self) -> str:
        if self.low_pct is None or self.high_pct is None:
            return f"too few laps to tell: an interval needs {MIN_LAPS}"
        if self.low_pct > 0:
            return "slower lap after lap"
        if self.high_pct < 0:
            return "faster lap after lap"
        return "no clear trend"


def theil_sen(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float | None, float | None]:
    """The Theil-Sen slope of ``ys`` against ``xs`` and its 95 % interval (None with fewer than
    ``MIN_LAPS`` points; see the module's text)."""
    n = len(xs)
    slopes = sorted((ys[j] - ys[i]) / (xs[j] - xs[i]) for i in range(n) for j in range(i + 1, n) if xs[j] != xs[i])
    if not slopes:
        return 0.0, None, None
    slope = median(slopes)
    if n < MIN_LAPS:
        return slope, None, None
    intercept = median(y - slope * x for x, y in zip(xs, ys, strict=True))
    residuals = sorted(abs(y - intercept - slope * x) for x, y in zip(xs, ys, strict=True))
    if n >= 6:
        residuals = residuals[:-1]  # one bad lap (a dropped chain) does not widen it
    sigma = math.sqrt(sum(r * r for r in residuals) / max(1, len(residuals) - 2))
    mean_x = sum(xs) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx <= 0:
        return slope, None, None
    half = t95(n - 2) * sigma / math.sqrt(sxx)
    return slope, slope - half, slope + half


def _trend(laps: Sequence[int], values: Sequence[float]) -> dict[str, Any]:
    slope, low, high = theil_sen([float(x) for x in laps], list(values))
    base = values[0] or 1.0
    trend = Trend(100 * slope / base, None if low is None else 100 * low / base,
                  None if high is None else 100 * high / base, len(values))
    return {**trend.__dict__, "verdict": trend.verdict}


def quadrant(r: Mapping[str, Any]) -> str:
    """The result's quadrant, or "" inside the neutral band (or unscored)."""
    tz, pz = r.get("time_zscore"), r.get("power_zscore")
    if tz is None or pz is None or abs(tz) < NEUTRAL_Z or abs(pz) < NEUTRAL_Z:
        return ""
    return quadrant_of(tz, pz) or ""


def fatigue(rows: Sequence[Mapping[str, Any]], segment_names: Sequence[str] = ()) -> dict[str, Any]:
    """``rows``: annotated results (a session's, with z-scores). Per rider and segment, the laps;
    the transitions in words; where each rider lost most; the squad by terrain."""
    by: dict[tuple[str, int], list[Mapping[str, Any]]] = defaultdict(list)
    names: dict[str, str] = {}
    for r in rows:
        if r.get("segment") is None or "withdrawn" in (r.get("flags") or ()):
            continue  # a span over a missed gate is not one piece of terrain
        by[(r["rider_id"], int(r["segment"]))].append(r)
        names[r["rider_id"]] = r.get("name") or r["rider_id"]

    def seg_name(k: int) -> str:
        return segment_names[k - 1] if 0 < k <= len(segment_names) else f"segment {k}"

    series: list[dict[str, Any]] = []
    transitions = []
    slopes = power_slopes(by)
    for (rider, seg), laps in sorted(by.items()):
        laps.sort(key=lambda r: r["lap"])
        times = [float(r["duration"]) for r in laps]
        best = min(times)
        entry: dict[str, Any] = {
            "rider_id": rider, "name": names[rider], "segment": seg, "segment_name": seg_name(seg),
            "laps": [{"lap": r["lap"], "time_s": r["duration"], "power_w": r.get("power_avg"),
                      "np_w": r.get("normalized_power"), "time_z": r.get("time_zscore"), "quadrant": quadrant(r),
                      "vs_first_pct": 100 * (float(r["duration"]) / times[0] - 1),
                      "vs_best_pct": 100 * (float(r["duration"]) / best - 1)} for r in laps],
            "time_trend": _trend([r["lap"] for r in laps], times),
        }
        powers = [float(r["power_avg"]) for r in laps if r.get("power_avg") is not None]
        if len(powers) == len(laps):
            entry["power_trend"] = _trend([r["lap"] for r in laps], powers)
            split_lost(entry["laps"], slopes.get(seg))
        series.append(entry)
        for a, b in itertools.pairwise(laps):
            qa, qb = quadrant(a), quadrant(b)
            if qa and qb and qa != qb:
                transitions.append({"rider_id": rider, "name": names[rider], "lap": b["lap"], "segment": seg,
                                    "text": f"{names[rider]}, lap {b['lap']}, segment {seg} ({seg_name(seg)}): "
                                            f"{qa} -> {qb}"})
    lost: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in series:
        worst = max(s["laps"], key=lambda lap: lap["vs_first_pct"])
        if len(s["laps"]) > 1 and worst["vs_first_pct"] > 0:
            lost[s["rider_id"]].append({"segment": s["segment"], "segment_name": s["segment_name"],
                                        "lap": worst["lap"], "lost_pct": worst["vs_first_pct"],
                                        "lost_s": worst["time_s"] - s["laps"][0]["time_s"]})
    for items in lost.values():
        items.sort(key=lambda i: -i["lost_s"])
        del items[3:]
    return {"series": series, "transitions": sorted(transitions, key=lambda t: (t["lap"], t["segment"], t["name"])),
            "lost_most": dict(lost), "squad": squad(series)}


def power_slopes(by: Mapping[tuple[str, int], Sequence[Mapping[str, Any]]]) -> dict[int, float]:
    """Each segment's slope of log time on log power, within riders, lap by lap (the lap in the
    model too, so that a rider slowing as the laps go does not pass for power's effect)."""
    out = {}
    for seg in sorted({k[1] for k in by}):
        rows = [r for (_, s), laps in by.items() if s == seg for r in laps
                if r.get("power_avg") and float(r["power_avg"]) > 0]
        if len(rows) < 4:
            continue
        x = np.array([[math.log(float(r["power_avg"])), float(r["lap"])] for r in rows])
        y = np.array([math.log(float(r["duration"])) for r in rows])
        fitted = within_riders(x, y, np.array([r["rider_id"] for r in rows]))
        if fitted is not None:
            out[seg] = float(fitted[0][0])
    return out


def split_lost(laps: list[dict[str, Any]], slope: float | None) -> None:
    """Each lap's time lost against the first, split into what the power explains (the segment's
    slope times the change of log power) and the rest (technique, line, fatigue beyond power)."""
    first = laps[0]
    for lap in laps:
        lost = float(lap["time_s"]) - float(first["time_s"])
        if slope is None or not lap["power_w"] or not first["power_w"]:
            lap["power_explains_s"] = lap["rest_s"] = None
            continue
        explained = float(first["time_s"]) * (math.exp(slope * math.log(lap["power_w"] / first["power_w"])) - 1)
        lap["power_explains_s"], lap["rest_s"] = explained, lost - explained


def squad(series: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per segment: the squad's median change per lap, and who fades there (an interval above 0)."""
    out = []
    by_seg: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for s in series:
        by_seg[s["segment"]].append(s)
    for seg, items in sorted(by_seg.items()):
        trends = [s["time_trend"]["per_lap_pct"] for s in items if s["time_trend"]["laps"] > 1]
        fading = sorted(s["name"] for s in items if (s["time_trend"]["low_pct"] or 0) > 0)
        out.append({"segment": seg, "segment_name": items[0]["segment_name"],
                    "median_per_lap_pct": median(trends) if trends else None, "fading": fading,
                    "slowest_riders": [s["name"] for s in sorted(items, key=lambda s: -s["time_trend"]["per_lap_pct"])
                                       if s["time_trend"]["per_lap_pct"] > 0][:3]})
    return out
