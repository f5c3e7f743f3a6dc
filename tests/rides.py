"""A session one box heard of a real ride (for the tests of completing sessions with riders' files,
#31): the ride's FIT file, what a box beside the start/finish heard of it (the first 10 % of each
lap, on a clock 37 s off the head unit's and drifting 30 ppm), and the crossings of its laps."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from harness import DATA

from gateway import config
from gateway.config import riders
from gateway.engine.course import Course
from gateway.engine.segments import RiderInfo, SegmentEngine
from gateway.model import GateCrossing, PowerSample, SegmentResult
from gateway.pipeline.build import build
from gateway.readers.fit import read_fit
from gateway.spool.store import Spool

FILE = DATA / "fit" / "Edge810-Vector-2013-08-16-15-35-10.fit"
OFFSET_S, DRIFT = 37.0, 30e-6
# A head unit marks a lap at a whole second; the chip crossed the line somewhere in that second.
CROSSED_S = 0.37
RIDER = [{"id": "r1", "name": "Vera Vector", "ftp_w": 315, "weight_kg": 70}]


def box_clock(t: np.ndarray, t0: float) -> np.ndarray:
    return t + OFFSET_S + DRIFT * (t - t0)


def live_session(spool: Spool, file: Path, rider: str = "r1", power_from: Path | None = None) -> str:
    """What one box beside the start/finish heard: the first 10 % of each lap, and the gates."""
    ride = read_fit(file)
    source = read_fit(power_from) if power_from else ride
    t0 = float(ride.times[0])
    laps = [lap.start for lap in ride.laps] + [ride.end]
    settings = config.load(None).settings
    pipeline = build(settings, spool, "live-1", riders=riders(RIDER), gates=["SF"], replay=True).start()
    pipeline.publish("live", started=float(box_clock(np.array([t0]), t0)[0]))
    events: list[PowerSample | GateCrossing] = []
    for start, end in itertools.pairwise(laps):
        heard = (ride.times >= start) & (ride.times < start + 0.1 * (end - start))
        t = box_clock(ride.times[heard], t0)
        p = np.interp(ride.times[heard], source.times, np.nan_to_num(source.power)) if power_from else ride.power[heard]
        events += [PowerSample("replay:box", rider, float(a), float(b), 85.0) for a, b in zip(t, p, strict=True)
                   if not np.isnan(b)]
    events += [GateCrossing("replay:gates", rider, "SF", float(box_clock(np.array([x + CROSSED_S]), t0)[0]))
               for x in laps]
    events.sort(key=lambda e: e.wall_time)
    pipeline.ingest.submit_many(events)
    pipeline.finish()
    return "live-1"


def truth(file: Path) -> dict[str, SegmentResult]:
    """Each lap's result from the whole file on the box's clock."""
    ride = read_fit(file)
    t0 = float(ride.times[0])
    engine = SegmentEngine(Course(("SF",)), {"r1": RiderInfo("r1", "Vera Vector", 315, 70)}, "truth")
    out = []
    for lap in [lap.start for lap in ride.laps] + [ride.end]:
        out += engine.add_crossing("r1", "SF", float(box_clock(np.array([lap + CROSSED_S]), t0)[0]))
    out += engine.add_power_run("r1", list(box_clock(ride.times, t0)), list(ride.power), list(ride.cadence))
    return {r.number: r for r in out + engine.flush()}




def write_axiamo(path: Path, times: list[float], power: list[float], cadence: list[float]) -> Path:
    """A rider's recording as an Axiamo Excel export (the seed system's logger): what a head unit
    would give, where a FIT file cannot be written."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    book.create_sheet("Segments").append(["Number", "StartTime", "Duration"])
    sheet = book.create_sheet("PowerData")
    sheet.append(["Frame", "WallTime", "InstantPower", "Cadence"])
    for i, (t, p, c) in enumerate(zip(times, power, cadence, strict=True)):
        sheet.append([i, t, p, c])
    book.save(path)
    return path
