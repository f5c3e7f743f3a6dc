"""Planning an equipment test so that its answer cannot be fatigue's: each rider alternates the two
setups in ABBA blocks (so the setups' mean place in the session is the same), half the riders start
with the other setup (BAAB), and the number of runs comes from the noise this squad's history shows
on the course (how many runs a 2 % difference needs to be seen 8 times in 10)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gateway.debrief.compare import MIN_RUNS, PLANNED_PCT, Z_SURE, within_riders


def balanced_order(riders: Sequence[str], a: str, b: str, runs: int) -> dict[str, list[str]]:
    """Each rider's setups run by run: ABBA blocks, every other rider starting with B (BAAB); an odd
    last run is dropped (it would tip the balance) unless fewer than four runs were asked for."""
    runs = max(2, runs - runs % 2)
    block = [a, b, b, a]
    out = {}
    for i, rider in enumerate(riders):
        order = [block[k % 4] for k in range(runs)]
        out[rider] = order if i % 2 == 0 else [b if s == a else a for s in order]
    return out


def squad_noise(rows: Sequence[Mapping[str, Any]]) -> float | None:
    """The run-to-run scatter of segment times (a log-time standard deviation) in this squad's
    results on the course, power and lap accounted for within riders and segments; pooled."""
    by: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        if r.get("segment") is not None and r.get("power_avg") and float(r["power_avg"]) > 0 and r.get("duration"):
            by[int(r["segment"])].append(r)
    squares, free = 0.0, 0
    for items in by.values():
        riders = np.array([f"{r['rider_id']}|{r['session_id']}" for r in items])
        x = np.array([[math.log(float(r["power_avg"])), float(r.get("lap") or 0)] for r in items])
        y = np.array([math.log(float(r["duration"])) for r in items])
        done = within_riders(x, y, riders)
        if done is None or not math.isfinite(done[1]):
            continue
        dof = len(items) - len(set(riders.tolist())) - 2
        squares += done[1] ** 2 * dof
        free += dof
    return math.sqrt(squares / free) if free > 0 else None


def plan(riders: Sequence[str], a: str, b: str, runs: int, history: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The proposed order, and what the squad's noise says about the number of runs."""
    order = balanced_order(riders, a, b, runs)
    sigma = squad_noise(history)
    out: dict[str, Any] = {"order": order, "runs": len(next(iter(order.values()), [])), "noise_pct": None,
                           "runs_needed_for_2pct": None, "detectable_pct": None}
    if sigma is None or not riders:
        out["note"] = "No history on this course with power yet: the noise, and so the runs needed, is unknown."
        return out
    per_setup = out["runs"] // 2
    needed = max(MIN_RUNS, math.ceil(2.0 * (Z_SURE * sigma / math.log1p(PLANNED_PCT / 100)) ** 2 / len(riders)))
    detectable = 100 * (math.exp(Z_SURE * sigma * math.sqrt(2.0 / (per_setup * len(riders)))) - 1)
    out.update(noise_pct=round(100 * sigma, 2), runs_needed_for_2pct=needed, detectable_pct=round(detectable, 2),
               note=f"With this squad's noise ({100 * sigma:.1f} % of a segment's time, run to run), a 2 % "
                    f"difference needs {needed} runs of each setup per rider; this plan could see about "
                    f"{detectable:.1f} %.")
    return out
