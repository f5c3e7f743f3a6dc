"""W' (the work a rider can do above critical power) and critical power, as sports scientists
read them next to NP. Pure functions over 1 Hz power.

- W' balance, integral form (Skiba et al. 2012): W'bal(t) = W' - sum over u <= t of the work above
  CP at u, each recovered with time constant tau = 546 exp(-0.01 (CP - mean power below CP)) + 316
  seconds; computed by the recursion S(t) = S(t-1) exp(-1/tau) + max(0, P(t) - CP) (the sum in one
  pass, as Waterworth rewrote it).
- W' balance, differential form (Skiba et al. 2015): above CP W'bal falls by P - CP each second;
  below, it recovers by (CP - P)(W' - W'bal)/W'.
- Critical power and W' from best efforts (the 2-parameter model P = CP + W'/t): the work of each
  best effort against its duration is a line, work = CP t + W'.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]
CP_DURATIONS_S = (180, 300, 480, 720, 1200)  # best efforts the 2-parameter model is fitted on (3-20 min)


def tau_s(power: Array, cp: float) -> float:
    """Skiba's recovery time constant: from how far below CP the rider recovered, on average."""
    below = power[power < cp]
    mean_below = float(below.mean()) if below.size else 0.0
    return 546.0 * math.exp(-0.01 * (cp - mean_below)) + 316.0


def w_prime_balance_integral(power: Sequence[float] | Array, cp: float, w_prime: float,
                             tau: float | None = None) -> Array:
    p = np.nan_to_num(np.asarray(power, dtype=np.float64))
    decay = math.exp(-1.0 / (tau_s(p, cp) if tau is None else tau))
    out = np.empty(p.size)
    spent = 0.0
    for i, above in enumerate(np.maximum(p - cp, 0.0)):
        spent = spent * decay + float(above)
        out[i] = w_prime - spent
    return out


def w_prime_balance_differential(power: Sequence[float] | Array, cp: float, w_prime: float) -> Array:
    p = np.nan_to_num(np.asarray(power, dtype=np.float64))
    out = np.empty(p.size)
    bal = w_prime
    for i, watts in enumerate(p):
        bal = bal + (cp - watts) * (w_prime - bal) / w_prime if watts < cp else bal - (watts - cp)
        out[i] = bal
    return out


def best_efforts(power: Sequence[float] | Array, durations: Sequence[int] = CP_DURATIONS_S) -> dict[int, float]:
    """The highest mean power over each duration (seconds of a 1 Hz series; gaps as zero)."""
    p = np.nan_to_num(np.asarray(power, dtype=np.float64))
    sums = np.concatenate(([0.0], np.cumsum(p)))
    return {d: float(np.max(sums[d:] - sums[:-d]) / d) for d in durations if p.size >= d}


def critical_power(efforts: dict[int, float]) -> tuple[float, float] | None:
    """(CP in W, W' in J) from best efforts {seconds: watts}: the line work = CP t + W' (None with
    fewer than two durations, or a fit no physiology gives: CP outside 50-1000 W or W' under 0)."""
    if len(efforts) < 2:
        return None
    t = np.array(sorted(efforts), dtype=np.float64)
    work = np.array([efforts[int(d)] * d for d in t])
    cp, w_prime = np.polyfit(t, work, 1)
    if not 50.0 <= cp <= 1000.0 or w_prime < 0:
        return None
    return float(cp), float(w_prime)
