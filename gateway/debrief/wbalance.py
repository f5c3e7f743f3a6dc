"""W' through a session for one rider, next to NP: critical power and W' from the rider's history
on this store (the box's sessions, or every box's at the hub), then W' balance second by second
(Skiba's integral form, and the differential form beside it) and what each lap and segment cost.
FTP stays what the coach sets; CP is measured."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from gateway.engine.metrics import resample_1hz
from gateway.engine.wprime import (
    CP_DURATIONS_S,
    best_efforts,
    critical_power,
    w_prime_balance_differential,
    w_prime_balance_integral,
)
from gateway.errors import NotFound
from gateway.results.store import ResultsStore

HISTORY = 30  # the rider's newest sessions the best efforts come from


def _series(times: list[float], watts: list[float]) -> tuple[float, np.ndarray]:
    """1 Hz power from the first sample (a dropout longer than the metrics' gap is NaN, then 0)."""
    t0 = times[0]
    return t0, np.nan_to_num(resample_1hz(times, watts, t0, times[-1] + 1.0))


def history(store: ResultsStore, rider: str) -> tuple[dict[int, float], list[str]]:
    """The rider's best efforts of 3 to 20 minutes over their newest sessions, and the sessions."""
    efforts: dict[int, float] = {}
    used = []
    for session in store.rider_sessions(rider)[-HISTORY:]:
        times, watts = store.rider_power(session, rider)
        if len(times) < 2 or times[-1] - times[0] < min(CP_DURATIONS_S):
            continue
        for seconds, power in best_efforts(_series(times, watts)[1]).items():
            efforts[seconds] = max(power, efforts.get(seconds, 0.0))
        used.append(session)
    return efforts, used


def w_balance(store: ResultsStore, session: str, rider: str) -> dict[str, Any]:
    efforts, used = history(store, rider)
    fitted = critical_power(efforts)
    out: dict[str, Any] = {"session": session, "rider": rider, "efforts": efforts, "sessions_used": len(used),
                           "cp_w": None, "w_prime_j": None, "laps": [], "segments": []}
    if fitted is None:
        out["reason"] = ("not enough history for critical power: it needs best efforts of at least two "
                         "durations from 3 to 20 minutes in this rider's sessions")
        return out
    cp, w_prime = fitted
    out.update(cp_w=round(cp, 1), w_prime_j=round(w_prime))
    times, watts = store.rider_power(session, rider)
    if len(times) < 2:
        raise NotFound(f"no power of {rider!r} in session {session!r}", where="W' balance")
    t0, power = _series(times, watts)
    integral = w_prime_balance_integral(power, cp, w_prime)
    differential = w_prime_balance_differential(power, cp, w_prime)
    laps: dict[int, list[Any]] = defaultdict(list)
    for r in store.results([session]):
        if r.rider_id != rider:
            continue
        lo, hi = max(0, int(r.start - t0)), min(power.size, int(r.end - t0))
        if hi <= lo:
            continue
        laps[r.lap].append((lo, hi))
        out["segments"].append({"number": r.number, "lap": r.lap, "segment": r.segment,
                                "w_bal_end_j": round(float(integral[hi - 1])),
                                "spent_j": round(float(np.sum(np.maximum(power[lo:hi] - cp, 0.0))))})
    for lap, spans in sorted(laps.items()):
        lo, hi = min(a for a, _ in spans), max(b for _, b in spans)
        out["laps"].append({"lap": lap, "spent_j": round(float(np.sum(np.maximum(power[lo:hi] - cp, 0.0)))),
                            "lowest_j": round(float(integral[lo:hi].min())),
                            "lowest_pct": round(100 * float(integral[lo:hi].min()) / w_prime, 1),
                            "lowest_differential_j": round(float(differential[lo:hi].min()))})
    # W' balance under 0: the rider did more above CP than the history's CP and W' allow (more
    # sessions with hard 3-20 minute efforts give a truer pair).
    out["beyond_history"] = any(lap["lowest_j"] < 0 for lap in out["laps"])
    return out
