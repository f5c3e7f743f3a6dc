"""Replays from outside: `trackside-gateway replay` piped (plain lines, exits when done), a bad
file stopping a replay before anything is ingested, replay control over HTTP needing the token."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import openpyxl
from harness import ROOT

from gateway import config
from gateway.service.daemon import Daemon
from gateway.spool.store import Spool


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
    assert exported.stdout.startswith("\ufeffsession_id,session,rider_id,rider,number")  # Excel reads UTF-8
    rows = list(csv.DictReader(io.StringIO(exported.stdout.lstrip("\ufeff"))))
    assert len(rows) == 72
    for key in ("time_z", "power_z", "time_modified_z", "power_modified_z", "duration_s", "duration", "w_per_kg",
                "normalized_power_w", "tss", "start", "segment_name"):
        assert rows[0][key] != "", key
    # For people: lap.segment as text, times with their offset, durations as m:ss, sensible rounding.
    assert rows[0]["number"] == '="1.1"' and rows[0]["start_iso"].endswith("+00:00") and "T" in rows[0]["start_iso"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", rows[0]["start"])  # a spreadsheet's date
    assert re.fullmatch(r"\d+:\d\d\.\d", rows[0]["duration"])
    assert all(len(r["power_avg_w"].split(".")[-1]) <= 1 and len(r["duration_s"].split(".")[-1]) <= 2 for r in rows)
    xlsx = tmp_path / "out.xlsx"
    subprocess.run([sys.executable, "-m", "gateway", "export", "--state-dir", str(tmp_path), "--format", "xlsx",
                    "--output", str(xlsx)], check=True, env=gateway_env, timeout=60, cwd=ROOT, capture_output=True)
    ws = openpyxl.load_workbook(xlsx).active
    assert ws.max_row == 73 and ws.cell(1, 24).value == "time_z"
    assert ws.cell(2, 5).value == "1.1" and ws.cell(2, 5).number_format == "@"  # text
    assert ws.cell(2, 9).is_date and ws.cell(2, 9).number_format == "yyyy-mm-dd hh:mm:ss"
    # A reader that is not Python: Gnumeric reads the CSV with times as dates and "1.1" as text.
    csv_file = tmp_path / "out.csv"
    csv_file.write_text(exported.stdout, encoding="utf-8")
    subprocess.run(["ssconvert", str(csv_file), str(tmp_path / "gnumeric.xlsx")], check=True, capture_output=True,
                   timeout=60)
    with warnings.catch_warnings():  # Gnumeric writes no default style; openpyxl says so
        warnings.simplefilter("ignore")
        seen = openpyxl.load_workbook(tmp_path / "gnumeric.xlsx", data_only=True).active
    assert seen.cell(1, 5).value == "number" and seen.cell(2, 5).value == "1.1" and seen.cell(2, 5).data_type == "s"
    assert seen.cell(2, 9).is_date and seen.cell(2, 9).value.year >= 2020  # start, a date
    assert seen.cell(2, 14).is_date  # the m:ss duration, a time
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
