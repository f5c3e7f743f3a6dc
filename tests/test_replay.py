"""Playback: pace, controls, several sessions at once, the same results as computing from the files."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import openpyxl
import pytest

from gateway import config
from gateway.engine.segments import SegmentEngine
from gateway.model import GateCrossing, PowerSample
from gateway.pipeline.build import engine_course, rider_infos
from gateway.replay.files import expand, load_session, merged
from gateway.replay.manager import ReplayManager
from gateway.replay.player import Player
from gateway.results.sqlite import SpoolResults
from gateway.service.daemon import Daemon
from gateway.spool.store import Spool

ROOT = Path(__file__).resolve().parent.parent


class FakeClock:
    """Time that passes only when someone sleeps: tests never wait for real."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds
        await asyncio.sleep(0)


def events(n: int, step: float = 1.0) -> list[PowerSample]:
    return [PowerSample("replay:x", "r01", 1000.0 + i * step, 200.0) for i in range(n)]


def test_factor_sets_the_pace() -> None:
    for factor, expected in ((1.0, 99.0), (0.5, 49.5), (0.2, 19.8), (0.0, 0.0)):
        clock = FakeClock()
        got: list[float] = []

        def submit(_: PowerSample, got: list[float] = got, clock: FakeClock = clock) -> bool:
            got.append(clock.now())
            return True

        player = Player("s", events(100), submit, factor=factor, clock=clock)
        assert asyncio.run(player.run()) == "finished"
        assert got[-1] == pytest.approx(expected)
        assert player.status()["remaining_s"] == 0


def test_pause_resume_speed_and_stop() -> None:
    async def scenario() -> list[dict]:
        clock = FakeClock()
        sent: list[float] = []
        player = Player("s", events(200), lambda e: sent.append(e.wall_time) or True, factor=1.0, clock=clock)
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

    player = Player("s", events(50), submit, factor=0.0, clock=FakeClock())
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


def test_cli_replay_piped_prints_plain_lines_and_exits_when_done(tmp_path: Path, gateway_env) -> None:
    out = subprocess.run([sys.executable, "-m", "gateway", "replay", "@sample", "--speed", "0", "--no-web",
                          "--state-dir", str(tmp_path)], capture_output=True, text=True, env=gateway_env,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("replay replay-") and "finished, 100%" in last and "72 segment results" in last
    assert "\r" not in out.stdout
    # export: one row per rider and segment with the chart's data keys
    exported = subprocess.run([sys.executable, "-m", "gateway", "export", "--state-dir", str(tmp_path)],
                              capture_output=True, text=True, env=gateway_env, timeout=60, cwd=ROOT)
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert len(rows) == 72
    for key in ("time_zscore", "power_zscore", "time_modified_zscore", "power_modified_zscore", "time_absolute",
                "watts_per_kilo", "normalized_power", "tss"):
        assert rows[0][key] != ""
    xlsx = tmp_path / "out.xlsx"
    subprocess.run([sys.executable, "-m", "gateway", "export", "--state-dir", str(tmp_path), "--format", "xlsx",
                    "--output", str(xlsx)], check=True, env=gateway_env, timeout=60, cwd=ROOT, capture_output=True)
    ws = openpyxl.load_workbook(xlsx).active
    assert ws.max_row == 73 and ws.cell(1, 10).value == "time_zscore"
    js = subprocess.run([sys.executable, "-m", "gateway", "export", "--state-dir", str(tmp_path), "--format",
                         "json"], capture_output=True, text=True, env=gateway_env, timeout=60, cwd=ROOT)
    assert len(json.loads(js.stdout)["results"]) == 72


def test_a_bad_file_stops_the_replay_before_anything_is_ingested(tmp_path: Path, gateway_env) -> None:
    bad = tmp_path / "lea.xlsx"
    bad.write_text("not a workbook")
    sample = sorted((ROOT / "gateway" / "resources" / "sample").glob("*.xlsx"))[0]
    out = subprocess.run([sys.executable, "-m", "gateway", "replay", str(sample), str(bad), "--speed", "0",
                          "--no-web", "--state-dir", str(tmp_path / "state")], capture_output=True, text=True,
                         env=gateway_env, timeout=120, cwd=ROOT)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert f"trackside-gateway: {bad}: not an Excel workbook" in out.stderr
    spool = Spool(tmp_path / "state" / "spool.sqlite", "demo").open()
    assert [r for r in spool.queries.since(0) if r.session_id and r.session_id.startswith("replay")] == []
    spool.close()


def call(method: str, url: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    if token:
        request.add_header("X-Admin-Token", token)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_replay_control_over_http_needs_the_admin_token(tmp_path: Path) -> None:
    data = config.load(None).data
    data["web"]["admin_token"] = "s3cret"
    data["web"]["host"] = "127.0.0.1"
    data["sources"]["replay"]["enabled"] = False
    daemon = Daemon(config.Config(data, "test"), state_dir=tmp_path, port=0)
    thread = threading.Thread(target=lambda: asyncio.run(daemon.run()), name="daemon")
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while daemon.web_port is None and time.monotonic() < deadline:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{daemon.web_port}/api/replays"
        assert call("POST", base, {"files": ["@sample"], "speed": 0.01})[0] == 401
        assert call("POST", base, {"files": ["@sample"]}, token="wrong")[0] == 401
        status, bad = call("POST", base, {"files": ["@sample"], "speed": -1}, token="s3cret")
        assert status == 400 and "speed" in bad["error"]
        status, started = call("POST", base, {"files": ["@sample"], "speed": 0.01}, token="s3cret")
        assert status == 201 and started["state"] == "playing"
        session = started["session"]
        assert call("POST", f"{base}/{session}/pause")[0] == 401
        assert call("POST", f"{base}/{session}/pause", {}, token="s3cret")[1]["state"] == "paused"
        assert call("POST", f"{base}/{session}/resume", {}, token="s3cret")[1]["state"] == "playing"
        assert call("POST", f"{base}/{session}/speed", {"factor": 0.001}, token="s3cret")[1]["factor"] == 0.001
        status, err = call("POST", f"{base}/{session}/rewind", {}, token="s3cret")
        assert status == 400 and "unknown action" in err["error"]
        assert call("GET", f"{base}/nope")[0] == 404  # an unknown name, not a bad request
        listed = call("GET", base)[1]
        assert [r["session"] for r in listed] == [session]
        assert {"position", "elapsed_s", "remaining_s", "factor", "session"} <= listed[0].keys()
        assert call("POST", f"{base}/{session}/stop", {}, token="s3cret")[1]["state"] in ("stopped", "finishing")
    finally:
        daemon.stop()
        thread.join(30)
    assert not thread.is_alive()
