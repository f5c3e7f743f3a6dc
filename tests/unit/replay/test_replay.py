"""Playback: pace, controls, a full pipeline waited for, the same results as computing from the
files, finished replays released."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from fakes import FakeClock

from gateway import config
from gateway.engine.segments import SegmentEngine
from gateway.model import GateCrossing, PowerSample
from gateway.pipeline.build import engine_course, rider_infos
from gateway.replay.files import expand, load_session, merged
from gateway.replay.manager import KEEP_FINISHED, ReplayManager
from gateway.replay.player import Player
from gateway.results.sqlite import SpoolResults
from gateway.spool.store import Spool


class Sink:
    """A session's intake as a player sees it, over one function that takes an event or refuses it."""

    pending = 0

    def __init__(self, submit: Callable[[PowerSample], bool]) -> None:
        self.submit = submit

    def submit_many(self, events: Sequence[PowerSample]) -> int:
        taken = 0
        for event in events:
            if not self.submit(event):
                break
            taken += 1
        return taken


def events(n: int, step: float = 1.0) -> list[PowerSample]:
    return [PowerSample("replay:x", "r01", 1000.0 + i * step, 200.0) for i in range(n)]


def test_factor_sets_the_pace() -> None:
    for factor, expected in ((1.0, 99.0), (0.5, 49.5), (0.2, 19.8), (0.0, 0.0)):
        clock = FakeClock()
        got: list[float] = []

        def submit(_: PowerSample, got: list[float] = got, clock: FakeClock = clock) -> bool:
            got.append(clock.now())
            return True

        player = Player("s", events(100), Sink(submit), factor=factor, clock=clock)
        assert asyncio.run(player.run()) == "finished"
        assert got[-1] == pytest.approx(expected)
        assert player.status()["remaining_s"] == 0


def test_pause_resume_speed_and_stop() -> None:
    async def scenario() -> list[dict]:
        clock = FakeClock()
        sent: list[float] = []
        player = Player("s", events(200), Sink(lambda e: sent.append(e.wall_time) or True), factor=1.0, clock=clock)
        task = asyncio.create_task(player.run())
        snapshots = []
        while player.position < 50:
            await asyncio.sleep(0)
        player.pause()
        at_pause = player.position
        for _ in range(100):
            await asyncio.sleep(0)
        assert player.position == at_pause  # paused means no events
        snapshots.append(player.status())
        player.resume()
        player.set_speed(0.1)
        t_before, pos_before = clock.now(), player.position
        while player.position < pos_before + 100:
            await asyncio.sleep(0)
        assert clock.now() - t_before == pytest.approx(10.0, abs=0.2)  # 100 recorded s at ten times
        player.stop()
        snapshots.append(player.status())
        assert await task == "stopped"
        assert player.position < 200
        return snapshots

    paused, stopped = asyncio.run(scenario())
    assert paused["state"] == "paused" and paused["factor"] == 1.0
    assert paused["elapsed_s"] + paused["remaining_s"] == pytest.approx(199.0)
    assert stopped["state"] == "stopped" and stopped["factor"] == 0.1


def test_a_full_pipeline_is_waited_for_never_dropped() -> None:
    accepted: list[float] = []
    room = [False] * 5 + [True] * 1000

    def submit(e: PowerSample) -> bool:
        ok = room.pop(0)
        if ok:
            accepted.append(e.wall_time)
        return ok

    player = Player("s", events(50), Sink(submit), factor=0.0, clock=FakeClock())
    asyncio.run(player.run())
    assert accepted == [e.wall_time for e in events(50)]


def direct_results(files: list[str], cfg: config.Config) -> list[tuple]:
    gates = cfg.settings.course.gate_ids
    recs = load_session(expand(files), gates, cfg.settings.riders).recordings
    engine = SegmentEngine(engine_course(cfg.settings.course), rider_infos(cfg.settings.riders), "d")
    out = []
    for ev in merged(recs):
        if isinstance(ev, GateCrossing):
            out += engine.add_crossing(ev.transponder, ev.gate, ev.wall_time)
        else:
            out += engine.add_power(ev.sensor, ev.wall_time, ev.power, ev.cadence)
    out += engine.flush()
    return sorted((r.rider_id, r.number, r.duration, round(r.normalized_power, 9), r.samples) for r in out)


def test_replay_at_factor_0_equals_computing_from_the_files(tmp_path: Path) -> None:
    cfg = config.load(None)

    async def scenario() -> tuple[list[str], dict, dict]:
        spool = Spool(tmp_path / "spool.sqlite", "demo").open()
        manager = ReplayManager(cfg, spool)
        try:
            first = await manager.start(["@sample"], factor=0)
            second = await manager.start(["@sample"], factor=0)
            await manager.wait(first)
            await manager.wait(second)
            return [first, second], manager.status(first), manager.status(second)
        finally:
            await manager.close()
            spool.close()

    sessions, status1, status2 = asyncio.run(scenario())
    assert sessions[0] != sessions[1]  # several replays at once, each its own session
    assert status1["state"] == status2["state"] == "finished" and status1["results"] == 72
    spool = Spool(tmp_path / "spool.sqlite", "demo").open()
    try:
        want = direct_results(["@sample"], cfg)
        for session in sessions:
            got = sorted((r.rider_id, r.number, r.duration, round(r.normalized_power, 9), r.samples)
                         for r in SpoolResults(spool).results([session]))
            assert got == want
    finally:
        spool.close()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_finished_replays_are_released(tmp_path: Path) -> None:
    """Before: every finished replay kept ~4.6 MB and two descriptors (its ingest thread's connection)."""
    data = config.load(None).data
    data["sources"]["replay"]["enabled"] = False
    cfg = config.Config(data, "test")
    spool = Spool(tmp_path / "spool.sqlite", "demo").open()

    async def scenario() -> list[int]:
        manager = ReplayManager(cfg, spool)
        fds = []
        try:
            for _ in range(8):
                session = await manager.start(["@sample"], factor=0)
                await manager.wait(session)
                fds.append(open_fds())
            assert manager.replays == {}
            assert len(manager.finished) == KEEP_FINISHED
            assert all(s["state"] == "finished" for s in manager.statuses())
        finally:
            await manager.close()
        return fds

    try:
        fds = asyncio.run(scenario())
    finally:
        spool.close()
    assert fds[-1] <= fds[1], fds  # flat after the first (which opens the shared pieces)
