"""Long runs of one meter's power samples, handled as columns instead of one sample at a time.

A replay at full speed hands ingest thousands of samples a second per meter; the live box hands it
four. A batch's samples are grouped by meter, and a meter's run long enough to pay for the set-up
(``RUN_MIN``) is checked, averaged and stored as columns: the plausible ranges and the 30 s
rolling mean in NumPy, the messages built in one go (``wire.Encoder.power_run``), one spool row
and one accepted record for the run (``PowerRun``). A run that is not plain (a value out of
range, time going backwards) goes the one-sample way, which says what is wrong with each sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from gateway.model import GateCrossing, PowerSample, SegmentResult, SessionRecord

if TYPE_CHECKING:
    import numpy as np

Event = PowerSample | GateCrossing | SegmentResult | SessionRecord

# Samples of one meter in one commit. Measured here (a commit of one meter's samples, spool included):
# 32 cost 8.9 us a sample as a run against 7.1 one by one, 64 cost 5.1 against 5.5, 128 3.2 against 4.7.
RUN_MIN = 64


class PowerRun(NamedTuple):
    """Power samples of one meter committed together, times non-decreasing (what subscribers get in
    place of as many ``PowerSample``), as arrays; ``cadences`` hold NaN where a sample had none."""

    source: str
    sensor: str
    walls: np.ndarray
    powers: np.ndarray
    cadences: np.ndarray

    def __repr__(self) -> str:  # a log line names the run, not its hundreds of numbers
        n = len(self.walls)
        span = f" from {self.walls[0]:.3f} to {self.walls[-1]:.3f}" if n else ""
        return f"PowerRun({self.source} {self.sensor}: {n} samples{span})"


class Columns(NamedTuple):
    """A run's samples as columns (the samples' own values, for the messages) and as arrays."""

    walls: tuple[float, ...]
    powers: tuple[float, ...]
    cadences: tuple[float | None, ...]
    torques: tuple[float | None, ...]
    t: np.ndarray
    p: np.ndarray
    c: np.ndarray  # NaN for a missing cadence


def by_meter(batch: Sequence[Event], minimum: int = RUN_MIN) -> tuple[list[list[PowerSample]], list[Event]]:
    """The batch's runs of one meter, at least ``minimum`` samples each, in order; and the rest of the
    batch (crossings, results, other meters' samples) in its order."""
    groups: dict[tuple[str, str], list[PowerSample]] = {}
    others: list[Event] = []
    for ev in batch:
        if type(ev) is PowerSample and ev[6] is None:  # a sample with a radio identity keeps it: one by one
            key = (ev[0], ev[1])
            group = groups.get(key)
            if group is None:
                groups[key] = [ev]
            else:
                group.append(ev)
        else:
            others.append(ev)
    runs = [group for group in groups.values() if len(group) >= minimum]
    if len(runs) < len(groups):
        short = {key for key, group in groups.items() if len(group) < minimum}
        others = [ev for ev in batch if type(ev) is not PowerSample or ev[6] is not None or (ev[0], ev[1]) in short]
    return runs, others


def columns(samples: Sequence[PowerSample], ranges: tuple[float, ...]) -> Columns | None:
    """The run's columns, or None when a value is outside ``ranges`` (power, cadence, torque: low,
    high each; its times are checked with the window's, by ``rolling_means``)."""
    import numpy as np  # here: only a replay hands over runs, and the live box need not carry NumPy

    _, _, walls, powers, cadences, torques, _ = zip(*samples, strict=True)
    t = np.array(walls, dtype=np.float64)
    p = np.array(powers, dtype=np.float64)
    c = np.array(cadences, dtype=np.float64)  # None becomes NaN
    q = np.array(torques, dtype=np.float64)
    p_lo, p_hi, c_lo, c_hi, t_lo, t_hi = ranges
    c_none = np.isnan(c)
    q_none = np.isnan(q)
    if not ((p >= p_lo) & (p <= p_hi) & (c_none | ((c >= c_lo) & (c <= c_hi)))
            & (q_none | ((q >= t_lo) & (q <= t_hi)))).all():
        return None
    # A NaN the meter sent is implausible; a cadence or torque it did not send is not.
    cadence_missing = bool(c_none.any())
    if (cadence_missing and int(c_none.sum()) != cadences.count(None)) \
            or (q_none.any() and int(q_none.sum()) != torques.count(None)):
        return None
    return Columns(walls, powers, cadences, torques, t, p, c)


def rolling_means(prior_t: Sequence[float], prior_p: Sequence[float], t: np.ndarray, p: np.ndarray,
                  span_s: float) -> tuple[list[float], list[float], list[float]] | None:
    """The mean power over the ``span_s`` seconds up to each sample (the samples after ``now - span_s``),
    continuing a window that held ``prior_t``/``prior_p``; returns the means and what the window holds
    after the run (its times, its powers). None when the window's times and the run's are not in
    order: the one-sample way keeps the window as samples came."""
    import numpy as np

    all_t = np.concatenate((np.asarray(prior_t, dtype=np.float64), t))
    if bool((np.diff(all_t) < 0).any()):
        return None
    all_p = np.concatenate((np.asarray(prior_p, dtype=np.float64), p))
    sums = np.concatenate(((0.0,), np.cumsum(all_p)))
    ends = np.arange(len(prior_t) + 1, len(all_t) + 1)
    starts = np.searchsorted(all_t, all_t[ends - 1] - span_s, side="right")
    means = (sums[ends] - sums[starts]) / (ends - starts)
    keep = int(starts[-1])
    return means.tolist(), all_t[keep:].tolist(), all_p[keep:].tolist()
