"""Fatigue across laps: per rider and segment, lap over lap, how time, power, NP and the time score
move, with a robust trend and its uncertainty; quadrant changes in words; where a rider lost most;
who fades on which terrain. Pure: results in, values out.

The trend is Theil-Sen (the median of the slopes between every pair of laps), which one bad lap
(a dropped chain) cannot drag; its 95 % interval is Sen's (1968), from the distribution of
Kendall's S. With fewer than four laps there is no interval ("too few laps to tell").
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import median
from typing import Any

from gateway.engine.normalize import quadrant as quadrant_of

Z95 = 1.959964


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
            return "too few laps to tell"
        if self.low_pct > 0:
            return "slower lap after lap"
        if self.high_pct < 0:
            return "faster lap after lap"
        return "no clear trend"


def theil_sen(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float | None, float | None]:
    """The Theil-Sen slope and Sen's 95 % interval of ``ys`` against ``xs`` (None when n < 4)."""
    n = len(xs)
    slopes = sorted((ys[j] - ys[i]) / (xs[j] - xs[i]) for i in range(n) for j in range(i + 1, n) if xs[j] != xs[i])
    if not slopes:
        return 0.0, None, None
    slope = median(slopes)
    if n < 4:
        return slope, None, None
    c = Z95 * math.sqrt(n * (n - 1) * (2 * n + 5) / 18)
    # Sen: the M1-th smallest and the (M2 + 1)-th, M1 = (N - C) / 2, M2 = (N + C) / 2 (0-based below).
    lower, upper = round((len(slopes) - c) / 2) - 1, round((len(slopes) + c) / 2)
    if lower < 0 or upper >= len(slopes):
        return slope, None, None
    return slope, slopes[lower], slopes[upper]


def _trend(laps: Sequence[int], values: Sequence[float]) -> dict[str, Any]:
    slope, low, high = theil_sen([float(x) for x in laps], list(values))
    base = values[0] or 1.0
    trend = Trend(100 * slope / base, None if low is None else 100 * low / base,
                  None if high is None else 100 * high / base, len(values))
    return {**trend.__dict__, "verdict": trend.verdict}


def quadrant(r: Mapping[str, Any]) -> str:
    return quadrant_of(r.get("time_zscore"), r.get("power_zscore")) or ""


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
