"""Rough edges that real tools and real users hit (issue #28): each with the behaviour a user relies on,
checked against the running daemon, the command line, or the files it writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import RunningDaemon, wait_for
from test_trust import call


def test_an_automatic_session_replaced_by_a_started_one_is_ended(tmp_path: Path) -> None:
    """#28, point 5: its record kept `ended: null` in Kafka and at the hub."""
    def edit(data: dict[str, Any]) -> None:
        data["sources"]["load"] = {"enabled": True, "rate_hz": 4, "segment_s": 2}

    with RunningDaemon(tmp_path / "state", edit=edit) as running:
        spool = running.daemon.spool
        assert spool is not None
        automatic = json.loads(call(running.base, "/api/session")[1])["session"]
        wait_for(lambda: spool.sessions.has_record(automatic), 10, "the automatic session's record")
        record = spool.sessions.record(automatic) or {}
        assert record["ended"] is None
        # #30: a live record says what the box's clock is worth (the hub falls back on it).
        assert set(record["clock"]) == {"synchronised", "est_error_s", "max_error_s", "sources"}
        status, body, _ = call(running.base, "/api/session/start", {"name": "Intervals"})
        assert status == 201, body
        wait_for(lambda: (spool.sessions.record(automatic) or {})["ended"] is not None, 10,
                 "the automatic session's end in its record")


