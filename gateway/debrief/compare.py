"""Equipment and condition comparisons: two values of a session tag (``tyres=1.6bar`` against
``tyres=1.8bar``) per terrain segment, as the time difference at equal power, with a bootstrap
interval and the number of runs behind it. Pure: runs in, verdicts out.

How power is accounted for: on one segment, time and power of the same rider are related as
log(time) = a_rider + b * log(power). The slope b is estimated on the segment from every run,
within riders (each rider's runs centred on their own means), so it is the segment's own: about -1
on a climb, near 0 on a fast descent. Each run's time is then moved to its rider's mean power on
that segment. The effect is the mean over riders who rode both setups of (mean adjusted log-time
with A) - (with B), as a percent: negative = A faster. Runs without power data are not adjusted.

Uncertainty: 2000 bootstrap resamples (seeded: the same data gives the same interval) of the runs
within each rider and setup, the slope refitted each time; the 95 % percentile interval. When it
holds 0 the data cannot tell the setups apart, and the verdict says so.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

RESAMPLES = 2000


@dataclass(frozen=True)
class Run:
    rider_id: str
    segment: int
    setup: str  # "a" or "b"
    time_s: float
    power_w: float | None


def _slope(runs: Sequence[Run]) -> float:
    """Within-rider least squares slope of log(time) on log(power) (0 without spread in power)."""
    by: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        if r.power_w and r.power_w > 0:
            by[r.rider_id].append(r)
    sxy = sxx = 0.0
    for items in by.values():
        if len(items) < 2:
            continue
        mx = sum(math.log(r.power_w or 1) for r in items) / len(items)
        my = sum(math.log(r.time_s) for r in items) / len(items)
        for r in items:
            dx = math.log(r.power_w or 1) - mx
            sxy += dx * (math.log(r.time_s) - my)
            sxx += dx * dx
    return sxy / sxx if sxx > 1e-12 else 0.0


def _effect(runs: Sequence[Run]) -> float | None:
    """Mean over riders with both setups of the adjusted log-time difference A - B."""
    b = _slope(runs)
    by: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        by[r.rider_id].append(r)
    diffs = []
    for items in by.values():
        powered = [math.log(r.power_w) for r in items if r.power_w and r.power_w > 0]
        centre = sum(powered) / len(powered) if powered else None

        def adjusted(r: Run, b: float = b, centre: float | None = centre) -> float:
            if r.power_w and r.power_w > 0 and centre is not None:
                return math.log(r.time_s) - b * (math.log(r.power_w) - centre)
            return math.log(r.time_s)

        a = [adjusted(r) for r in items if r.setup == "a"]
        bb = [adjusted(r) for r in items if r.setup == "b"]
        if a and bb:
            diffs.append(sum(a) / len(a) - sum(bb) / len(bb))
    return sum(diffs) / len(diffs) if diffs else None


def pct(log_ratio: float) -> float:
    """A difference of log-times as a percent of time."""
    return 100 * (math.exp(log_ratio) - 1)


def compare_segment(runs: Sequence[Run], *, seed: int = 7) -> dict[str, Any]:
    """The effect of setup A against B on one segment, in percent of time, with its interval."""
    effect = _effect(runs)
    n_a = sum(1 for r in runs if r.setup == "a")
    n_b = sum(1 for r in runs if r.setup == "b")
    riders = sorted({r.rider_id for r in runs if r.setup == "a"} & {r.rider_id for r in runs if r.setup == "b"})
    out: dict[str, Any] = {"runs_a": n_a, "runs_b": n_b, "riders_both": len(riders), "effect_pct": None,
                           "low_pct": None, "high_pct": None, "slope": _slope(runs)}
    if effect is None:
        out["verdict"] = "no rider rode both setups here: cannot compare"
        return out
    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for r in runs:
        if r.rider_id in riders:
            groups[(r.rider_id, r.setup)].append(r)
    rng = random.Random(seed)
    boot = []
    for _ in range(RESAMPLES):
        sample = [rng.choice(items) for items in groups.values() for _ in items]
        e = _effect(sample)
        if e is not None:
            boot.append(e)
    boot.sort()
    low, high = pct(boot[int(0.025 * len(boot))]), pct(boot[min(len(boot) - 1, int(0.975 * len(boot)))])
    out.update(effect_pct=pct(effect), low_pct=low, high_pct=high)
    if low <= 0 <= high:
        out["verdict"] = f"cannot tell the setups apart (95 % interval {low:+.1f} % to {high:+.1f} %)"
    else:
        faster = "A" if effect < 0 else "B"
        out["verdict"] = (f"{faster} is faster by {abs(pct(effect)):.1f} % at equal power "
                          f"(95 % interval {min(abs(low), abs(high)):.1f} to {max(abs(low), abs(high)):.1f} %)")
    return out


def compare(rows: Sequence[Mapping[str, Any]], tags: Mapping[str, Mapping[str, str]], tag: str, a: str, b: str,
            segment_names: Sequence[str] = ()) -> dict[str, Any]:
    """``rows``: results of several sessions on one course; ``tags``: each session's tags. Per
    segment, setup A (``tag=a``) against B (``tag=b``)."""
    runs: dict[int, list[Run]] = defaultdict(list)
    for r in rows:
        value = (tags.get(r["session_id"]) or {}).get(tag)
        if value not in (a, b) or r.get("segment") is None or "withdrawn" in (r.get("flags") or ()):
            continue
        runs[int(r["segment"])].append(Run(r["rider_id"], int(r["segment"]), "a" if value == a else "b",
                                           float(r["duration"]), r.get("power_avg")))
    segments = []
    for seg, items in sorted(runs.items()):
        name = segment_names[seg - 1] if 0 < seg <= len(segment_names) else f"segment {seg}"
        segments.append({"segment": seg, "segment_name": name, **compare_segment(items, seed=seg)})
    return {"tag": tag, "a": a, "b": b, "segments": segments,
            "sessions_a": sorted(s for s, t in tags.items() if t.get(tag) == a),
            "sessions_b": sorted(s for s, t in tags.items() if t.get(tag) == b)}


def tag_values(tags: Mapping[str, Mapping[str, str]]) -> dict[str, list[str]]:
    """Every tag name with the values sessions gave it (a comparison needs two)."""
    out: dict[str, set[str]] = defaultdict(set)
    for t in tags.values():
        for k, v in t.items():
            out[k].add(v)
    return {k: sorted(v) for k, v in sorted(out.items())}
