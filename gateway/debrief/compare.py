"""Equipment and condition comparisons: two values of a session tag (``tyres=1.6bar`` against
``tyres=1.8bar``) per terrain segment, as the time difference at equal power and equal place in the
session, with a bootstrap interval. Pure: runs in, verdicts out.

First the design: a setup ridden only before the other (by session, lap or time of day), or by
other riders, cannot be told from fatigue, wind or the riders themselves; the comparison then says
so in words and gives no number. A rider counts with at least ``MIN_RUNS`` runs of each setup.

The model, on one segment, within each rider: log(time) = a_rider + b log(power) + c hours +
d setup, where ``hours`` is when the run was ridden since the rider's first compared run (fatigue,
the day warming up) and ``setup`` is 1 for B. The slope b is the segment's own (about -1 on a
climb, near 0 on a fast descent); d, as a percent of time, is the effect. Least squares on the
variables centred within each rider. The interval: 2000 bootstrap resamples (seeded) of whole runs
within each rider and setup, the model refitted each time; the 95 % percentile interval. When it
holds 0 the data cannot tell the setups apart, and the verdict says so.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

RESAMPLES = 2000
MIN_RUNS = 2  # runs of each setup a rider needs to count


@dataclass(frozen=True)
class Run:
    rider_id: str
    segment: int
    setup: str  # "a" or "b"
    time_s: float
    power_w: float | None
    at: float  # when it was ridden (unix seconds): its place in the day
    session: str = ""
    lap: int = 0


def within_riders(x: np.ndarray, y: np.ndarray, riders: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Least squares of y on x's columns, each centred within its rider, and the residuals' standard
    deviation (None: not identifiable)."""
    xc, yc = x.copy(), y.copy()
    for r in np.unique(riders):
        m = riders == r
        xc[m] -= xc[m].mean(axis=0)
        yc[m] -= yc[m].mean()
    keep = np.abs(xc).sum(axis=0) > 1e-12  # a column without spread (no power data) is left out
    if not keep[-1]:
        return None
    coef, _, rank, _ = np.linalg.lstsq(xc[:, keep], yc, rcond=None)
    if rank < int(keep.sum()):
        return None
    out = np.zeros(x.shape[1])
    out[keep] = coef
    free = len(y) - len(np.unique(riders)) - int(keep.sum())
    sigma = float(np.sqrt(np.sum((yc - xc @ out) ** 2) / free)) if free > 0 else float("nan")
    return out, sigma


def fit(runs: Sequence[Run]) -> tuple[float, float, float] | None:
    """(effect d as a log-time difference B - A, power slope b, the residual noise as a log-time
    standard deviation), or None when not identifiable."""
    first: dict[str, float] = {}
    for r in runs:
        first[r.rider_id] = min(first.get(r.rider_id, r.at), r.at)
    powered = all(r.power_w and r.power_w > 0 for r in runs)
    x = np.array([[math.log(r.power_w) if powered and r.power_w else 0.0, (r.at - first[r.rider_id]) / 3600.0,
                   1.0 if r.setup == "b" else 0.0] for r in runs])
    y = np.array([math.log(r.time_s) for r in runs])
    done = within_riders(x, y, np.array([r.rider_id for r in runs]))
    return None if done is None else (float(done[0][2]), float(done[0][0]), done[1])


def pct(log_ratio: float) -> float:
    """A difference of log-times as a percent of time."""
    return 100 * (math.exp(log_ratio) - 1)


