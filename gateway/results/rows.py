"""The rows the page, the API, exports and the debrief show, built from typed results and their
scores: a result's fields, the seed's chart data keys, and its z-scores (None where undefined)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from gateway.engine.normalize import Scores, score
from gateway.model import SegmentResult

FIELDS = tuple(SegmentResult.__dataclass_fields__)  # session_id first, then as the segments topic has them


def scored_row(scores: Scores, i: int) -> dict[str, Any]:
    """Target ``i`` of ``scores`` as a row."""
    r = scores.targets[i]
    row: dict[str, Any] = {name: getattr(r, name) for name in FIELDS}
    row["flags"] = list(r.flags)
    row["time_absolute"] = r.duration
    row["power_absolute"] = r.power_avg
    row["watts_per_kilo"] = r.watts_per_kg
    row["power_partial"] = scores.partial(i)
    for key, column in scores.columns.items():
        value = float(column[i])
        row[key] = None if math.isnan(value) else value
    return row


def annotate(targets: Sequence[SegmentResult], population: Iterable[SegmentResult],
             min_coverage: float) -> list[dict[str, Any]]:
    """Each target as a row, scored against ``population`` (see ``engine.normalize.score``)."""
    scores = score(targets, population, min_coverage)
    return [scored_row(scores, i) for i in range(len(targets))]
