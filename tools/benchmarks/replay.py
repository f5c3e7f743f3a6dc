"""Replay throughput: a two-hour, ten-rider, 4 Hz session (288 000 power samples) from files to the spool.

Reported separately: reading the files (Axiamo Excel through calamine, side by side) and playing them
at factor 0 through ingest, the engine and the spool, which is what the 150 000 events/s target is for.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import openpyxl

from gateway import config
from gateway.replay.manager import ReplayManager
from gateway.spool.store import Spool

RIDERS, HOURS, RATE = 10, 2, 4
T0 = 1_781_427_600.0


def _write_session(folder: Path) -> list[str]:
    files = []
    n = int(HOURS * 3600 * RATE)
    for r in range(RIDERS):
        wb = openpyxl.Workbook(write_only=True)
        seg = wb.create_sheet("Segments")
        seg.append(["Number", "StartTime", "Duration"])
        t, k = T0 + r * 10, 0
        while t < T0 + HOURS * 3600 - 200:
            k += 1
            seg.append([f"{(k - 1) // 4 + 1}.{(k - 1) % 4 + 1}", t, 150.0])
            t += 150.0
        power = wb.create_sheet("PowerData")
        power.append(["Frame", "WallTime", "InstantPower", "Cadence", "Torque"])
        for i in range(n):
            w = 220 + 60 * math.sin(i / 40)
            power.append([i, T0 + r * 10 + i / RATE, round(w), 85, round(w / 8.9, 2)])
        path = folder / f"rider{r:02d}.xlsx"
        wb.save(path)
        files.append(str(path))
    return files


def replay_to_spool() -> list[tuple[str, dict[str, object]]]:
    cfg = config.load(None)
    data = cfg.data
    data["riders"] = [{"id": f"rider{r:02d}", "name": f"Rider {r}", "ftp_w": 280, "weight_kg": 68,
                       "squad": None, "transponder": None, "power_meters": []} for r in range(RIDERS)]
    cfg = config.Config(data, "bench")
    with tempfile.TemporaryDirectory() as d:
        files = _write_session(Path(d))
        spool = Spool(Path(d) / "spool.sqlite", "bench").open()

        async def run() -> tuple[float, float, int]:
            manager = ReplayManager(cfg, spool)
            t0 = time.perf_counter()
            from gateway.replay.files import expand, load_session

            gates = cfg.settings.course.gate_ids
            load_session(expand(files), gates, cfg.settings.riders)
            load_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            session = await manager.start(files, factor=0)
            parse_again = time.perf_counter() - t1  # start() reads the files again before playing
            await manager.wait(session)
            play_s = time.perf_counter() - t1 - parse_again
            events = manager.status(session)["events"]
            await manager.close()
            return load_s, play_s, events

        load_s, play_s, events = asyncio.run(run())
        rows = spool.ledger.last_seq()
        spool.close()
    rate = events / play_s
    return [
        ("replay.factor0_file_events_to_spool_per_s", {"value": round(rate), "unit": "ev/s", "target": ">= 150000",
                                                       "ok": rate >= 150_000, "events": events, "spool_rows": rows}),
        ("replay.read_excel_files_events_per_s", {"value": round(events / load_s), "unit": "ev/s",
                                                  "seconds": round(load_s, 1)}),
    ]


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _demo_marks(loops: int) -> list[tuple[int, int]]:
    """(RSS in kB, open descriptors) after 5 and after ``loops`` replays of the bundled sample."""
    data = config.load(None).data
    data["sources"]["replay"]["enabled"] = False
    cfg = config.Config(data, "bench")
    with tempfile.TemporaryDirectory() as d:
        spool = Spool(Path(d) / "spool.sqlite", "demo").open()

        async def run() -> list[tuple[int, int]]:
            manager = ReplayManager(cfg, spool)
            marks = []
            for i in range(loops):
                await manager.wait(await manager.start(["@sample"], factor=0))
                if i + 1 in (5, loops):
                    marks.append((_rss_kb(), len(list(Path("/proc/self/fd").iterdir()))))
            await manager.close()
            return marks

        marks = asyncio.run(run())
        spool.close()
    return marks


def demo_loops(loops: int = 50) -> list[tuple[str, dict[str, object]]]:
    """The demo replays the bundled sample over and over: memory and descriptors must stay flat.
    Measured in a process of its own, so that what other benchmarks left in this one is not counted."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        (rss5, fd5), (rss_n, fd_n) = pool.submit(_demo_marks, loops).result()
    growth = (rss_n - rss5) / 1024
    return [
        (f"replay.demo_rss_after_{loops}_loops", {"value": round(rss_n / 1024, 1), "unit": "MB",
                                                 "target": "flat (+<15 MB)", "ok": growth < 15,
                                                 "after_5_loops_mb": round(rss5 / 1024, 1)}),
        (f"replay.demo_fds_after_{loops}_loops", {"value": fd_n, "unit": "fds", "target": "flat",
                                                 "ok": fd_n <= fd5, "after_5_loops": fd5}),
    ]


BENCHMARKS = [("replay", replay_to_spool), ("replay.demo", demo_loops)]
