"""The hub's course engine (``hub.course``, #30), without a broker or a database: the work of
merging boxes' pages, placing them on one timeline and computing course results.

- ``course.live``: 3 boxes each hearing 100 riders' meters at 4 Hz the whole time (the worst case:
  every box hears every rider; 1 200 pages a second), delivered in one-second batches and settled
  after each, as the hub's course thread does. The figure is the CPU time per second of riding:
  the share of one core it needs (target: under a quarter).
- ``course.late_box``: two boxes delivered through an hour of 100 riders, then the third box's
  whole hour at once (it reached the uplink after the session): the time to take its pages and
  settle every result they touch (target: under 60 s).

Sizes: BENCH_COURSE_RIDERS (100), BENCH_COURSE_LIVE_S (600 s of riding), BENCH_COURSE_LATE_S
(3 600 s). The rides come from the course simulator (``gateway.simulate``), its clocks seconds
apart and 40 ppm off.
"""

from __future__ import annotations

import heapq
import os
import resource
import time
from typing import Any

from gateway.engine.course import Course
from gateway.engine.segments import RiderInfo
from gateway.hub.course import CourseSession
from gateway.simulate.ride import RECEIVER_LATENCY_S, Session, simulate
from gateway.simulate.world import BoxClock, Gate, SimBox, SimCourse, SimRider, World

RIDERS = int(os.environ.get("BENCH_COURSE_RIDERS", "100"))
LIVE_S = float(os.environ.get("BENCH_COURSE_LIVE_S", "600"))
LATE_S = float(os.environ.get("BENCH_COURSE_LATE_S", "3600"))
LAP = SimCourse(1200.0, (Gate("SF", 0.0), Gate("G1", 400.0), Gate("G2", 800.0)), ("climb", "flat", "descent"))
# Every box in range of the whole lap: each hears every rider, every page (the heaviest load).
BOXES = (SimBox("box-1", 0.0, 700.0, ("SF",), BoxClock(0.0, 0.0, 5.0), reception=1.0),
         SimBox("box-2", 400.0, 700.0, ("G1",), BoxClock(2.4, 40.0, 5.0), reception=1.0),
         SimBox("box-3", 800.0, 700.0, ("G2",), BoxClock(-3.1, -35.0, 5.0), reception=1.0))


def _world(seconds: float) -> Session:
    riders = tuple(SimRider(f"r{i:03d}", f"Rider {i}", 220.0 + (i % 40) * 3, 20000 + i, f"C-{i}", start_s=2.0 * i)
                   for i in range(RIDERS))
    lap_s = 1200.0 / (20 / 3.6)  # about four minutes a lap
    return simulate(World(LAP, riders, BOXES, laps=max(1, round(seconds / lap_s))), seed=7)


def _hub(session: Session) -> CourseSession:
    infos = {r.rider_id: RiderInfo(r.rider_id, r.name, r.ftp_w, 65.0) for r in session.world.riders}
    return CourseSession("bench", Course(tuple(g.id for g in LAP.gates)), infos, receiver_latency_s=RECEIVER_LATENCY_S)


def _rows(session: Session, boxes: set[str]) -> list[tuple[float, str, Any]]:
    """The boxes' feeds as they would reach the hub: by box time, merged."""
    feeds = [[(h.box_t, box, h) for h in feed] for box, feed in session.feeds.items() if box in boxes]
    return list(heapq.merge(*feeds, key=lambda r: r[0]))


def _deliver(hub: CourseSession, rows: list[tuple[float, str, Any]], rider_of: dict[Any, str]) -> None:
    for _, box, h in rows:
        if h.kind == "ant":
            hub.add_page(box, rider_of[h.device], h.box_t, f"ant:{h.device}:{h.page.hex()}")
        else:
            hub.add_crossing(box, rider_of[h.transponder], h.gate, h.box_t, h.chip_t)


def _rider_of(session: Session) -> dict[Any, str]:
    riders = session.world.riders
    return {r.device: r.rider_id for r in riders} | {r.transponder: r.rider_id for r in riders}


def live() -> dict[str, object]:
    session = _world(LIVE_S)
    rows = _rows(session, {"box-1", "box-2", "box-3"})
    hub, rider_of = _hub(session), _rider_of(session)
    start, end = rows[0][0], rows[-1][0]
    cpu = time.process_time()
    written = i = 0
    second = start + 1.0
    while i < len(rows):
        j = i
        while j < len(rows) and rows[j][0] < second:
            j += 1
        _deliver(hub, rows[i:j], rider_of)
        written += len(hub.settle())
        i, second = j, second + 1.0
    written += len(hub.settle())
    used = time.process_time() - cpu
    share = used / (end - start)
    return {"value": round(share, 3), "unit": "core", "target": "< 0.25 core", "ok": share < 0.25,
            "pages_per_s": round(sum(1 for r in rows if r[2].kind == "ant") / (end - start)),
            "riding_s": round(end - start), "results": written, "cpu_s": round(used, 2)}


def late_box() -> dict[str, object]:
    session = _world(LATE_S)
    hub, rider_of = _hub(session), _rider_of(session)
    early = _rows(session, {"box-1", "box-2"})
    second = early[0][0] + 1.0
    batch: list[tuple[float, str, Any]] = []
    for row in early:  # the two boxes live, settled once a second of their times
        if row[0] >= second:
            _deliver(hub, batch, rider_of)
            hub.settle()
            batch, second = [], second + 1.0
        batch.append(row)
    _deliver(hub, batch, rider_of)
    hub.settle()
    late = _rows(session, {"box-3"})
    t0 = time.perf_counter()
    _deliver(hub, late, rider_of)
    changes = hub.settle()
    seconds = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"value": round(seconds, 1), "unit": "s", "target": "< 60 s", "ok": seconds < 60,
            "late_pages": sum(1 for r in late if r[2].kind == "ant"), "changes": len(changes),
            "peak_rss_mb": round(rss_mb)}


BENCHMARKS = [("course.live", live), ("course.late_box", late_box)]
