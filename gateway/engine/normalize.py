"""z-scores, modified z-scores and quadrants of segment results over a chosen population.

The population of a result is every result on the same piece of terrain (the same course
segment: segment 3 of every lap) among the chosen results: the current session by default, or a
list of sessions, a squad, or one rider's history. Undefined cases are None, never an error:
plain z needs 2 values with spread; the modified z needs 3 values with spread.

A result whose power was heard for only part of its segment (``coverage`` below the caller's
threshold, ``metrics.min_coverage``) stays out of the power populations: an average of the few
seconds a box heard says little of the segment, and must not move anyone else's score. It is still
scored itself (and shown as partial), and its time, which the gates give whole, counts as any.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gateway.model import SegmentResult

MODIFIED_Z_K = 0.6745
MEAN_AD_K = 1.253314
OUTLIER_MODIFIED_Z = 3.5

QUADRANTS = ("efficient", "strong", "costly", "easy")


@dataclass(frozen=True)
class Spread:
    """The statistics of one population of values that z-scores need."""

    n: int
    mean: float
    std: float
    median: float
    mad: float
    mean_ad: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        x = np.asarray(values, dtype=np.float64)
        if x.size == 0:
            return cls(0, np.nan, np.nan, np.nan, np.nan, np.nan)
        med = float(np.median(x))
        dev = np.abs(x - med)
        return cls(int(x.size), float(x.mean()), float(x.std()), med, float(np.median(dev)), float(dev.mean()))

    def z_of(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """The z-score of each value (NaN where undefined: fewer than 2 values or no spread)."""
        if self.n < 2 or not self.std > 0:
            return np.full(np.shape(x), np.nan)
        return (x - self.mean) / self.std

    def modified_z_of(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """The modified z-score of each value (NaN where undefined: fewer than 3 values or no spread)."""
        if self.n < 3:
            return np.full(np.shape(x), np.nan)
        if self.mad > 0:
            return MODIFIED_Z_K * (x - self.median) / self.mad
        if self.mean_ad > 0:
            # More than half the values equal the median: fall back on the mean absolute deviation.
            return (x - self.median) / (MEAN_AD_K * self.mean_ad)
        return np.full(np.shape(x), np.nan)

    def z(self, x: float | None) -> float | None:
        return None if x is None else _defined(float(self.z_of(np.array([x]))[0]))

    def modified_z(self, x: float | None) -> float | None:
        return None if x is None else _defined(float(self.modified_z_of(np.array([x]))[0]))


def _defined(value: float) -> float | None:
    return None if np.isnan(value) else value


@dataclass(frozen=True)
class Population:
    """Which results form the population: all filters given must hold (None = no filter).

    ``course`` keeps a population across sessions on one course (terrain is only comparable on the
    same course); ``since`` and ``until`` bound the results' end times (unix seconds). ``rider_of``
    is the session whose rider book ``rider_id`` is from: the hub finds that person on every box.
    """

    sessions: frozenset[str] | None = None
    squad: str | None = None
    rider_id: str | None = None
    course: str | None = None
    since: float | None = None
    until: float | None = None
    rider_of: str | None = None

    def admits(self, result: SegmentResult, squad_of: Callable[[str], str | None]) -> bool:
        if self.sessions is not None and result.session_id not in self.sessions:
            return False
        if self.squad is not None and squad_of(result.rider_id) != self.squad:
            return False
        if self.since is not None and result.end < self.since:
            return False
        if self.until is not None and result.end >= self.until:
            return False
        return self.rider_id is None or result.rider_id == self.rider_id


# metric -> how a result yields it
_METRICS: dict[str, Callable[[SegmentResult], float | None]] = {
    "time": lambda r: r.duration,
    "power": lambda r: r.power_avg,
}


def _column(results: Sequence[SegmentResult], get: Callable[[SegmentResult], float | None]) -> np.ndarray:
    return np.array([np.nan if (v := get(r)) is None else v for r in results], dtype=np.float64)


def _segments(results: Sequence[SegmentResult]) -> np.ndarray:
    return np.array([-1 if r.segment is None else r.segment for r in results], dtype=np.int64)


@dataclass
class Scores:
    """Every z-score of ``targets`` as columns (NaN = undefined); rows are built by the results layer
    (``gateway.results.rows``)."""

    targets: Sequence[SegmentResult]
    columns: dict[str, np.ndarray]
    min_coverage: float

    def partial(self, i: int) -> bool:
        """Whether target ``i``'s power was heard too little to join a power population."""
        r = self.targets[i]
        return r.power_avg is not None and r.coverage < self.min_coverage


def score(targets: Sequence[SegmentResult], population: Iterable[SegmentResult], min_coverage: float) -> Scores:
    """z and modified z of time and power for each target, against ``population`` per course segment
    (its power values only from results heard for at least ``min_coverage`` of their seconds).

    The population is grouped by course segment; a target is scored against its segment's group
    (whether or not the target is itself in it, so a rider can be held against a squad or their
    own history). Spans over missed gates have no segment: their scores are undefined.
    """
    pop = [r for r in population if r.segment is not None]
    pop_seg = _segments(pop)
    tgt_seg = _segments(targets)
    heard = np.array([r.coverage >= min_coverage for r in pop], dtype=bool)
    columns: dict[str, np.ndarray] = {}
    for metric, get in _METRICS.items():
        values = _column(pop, get)
        if metric != "time":
            values[~heard] = np.nan
        x = _column(targets, get)
        spreads = {int(seg): Spread.of(values[(pop_seg == seg) & ~np.isnan(values)]) for seg in np.unique(pop_seg)}
        z = np.full(len(targets), np.nan)
        mz = np.full(len(targets), np.nan)
        for seg, spread in spreads.items():
            rows = np.flatnonzero((tgt_seg == seg) & ~np.isnan(x))
            if rows.size:
                z[rows] = spread.z_of(x[rows])
                mz[rows] = spread.modified_z_of(x[rows])
        columns[f"{metric}_zscore"] = z
        columns[f"{metric}_modified_zscore"] = mz
    return Scores(targets, columns, min_coverage)


def quadrant(x: float | None, y: float | None) -> str | None:
    """Where a point lies on an efficiency matrix (x: time score, negative = faster; y: power score).

    Faster with less power = efficient; faster with more = strong; slower with more = costly;
    slower with less = easy. On an axis (exactly 0) or without a score: None.
    """
    if x is None or y is None or x == 0 or y == 0:
        return None
    if x < 0:
        return "efficient" if y < 0 else "strong"
    return "costly" if y > 0 else "easy"
