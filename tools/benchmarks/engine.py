"""The engine's speed: one segment's metrics, and re-scoring a whole session after a new result."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np

from gateway.engine.metrics import Stretch, power_metrics
from gateway.engine.normalize import score
from gateway.model import SegmentResult
from gateway.results.rows import annotate


def _median_time(func: Callable[[], object], repeat: int) -> float:
    func()  # warm-up: imports, caches
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def segment_metrics_10min_4hz() -> dict[str, object]:
    rng = np.random.default_rng(0)
    t = np.arange(0, 600, 0.25)
    p = rng.normal(260, 60, t.size).clip(0)
    c = rng.normal(85, 6, t.size)
    seconds = _median_time(lambda: power_metrics(Stretch(t, p, c, 0.0, 600.0), ftp_w=250.0, weight_kg=60.0), 500)
    us = seconds * 1e6
    return {"value": round(us, 1), "unit": "us", "target": "< 1000 us", "ok": us < 1000, "samples": int(t.size)}


def rescore_session_100x50() -> dict[str, object]:
    results = _session(np.random.default_rng(0))
    seconds = _median_time(lambda: score(results, results, 0.8), 30)
    ms = seconds * 1e3
    return {"value": round(ms, 2), "unit": "ms", "target": "< 20 ms", "ok": ms < 20, "results": len(results)}


def _session(rng: np.random.Generator) -> list[SegmentResult]:
    """100 riders x 50 segments: two laps of a 25-segment course, so 25 pieces of terrain of 200 results."""
    return [
        SegmentResult("s1", f"r{r:03d}", f"Rider {r}", f"{lap}.{seg}", lap, seg, 0.0, 0.0,
                      float(rng.normal(60 + seg, 5)), "A", "B", float(rng.normal(250, 30)), 85.0, 260.0,
                      0.9, 1.0, 4.0, 240, 1.0)
        for r in range(100) for lap, seg in ((1 + i // 25, 1 + i % 25) for i in range(50))
    ]


def rescore_session_100x50_as_rows() -> dict[str, object]:
    """The same, plus building every result's JSON-ready dict (what a full page refresh costs)."""
    rng = np.random.default_rng(0)
    results = _session(rng)
    ms = _median_time(lambda: annotate(results, results, 0.8), 10) * 1e3
    return {"value": round(ms, 2), "unit": "ms", "results": len(results)}


BENCHMARKS = [
    ("engine.segment_metrics_10min_4hz", segment_metrics_10min_4hz),
    ("engine.rescore_session_100_riders_x_50", rescore_session_100x50),
    ("engine.rescore_session_100x50_as_json_rows", rescore_session_100x50_as_rows),
]
