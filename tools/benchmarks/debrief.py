"""The debrief of a large session: 100 riders on a course of 10 segments ridden 5 laps (50 segment
results each, 5000 in all): the debrief API's work and the PDF report, against the issue's targets."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence
from typing import Any

from gateway import config
from gateway.engine.normalize import Population
from gateway.model import SegmentResult

RIDERS, SEGMENTS, LAPS = 100, 10, 5
SESSION = "bench-debrief"


class MemoryResults:
    """A ResultsStore over a list: what the box's spool or the hub's database would return."""

    def __init__(self, results: list[SegmentResult], record: dict[str, Any]) -> None:
        self._results = results
        self._record = record

    def sessions(self) -> list[dict[str, Any]]:
        return [{"session": SESSION, "results": len(self._results), "first": 0.0, "last": 0.0}]

    def results(self, sessions: Sequence[str]) -> list[SegmentResult]:
        return [r for r in self._results if r.session_id in sessions]

    def population(self, population: Population) -> list[SegmentResult]:
        return self._results

    def last_seq(self) -> int:
        return len(self._results)

    def results_since(self, seq: int) -> Iterator[tuple[int, SegmentResult]]:
        return iter(())

    def course(self, session: str) -> dict[str, Any] | None:
        return self._record["course"]

    def course_of(self, session: str) -> str | None:
        return "bench"

    def record(self, session: str) -> dict[str, Any] | None:
        return self._record

    def notes(self, session: str) -> list[dict[str, Any]]:
        return []


def _store() -> MemoryResults:
    rng = random.Random(5)
    results = []
    for rider in range(RIDERS):
        t = 1_790_000_000.0
        for lap in range(1, LAPS + 1):
            for seg in range(1, SEGMENTS + 1):
                duration = (60 + 10 * seg) * (1 + 0.01 * lap * rng.random()) * rng.uniform(0.95, 1.05)
                power = 250 * rng.uniform(0.8, 1.2)
                results.append(SegmentResult(SESSION, f"r{rider:03d}", f"Rider {rider:03d}", f"{lap}.{seg}", lap, seg,
                                             t, t + duration, duration, f"G{seg - 1}", f"G{seg}", power, 88.0,
                                             power * 1.03, power / 280, duration / 36, power / 65, int(duration * 4),
                                             1.0))
                t += duration
    course = {"id": "bench", "gates": [{"id": f"G{k}"} for k in range(SEGMENTS)],
              "segments": [{"name": f"Segment {k}", "terrain": "climb" if k % 2 else "descent"}
                           for k in range(1, SEGMENTS + 1)]}
    riders = [{"id": f"r{k:03d}", "name": f"Rider {k:03d}", "ftp_w": 280, "weight_kg": 65} for k in range(RIDERS)]
    return MemoryResults(results, {"name": "bench", "course": course, "riders": riders, "tags": {}})


def debrief_api() -> list[tuple[str, dict[str, object]]]:
    from gateway.debrief.report import build
    from gateway.debrief.view import debrief

    store = _store()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        debrief(store, SESSION, min_coverage=0.8)
        times.append(time.perf_counter() - t0)
    api_ms = 1000 * min(times)
    t0 = time.perf_counter()
    pdf = build(store, SESSION, config.load(None).settings)
    report_s = time.perf_counter() - t0
    return [
        ("debrief.api_100_riders_50_segments_ms", {"value": round(api_ms, 1), "unit": "ms", "target": "< 200 ms",
                                                   "ok": api_ms < 200}),
        ("debrief.report_100_riders_50_segments_s", {"value": round(report_s, 2), "unit": "s", "target": "< 10 s",
                                                     "ok": report_s < 10, "kb": len(pdf) // 1024}),
    ]


BENCHMARKS = [("debrief", debrief_api)]