def design_problem(runs: Sequence[Run], a: str, b: str) -> str | None:
    """Why these runs cannot separate the setups from order or riders, in words (None: they can)."""
    riders_a = {r.rider_id for r in runs if r.setup == "a"}
    riders_b = {r.rider_id for r in runs if r.setup == "b"}
    if not riders_a or not riders_b:
        return f"only {a if riders_a else b} was ridden here: nothing to compare"
    if not riders_a & riders_b:
        return (f"{a} was ridden by {', '.join(sorted(riders_a))} and {b} by {', '.join(sorted(riders_b))}: "
                "the riders and the setups cannot be told apart")
    directions = set()
    for rider in riders_a & riders_b:
        ta = [r.at for r in runs if r.rider_id == rider and r.setup == "a"]
        tb = [r.at for r in runs if r.rider_id == rider and r.setup == "b"]
        if max(ta) < min(tb):
            directions.add("a first")
        elif max(tb) < min(ta):
            directions.add("b first")
        else:
            directions.add("mixed")
    if directions == {"a first"}:
        return f"{b} was ridden only after {a}: fatigue (or the day) and the setup cannot be told apart"
    if directions == {"b first"}:
        return f"{a} was ridden only after {b}: fatigue (or the day) and the setup cannot be told apart"
    return None


def _sides(runs: Sequence[Run]) -> dict[str, dict[str, Any]]:
    out = {}
    for side in ("a", "b"):
        mine = [r for r in runs if r.setup == side]
        out[side] = {"riders": sorted({r.rider_id for r in mine}), "sessions": sorted({r.session for r in mine}),
                     "laps": len({(r.session, r.lap) for r in mine}), "runs": len(mine)}
    return out