def test_the_page_and_its_data_are_compressed_when_the_phone_asks(tmp_path: Path) -> None:
    """#28, point 14: /api/results was 478 KB for 660 results and the first load about 300 KB of
    JavaScript, uncompressed, over the box's Wi-Fi."""
    import gzip
    import urllib.request

    from test_trust import replayed

    def fetch(running: RunningDaemon, path: str, gzipped: bool) -> tuple[bytes, dict[str, str]]:
        request = urllib.request.Request(running.base + path, headers={"Accept-Encoding": "gzip"} if gzipped else {})
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.read(), dict(reply.headers)

    with RunningDaemon(tmp_path / "state") as running:
        session = replayed(running)
        for path in (f"/api/results?session={session}", "/static/vendor/chart.umd.min.js", "/static/app.js", "/"):
            plain, plain_headers = fetch(running, path, False)
            packed, headers = fetch(running, path, True)
            assert "Content-Encoding" not in plain_headers
            assert headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in headers["Vary"], path
            assert gzip.decompress(packed) == plain and len(packed) < 0.45 * len(plain), (path, len(packed), len(plain))
        request = urllib.request.Request(running.base + "/stream", headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(request, timeout=10) as stream:  # the live stream flushes each event
            assert "Content-Encoding" not in stream.headers and stream.headers["Content-Type"].startswith(
                "text/event-stream")


def test_a_replay_from_the_command_line_opens_no_radio_no_live_session_and_no_uplink(
        tmp_path: Path, gateway_env: dict[str, str]) -> None:
    """#28, point 11: `trackside-gateway replay` ran the box's daemon with the replay flags, so a
    config made for the course opened its radios, its serial port, a live session and the forwarder."""
    import sqlite3
    import subprocess
    import sys

    cfg = tmp_path / "course.yaml"
    cfg.write_text(json.dumps({
        "gateway": {"id": "box1", "state_dir": str(tmp_path / "unused")}, "course": {"gates": [
            {"id": "SF"}, {"id": "G1"}, {"id": "G2"}, {"id": "G3"}]}, "riders": [],
        "sources": {"ant": {"enabled": True}, "ble": {"enabled": True},
                    "serial": {"enabled": True, "port": str(tmp_path / "ttyNone")}},
        "kafka": {"enabled": True, "bootstrap_servers": "127.0.0.1:9"}}))
    state = tmp_path / "state"
    out = subprocess.run([sys.executable, "-m", "gateway", "replay", "@sample", "--speed", "0", "--no-web",
                          "--config", str(cfg), "--state-dir", str(state)],
                         env=gateway_env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "replay only: no live session, no radios, no uplink" in out.stderr
    for word in ("ant", "ble", "serial", "kafka", "ttyNone"):
        assert not any(line.split(":", 1)[0].endswith(f"sources.{word}") or "ttyNone" in line or "librdkafka" in line
                       for line in out.stderr.splitlines()), (word, out.stderr[-2000:])
    conn = sqlite3.connect(state / "spool.sqlite")
    try:
        keys = {k for (k,) in conn.execute("SELECT key FROM meta")}
        sessions = {s for (s,) in conn.execute("SELECT DISTINCT session_id FROM events")}
    finally:
        conn.close()
    assert not {"live_session", "live_session_info"} & keys
    assert len(sessions) == 1 and next(iter(sessions)).startswith("replay-box1-")
    if (state / "status.json").exists():
        components = json.loads((state / "status.json").read_text())["components"]
        assert "kafka" not in components and "engine" not in components  # no uplink, no live session


def test_dates_are_one_format_parsed_never_compared_as_text(tmp_path: Path) -> None:
    """#28, point 6: `--from 2026-2-1` was accepted, then compared as text (so the FTP set was never
    used); `2026-12- 1` was accepted."""
    from test_trust import call

    with RunningDaemon(tmp_path / "state") as running:
        for day, said in (("2026-2-1", b"is not a date written YYYY-MM-DD"),
                          ("2026-12- 1", b"is not a date written YYYY-MM-DD"),
                          ("2026-02-30", b"is not a day of the calendar"), (20260201, b"is not a date")):
            status, body, _ = call(running.base, "/api/riders/r01/profile", {"ftp_w": 300, "from": day})
            assert status == 400 and said in body, (day, status, body)
        assert call(running.base, "/api/riders/r01/profile", {"ftp_w": 300, "from": "2026-02-01"})[0] == 201
        for query in ("from=2026-2-1", "to=2026-12-%201", "from=x"):
            assert call(running.base, f"/api/results?population=all&{query}")[0] == 400, query
        assert call(running.base, "/api/results?population=all&to=9999-12-31")[0] == 200  # was a 500


def test_http_answers_say_what_is_wrong_with_4xx_never_500(tmp_path: Path) -> None:
    """#28, point 9."""
    from test_trust import call, replayed

    with RunningDaemon(tmp_path / "state") as running:
        base = running.base
        for path, body in (("/api/riders", {"id": "r09", "name": "Mia", "squad": 5}),
                           ("/api/riders", {"id": ["r09"], "name": "Mia"}),
                           ("/api/riders/r01/profile", {"ftp_w": 300, "from": {"day": 1}}),
                           ("/api/session/start", {"name": "Tyres", "tags": 5}),
                           ("/api/session/start", {"name": "Tyres", "tags": {"tyres": {"front": "1.6"}}}),
                           ("/api/session/start", {"name": "Tyres", "riders": [1, 2]}),
                           ("/api/session/start", {"name": "Tyres", "riders": "r01"}),
                           ("/api/riders", {"id": "a/b", "name": "Slash"}),
                           ("/api/pair", {"kind": "ant", "id": "4321", "rider": {"id": "r01"}}),
                           # A NUL in a name: stored, it made the hub refuse the session's record.
                           ("/api/session/start", {"name": "Wet\x00day"}),
                           ("/api/riders", {"id": "r09", "name": "Mia", "squad": "U23\x00"})):
            status, answer, _ = call(base, path, body)
            assert status == 400, (path, body, status, answer)
        nul = call(base, "/api/riders", {"id": "r09", "name": "M", "squad": "\x00"})
        assert nul[0] == 400 and b"squad contains a NUL character" in nul[1], nul
        assert json.loads(call(base, "/api/session")[1])["name"] != "Tyres"  # none of those started a session
        import urllib.parse
        import urllib.request

        form = urllib.request.Request(base + "/api/riders", data=urllib.parse.urlencode({"id": "r09", "name": "M"})
                                      .encode(), method="POST", headers={"X-Admin-Token": "s3cret"})
        try:
            urllib.request.urlopen(form, timeout=10)
            raise AssertionError("a form was taken")
        except urllib.error.HTTPError as exc:
            assert exc.code == 415 and b"as JSON" in exc.read()
        assert call(base, "/api/results?session=%00")[0] == 400
        session = replayed(running)
        status, _, headers = call(base, f"/api/export?session={urllib.parse.quote(session)}&format=csv")
        assert status == 200 and headers["Content-Disposition"] == (
            f"attachment; filename=\"{session}.csv\"; filename*=UTF-8''{session}.csv")
        evil = urllib.parse.quote('x"; filename="evil.exe')
        status, body, headers = call(base, f"/api/export?session={evil}&format=csv")
        assert status == 404 and "Content-Disposition" not in headers, (status, body)
        assert call(base, "/api/export?session=nobody&format=csv")[0] == 404  # was 200 with an empty CSV


def test_the_command_line_says_what_is_wrong_in_one_line(tmp_path: Path, gateway_env: dict[str, str]) -> None:
    """#28, points 8 and 10: tracebacks for a closed pipe, a port out of range, a rider id with a space;
    `check-config /dev/zero` grew to 3.7 GB and a FIFO hung it; `report --rider nobody` exited 0;
    `rider list` sent a name's escape sequences to the terminal; exports were made 0600."""
    import os
    import subprocess
    import sys

    from test_trust import call, replayed

    def cli(*args: str, umask: int | None = None) -> subprocess.CompletedProcess[str]:
        mask = (lambda: os.umask(umask)) if umask is not None else None
        return subprocess.run([sys.executable, "-m", "gateway", *args], env=gateway_env, capture_output=True,
                              text=True, timeout=60, preexec_fn=mask)

    def one_line(out: subprocess.CompletedProcess[str], said: str, code: int = 2) -> None:
        text = out.stdout + out.stderr  # check-config says its findings on standard output
        assert out.returncode == code and "Traceback" not in text and len(text.strip().splitlines()) == 1, text[-2000:]
        assert said in text, text

    state = tmp_path / "state"
    state.mkdir()
    (state / "riders.json").write_text(json.dumps({"riders": {"r01": {"name": "Anna\u001b]0;owned\u0007\u001b[2J"}}}))
    with RunningDaemon(state) as running:
        session = replayed(running)
        listed = cli("rider", "list", "--url", running.base)
        assert listed.returncode == 0 and "\x1b" not in listed.stdout and "Anna\\x1b]0;owned" in listed.stdout
        one_line(cli("rider", "set", "a b", "--ftp", "300", "--url", running.base, "--pin", "s3cret"), "no rider 'a b'")
        assert call(running.base, "/api/riders")[0] == 200
    export = subprocess.Popen([sys.executable, "-m", "gateway", "export", "--state-dir", str(state), "--format",
                               "json"], env=gateway_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert export.stdout is not None and export.stderr is not None
    export.stdout.close()  # `| head -c 0`: the reader is gone before the first byte
    err = export.stderr.read().decode()
    export.stderr.close()
    assert export.wait(60) == 141 and err == "", err
    for port in ("-1", "99999", "http"):  # argparse's usage, then its one line
        out = cli("run", "--port", port)
        assert out.returncode == 2 and "Traceback" not in out.stderr and "is not a port" in out.stderr.splitlines()[-1]
    one_line(cli("check-config", "/dev/zero"), "not a regular file")
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    one_line(cli("check-config", str(fifo)), "not a regular file")
    one_line(cli("report", "--state-dir", str(state), "--session", session, "--rider", "nobody", "--pdf",
                 str(tmp_path / "r.pdf")), "no results of rider 'nobody'")
    assert cli("export", "--state-dir", str(state), "--output", str(tmp_path / "out.csv"), umask=0o022).returncode == 0
    done = cli("report", "--state-dir", str(state), "--pdf", str(tmp_path / "r.pdf"), umask=0o027)
    assert done.returncode == 0 and "(the newest session with results)" in done.stderr
    # A session's name is as good as its id, and the answer says which session it chose.
    named = cli("report", "--state-dir", str(state), "--session", "REPLAY OF R01_ANNA.XLSX AND 5 MORE", "--pdf",
                str(tmp_path / "n.pdf"))
    assert named.returncode == 0 and "(the newest session named 'REPLAY OF R01_ANNA.XLSX AND 5 MORE')" in named.stderr
    one_line(cli("report", "--state-dir", str(state), "--session", "Hill repeats", "--pdf", str(tmp_path / "x.pdf")),
             "no session with the id or name 'Hill repeats'")
    assert (tmp_path / "out.csv").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "r.pdf").stat().st_mode & 0o777 == 0o640
