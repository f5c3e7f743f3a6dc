"""Riders' files complete a session (#31), against the real daemon: the session a box recorded
(10 % of each lap of a real ride heard live, crossings from its laps) is in the box's spool; the
coach adds the rider's FIT file from a terminal (`trackside-gateway session add-files`, through
the daemon's API with the admin PIN) while the page, open on that session in Chromium at phone
size, shows the results being corrected."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from harness import ARTIFACTS, TOKEN, RunningDaemon, free_port, spawn, wait_for
from rides import FILE, live_session, truth
from test_page import launch_chromium, wait_until

from gateway.spool.store import Spool

pytestmark = pytest.mark.allow_threads("asyncio_")


@pytest.fixture(scope="module")
def browser() -> Any:
    yield from launch_chromium()


def add_files(base: str, *args: str, pin: str = TOKEN) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "trackside-gateway"
    return subprocess.run([str(exe), "session", "add-files", *args, "--url", base, "--pin", pin],
                          capture_output=True, text=True, timeout=120)


def stored_session(tmp: Path, gateway: str = "demo") -> tuple[Path, str]:
    """A state directory whose spool holds what one box heard of the ride (the box is not running)."""
    state = tmp / "state"
    state.mkdir()
    spool = Spool(state / "spool.sqlite", gateway).open()
    try:
        return state, live_session(spool, FILE)
    finally:
        spool.close()


def phone(browser: Any) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(viewport={"width": 412, "height": 915}, has_touch=True, is_mobile=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    return context, page, errors


def test_a_file_added_from_the_terminal_corrects_the_page_live(browser: Any, tmp_path: Path) -> None:
    state, session = stored_session(tmp_path)
    with RunningDaemon(state) as running:
        context, page, errors = phone(browser)
        try:
            page.goto(f"{running.base}/?session={session}")
            wait_until(page, "window.trackside !== undefined && window.trackside.count() === 8", 30)
            assert page.evaluate("Object.values(window.trackside.rows).every(r => r.power_partial)")
            refused = add_files(running.base, session, str(FILE), pin="wrong-pin")
            assert refused.returncode == 2 and "wrong admin PIN" in refused.stderr
            out = add_files(running.base, session, str(FILE))
            assert out.returncode == 0, out.stdout + out.stderr
            assert out.stdout.startswith(f"added: {FILE.name}: Vera Vector's")
            # The page follows: every lap's power now whole, as computed from the whole file.
            wait_until(page, "window.trackside.count() === 8 && Object.values(window.trackside.rows)"
                             ".every(r => !r.power_partial && r.coverage > 0.99)", 30)
            want = truth(FILE)
            shown = page.evaluate("Object.values(window.trackside.rows).map(r => [r.number, r.normalized_power])")
            assert all(abs(np - want[n].normalized_power) <= 0.5 for n, np in shown)
            page.screenshot(path=str(ARTIFACTS / "session-files.png"), full_page=True)
            again = add_files(running.base, session, str(FILE))
            assert again.returncode == 0 and again.stdout.startswith("already added:")
            assert errors == []
        finally:
            context.close()


def test_the_set_up_page_adds_several_files_at_once_and_says_what_became_of_each(browser: Any, tmp_path: Path
                                                                                 ) -> None:
    state, session = stored_session(tmp_path)
    cut = tmp_path / "cut.fit"
    cut.write_bytes(FILE.read_bytes()[:5000])  # a copy cut short
    with RunningDaemon(state) as running:
        context, page, errors = phone(browser)
        try:
            page.goto(f"{running.base}/setup")
            wait_until(page, "window.setup !== undefined && window.setup.sessions.length > 0", 20)
            page.select_option("#files-session", session)
            page.set_input_files("#files-input", [str(FILE), str(cut)])
            page.click("#files-add")
            wait_until(page, "document.querySelector('#files-message').innerText.includes('PIN')", 10)
            page.fill("#pin", TOKEN)
            page.dispatch_event("#pin", "change")
            page.click("#files-add")
            wait_until(page, "window.setup.fileResults.length === 2", 60)
            rows = page.locator("#files .file-row").all_inner_texts()
            assert any(r.startswith("✔ added") and "Vera Vector's" in r for r in rows), rows
            assert any(r.startswith("✖ refused") and "cut.fit" in r and "truncated" in r for r in rows), rows
            assert "1 of 2 added" in page.locator("#files-message").inner_text()
            assert page.locator("#files-add").bounding_box()["height"] >= 44
            page.screenshot(path=str(ARTIFACTS / "session-files-setup.png"), full_page=True)
            assert errors == []
        finally:
            context.close()


@pytest.mark.kafka
def test_a_file_added_at_the_hub_completes_the_box_session_there(tmp_path: Path, kafka_bootstrap: str,
                                                                 gateway_env: dict[str, str], pg_dsn: str,
                                                                 browser: Any) -> None:
    """The box forwarded what it heard; the coach adds the rider's file at the hub (the same command,
    the hub's page address): the hub's results for that session are completed, as on the box."""
    state, session = stored_session(tmp_path, "box-1")
    tag = uuid.uuid4().hex[:8]
    kafka = {"enabled": True, "bootstrap_servers": kafka_bootstrap, "partitions": 3,
             "topics": {k: f"{k}-{tag}" for k in ("power", "crossings", "segments", "sessions")}}
    box_cfg = tmp_path / "box.yaml"
    box_cfg.write_text(json.dumps({"gateway": {"id": "box-1", "state_dir": str(state)},
                                   "course": {"gates": [{"id": "SF"}]}, "riders": [], "kafka": kafka,
                                   "web": {"enabled": False}}))
    port = free_port()
    hub_cfg = tmp_path / "hub.yaml"
    hub_cfg.write_text(json.dumps({
        "gateway": {"id": "hub", "state_dir": str(tmp_path / "hub-state")}, "course": {"gates": [{"id": "SF"}]},
        "riders": [], "kafka": kafka, "web": {"admin_token": TOKEN},
        "hub": {"group_id": f"g-{tag}", "port": port, "host": "127.0.0.1", "batch_ms": 100}}))
    box = spawn(["run", "--config", str(box_cfg)], gateway_env, tmp_path / "box.log")
    hub = spawn(["hub", "--config", str(hub_cfg)], {**gateway_env, "TRACKSIDE_PG_DSN": pg_dsn}, tmp_path / "hub.log")
    try:
        wait_for(lambda: len(hub_results(pg_dsn, session)) == 8, 90, "the box's session at the hub")
        assert all(r[2] < 0.2 for r in hub_results(pg_dsn, session).values())
        out = add_files(f"http://127.0.0.1:{port}", session, str(FILE))
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.startswith(f"added: {FILE.name}: Vera Vector's")
        want = truth(FILE)
        after = hub_results(pg_dsn, session)
        assert set(after) == set(want)
        for number, (power_avg, np_w, coverage) in after.items():
            assert coverage == pytest.approx(want[number].coverage, abs=0.01), number
            assert np_w == pytest.approx(want[number].normalized_power, abs=0.5), number
            assert power_avg == pytest.approx(want[number].power_avg, abs=0.5), number
        assert add_files(f"http://127.0.0.1:{port}", session, str(FILE)).stdout.startswith("already added:")
        # The hub's page leads to its set-up page, which on the hub is the riders' files alone.
        context, page, _ = phone(browser)
        page.goto(f"http://127.0.0.1:{port}/")
        wait_until(page, "window.trackside !== undefined && window.trackside.addFiles", 20)
        page.click("#files-link")
        wait_until(page, "window.setup !== undefined && window.setup.sessions.length > 0", 20)
        assert page.locator("#files").is_visible() and not page.locator("#session").is_visible()
        assert session in page.locator("#files-session").inner_html()
        context.close()
    finally:
        for proc in (box, hub):
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


def hub_results(dsn: str, session: str) -> dict[str, tuple[float, float, float]]:
    try:
        with psycopg.connect(dsn) as conn:
            rows = conn.execute("SELECT number, power_avg, normalized_power, coverage FROM segments_current "
                                "WHERE session_id = %s", (session,)).fetchall()
    except psycopg.Error:
        return {}
    return {r[0]: (r[1], r[2], r[3]) for r in rows}