def compare_segment(runs: Sequence[Run], a: str = "A", b: str = "B", *, seed: int = 7) -> dict[str, Any]:
    """Setup A against B on one segment: what went into each side, and a verdict (with the effect in
    percent of time and its interval when the design allows one)."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for r in runs:
        counts[(r.rider_id, r.setup)] += 1
    riders = sorted(rid for rid in {r.rider_id for r in runs}
                    if counts[(rid, "a")] >= MIN_RUNS and counts[(rid, "b")] >= MIN_RUNS)
    short = sorted(f"{rid}: {counts[(rid, 'a')]} of {a}, {counts[(rid, 'b')]} of {b}"
                   for rid in {r.rider_id for r in runs} if rid not in riders)
    out: dict[str, Any] = {"runs_a": counts_of(runs, "a"), "runs_b": counts_of(runs, "b"), "riders_both": len(riders),
                           "sides": _sides(runs), "left_out": short, "effect_pct": None, "low_pct": None,
                           "high_pct": None, "slope": None}
    problem = design_problem(runs, a, b)
    if problem is not None:
        out["verdict"] = problem
        return out
    used = [r for r in runs if r.rider_id in riders]
    if not used:
        out["verdict"] = f"no rider rode each setup at least {MIN_RUNS} times here: no verdict"
        return out
    problem = design_problem(used, a, b)
    fitted = fit(used)
    if problem is not None or fitted is None:
        out["verdict"] = problem or "the order of the runs and the setups cannot be told apart: no verdict"
        return out
    effect, slope, sigma = fitted
    low, high = _interval(used, seed)
    runs_per_setup = min(counts_of(used, "a"), counts_of(used, "b"))
    out.update(effect_pct=pct(-effect), low_pct=pct(-high), high_pct=pct(-low), slope=slope,
               sides=_sides(used), **power_analysis(sigma, len(riders), runs_per_setup))
    lo_pct, hi_pct = out["low_pct"], out["high_pct"]
    if lo_pct <= 0 <= hi_pct:
        seen = out["detectable_pct"]
        out["verdict"] = (f"cannot tell the setups apart (95 % interval {lo_pct:+.1f} % to {hi_pct:+.1f} %)"
                          + (f"; these runs could have seen a difference of about {seen:.1f} %" if seen else ""))
    else:
        faster = a if effect > 0 else b
        out["verdict"] = (f"{faster} is faster by {abs(pct(effect)):.1f} % at equal power and place in the "
                          f"session (95 % interval {min(abs(lo_pct), abs(hi_pct)):.1f} to "
                          f"{max(abs(lo_pct), abs(hi_pct)):.1f} %)")
    return out


Z_SURE = 1.96 + 0.84  # a two-sided 5 % test that finds a real difference 8 times in 10
PLANNED_PCT = 2.0  # the difference a test is planned to see


def power_analysis(sigma: float, riders: int, runs_per_setup: int) -> dict[str, Any]:
    """From the run-to-run noise (a log-time standard deviation): the difference these runs could
    have seen, and the runs of each setup per rider that a 2 % difference needs."""
    if not math.isfinite(sigma) or riders < 1 or runs_per_setup < 1:
        return {"noise_pct": None, "detectable_pct": None, "runs_needed_for_2pct": None}
    per_rider = runs_per_setup / riders
    detectable = Z_SURE * sigma * math.sqrt(2.0 / (per_rider * riders))
    needed = math.ceil(2.0 * (Z_SURE * sigma / math.log1p(PLANNED_PCT / 100)) ** 2 / riders)
    return {"noise_pct": round(100 * sigma, 2), "detectable_pct": round(pct(detectable), 2),
            "runs_needed_for_2pct": max(MIN_RUNS, needed)}


def counts_of(runs: Sequence[Run], side: str) -> int:
    return sum(1 for r in runs if r.setup == side)


def _interval(runs: Sequence[Run], seed: int) -> tuple[float, float]:
    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for r in runs:
        groups[(r.rider_id, r.setup)].append(r)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(RESAMPLES):
        sample = [items[i] for items in groups.values() for i in rng.integers(0, len(items), len(items))]
        fitted = fit(sample)
        if fitted is not None:
            boot.append(fitted[0])
    values = np.sort(np.array(boot))
    return float(values[int(0.025 * len(values))]), float(values[min(len(values) - 1, int(0.975 * len(values)))])


def compare(rows: Sequence[Mapping[str, Any]], tags: Mapping[str, Mapping[str, str]], tag: str, a: str, b: str,
            segment_names: Sequence[str] = ()) -> dict[str, Any]:
    """``rows``: results of several sessions on one course; ``tags``: each session's tags. Per
    segment, setup A (``tag=a``) against B (``tag=b``)."""
    runs: dict[int, list[Run]] = defaultdict(list)
    for r in rows:
        value = (tags.get(rider_key(r["session_id"], r["rider_id"])) or tags.get(r["session_id"]) or {}).get(tag)
        if value not in (a, b) or r.get("segment") is None or "withdrawn" in (r.get("flags") or ()):
            continue
        runs[int(r["segment"])].append(Run(r["rider_id"], int(r["segment"]), "a" if value == a else "b",
                                           float(r["duration"]), r.get("power_avg"), float(r.get("start") or 0.0),
                                           str(r["session_id"]), int(r.get("lap") or 0)))
    segments = []
    for seg, items in sorted(runs.items()):
        name = segment_names[seg - 1] if 0 < seg <= len(segment_names) else f"segment {seg}"
        segments.append({"segment": seg, "segment_name": name, **compare_segment(items, a, b, seed=seg)})
    return {"tag": tag, "a": a, "b": b, "segments": segments, "min_runs": MIN_RUNS,
            "model": "log(time) = rider + b log(power) + c hours into the session + d setup, within riders",
            "sessions_a": sorted({s.split(RIDER_SEP)[0] for s, t in tags.items() if t.get(tag) == a}),
            "sessions_b": sorted({s.split(RIDER_SEP)[0] for s, t in tags.items() if t.get(tag) == b})}


RIDER_SEP = "\x1f"  # in no session or rider id


def rider_key(session: str, rider: str) -> str:
    """The key of one rider's own tags in a session (a planned test's run) among the sessions' tags."""
    return f"{session}{RIDER_SEP}{rider}"


def tag_values(tags: Mapping[str, Mapping[str, str]]) -> dict[str, list[str]]:
    """Every tag name with the values sessions gave it (a comparison needs two)."""
    out: dict[str, set[str]] = defaultdict(set)
    for t in tags.values():
        for k, v in t.items():
            out[k].add(v)
    return {k: sorted(v) for k, v in sorted(out.items())}
