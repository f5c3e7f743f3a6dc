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

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from statistics import median

from gateway.model import SegmentResult

MODIFIED_Z_K = 0.6745
MEAN_AD_K = 1.253314
OUTLIER_MODIFIED_Z = 3.5

QUADRANTS = ("efficient", "strong", "costly", "easy")

NAN = math.nan


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
        x = [float(v) for v in values]
        if not x:
            return cls(0, NAN, NAN, NAN, NAN, NAN)
        n = len(x)
        mean = math.fsum(x) / n
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in x) / n)  # the population's (ddof 0)
        med = median(x)
        dev = [abs(v - med) for v in x]
        return cls(n, mean, std, med, median(dev), math.fsum(dev) / n)

    def z_of(self, x: float) -> float:
        """The z-score of ``x`` (NaN where undefined: fewer than 2 values or no spread)."""
        if self.n < 2 or not self.std > 0:
            return NAN
        return (x - self.mean) / self.std

    def modified_z_of(self, x: float) -> float:
        """The modified z-score of ``x`` (NaN where undefined: fewer than 3 values or no spread)."""
        if self.n < 3:
            return NAN
        if self.mad > 0:
            return MODIFIED_Z_K * (x - self.median) / self.mad
        if self.mean_ad > 0:
            # More than half the values equal the median: fall back on the mean absolute deviation.
            return (x - self.median) / (MEAN_AD_K * self.mean_ad)
        return NAN

    def z(self, x: float | None) -> float | None:
        return None if x is None else _defined(self.z_of(x))

    def modified_z(self, x: float | None) -> float | None:
        return None if x is None else _defined(self.modified_z_of(x))


def _defined(value: float) -> float | None:
    return None if math.isnan(value) else value


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


@dataclass
class Scores:
    """Every z-score of ``targets`` as columns (NaN = undefined); rows are built by the results layer
    (``gateway.results.rows``)."""

    targets: Sequence[SegmentResult]
    columns: dict[str, list[float]]
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
    pop = list(population)
    columns: dict[str, list[float]] = {}
    for metric, get in _METRICS.items():
        groups: dict[int, list[float]] = {}
        for r in pop:
            value, seg = get(r), r.segment
            if seg is not None and value is not None and value == value and (
                    metric == "time" or r.coverage >= min_coverage):
                groups.setdefault(seg, []).append(value)
        spreads = {seg: Spread.of(values) for seg, values in groups.items()}
        z = [NAN] * len(targets)
        mz = [NAN] * len(targets)
        for i, r in enumerate(targets):
            x = get(r)
            spread = spreads.get(r.segment) if r.segment is not None else None
            if spread is not None and x is not None and x == x:
                z[i] = spread.z_of(x)
                mz[i] = spread.modified_z_of(x)
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
