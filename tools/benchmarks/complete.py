"""Completing a session with the riders' files (``pipeline.completion``, #31): six riders' one-hour
recordings added at once to a session whose box heard 10 % of each lap, on a real spool. The
recordings are one-hour stretches of real rides (tests/data/fit), each rider's from a different
ride or a different hour, written as Axiamo exports (a head unit's FIT file cannot be written
here); the figure is the wall time of the whole add: reading, matching, aligning, filling, writing
the samples and computing and writing every corrected result.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from gateway import config
from gateway.config import riders
from gateway.model import GateCrossing, PowerSample
from gateway.pipeline.build import build
from gateway.pipeline.completion import SessionCompletion
from gateway.readers.fit import read_fit
from gateway.spool.store import Spool

DATA = Path(__file__).resolve().parents[2] / "tests" / "data" / "fit"
T0 = 1_790_000_000.0
HOUR = 3600
LAP_S = 360.0
OFFSET_S = 37.0
ELEMNT = "2019-02-17-062644-ELEMNT-297E-195-0.fit"  # paused often: its hours with the most riding
STRETCHES = [("sweatpy-4078723797.fit", 0), ("sweatpy-4078723797.fit", 1), (ELEMNT, 1), (ELEMNT, 3), (ELEMNT, 4),
             ("Edge810-Vector-2013-08-16-15-35-10.fit", 0)]


def _hours() -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for name, hour in STRETCHES:
        ride = read_fit(DATA / name)
        t = ride.times - ride.times[0] - hour * HOUR
        keep = (t >= 0) & (t < HOUR)
        out.append((t[keep] + T0, np.nan_to_num(ride.power[keep])))
    return out


def _axiamo(path: Path, t: np.ndarray, p: np.ndarray) -> None:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    segments = book.create_sheet("Segments")
    segments.append(["Number", "StartTime", "Duration"])
    power = book.create_sheet("PowerData")
    power.append(["Frame", "WallTime", "InstantPower", "Cadence"])
    for i, (a, b) in enumerate(zip(t, p, strict=True)):
        power.append([i, float(a), float(b), 85.0])
    book.save(path)


def six_one_hour_files() -> dict[str, object]:
    hours = _hours()
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        spool = Spool(folder / "spool.sqlite", "bench").open()
        team = [{"id": f"r{i}", "name": f"Rider {i}", "ftp_w": 280, "weight_kg": 68} for i in range(6)]
        settings = config.load(None).settings
        pipeline = build(settings, spool, "s1", riders=riders(team), gates=["SF"], replay=True).start()
        pipeline.publish("live", started=T0 + OFFSET_S)
        events: list[Any] = []
        for i, (t, p) in enumerate(hours):
            laps = np.arange(T0, T0 + HOUR + 1, LAP_S) + 0.4
            heard = (t - T0) % LAP_S < 0.1 * LAP_S
            events += [PowerSample("replay:box", f"r{i}", float(a + OFFSET_S), float(b), 85.0)
                       for a, b in zip(t[heard], p[heard], strict=True)]
            events += [GateCrossing("replay:gates", f"r{i}", "SF", float(x + OFFSET_S)) for x in laps]
        events.sort(key=lambda e: e.wall_time)
        pipeline.ingest.submit_many(events)
        pipeline.finish()
        files = []
        for i, (t, p) in enumerate(hours):
            _axiamo(folder / f"rider-{i}.xlsx", t, p)
            files.append((folder / f"rider-{i}.xlsx", f"rider-{i}.xlsx"))
        completion = SessionCompletion(config.load(None).settings, spool)
        t0 = time.perf_counter()
        outcomes = completion.add("s1", files, who="bench")
        seconds = time.perf_counter() - t0
        spool.close()
    added = [o for o in outcomes if o.status == "added"]
    right = sum(1 for o in added if o.rider_id == f"r{o.name.split('-')[1].split('.')[0]}")
    return {"value": round(seconds, 2), "unit": "s", "files": len(files), "added": len(added),
            "to_the_right_rider": right, "samples_added": sum(o.added for o in added),
            "ok": right == len(files)}


BENCHMARKS = [("complete.six_one_hour_files", six_one_hour_files)]
