"""The coach's morning at the course (issue #15), in a real headless Chromium at phone size against
the real daemon: start a named session, pair two power meters and a chip from fake radios that
send pages built to the ANT+ and Bluetooth power profiles, see live watts, record an FTP with its date, end the
session, restart the daemon (pairings and profile history still there), review the ended session.
Also: the command line, notes on results and in exports."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeBle, FakeStick
from harness import ARTIFACTS, TOKEN, RunningDaemon
from test_page import filters, launch_chromium, wait_until

from gateway.model import GateCrossing

pytestmark = pytest.mark.allow_threads("asyncio_", "fake-")
PHONE = {"width": 412, "height": 915}


@pytest.fixture
def radios(monkeypatch: pytest.MonkeyPatch) -> FakeBle:
    import gateway.sources.ant as ant
    import gateway.sources.ble as ble

    real_ant, real_ble = ant.build, ble.build
    fake = FakeBle()
    monkeypatch.setattr(ant, "build", lambda s, submit, status: ant.AntSource(
        submit, real_ant(s, submit, status).meters, status=status, node_factory=FakeStick, retry_max_s=1))

    def ble_build(s: Any, submit: Any, status: Any) -> Any:
        source = real_ble(s, submit, status)
        source._scanner, source._client_factory = fake, fake.client
        return source

    monkeypatch.setattr(ble, "build", ble_build)
    return fake


def _with_radios(data: dict[str, Any]) -> None:
    data["sources"]["ant"] = {"enabled": True}
    data["sources"]["ble"] = {"enabled": True, "scan_timeout_s": 1}


def api(base: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(base + path, data=json.dumps(body).encode() if body is not None else None,
                                     method="POST" if body is not None else "GET",
                                     headers={"Content-Type": "application/json", "X-Admin-Token": TOKEN})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium()


def test_the_whole_morning_from_a_phone(browser: Any, radios: FakeBle, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with RunningDaemon(tmp_path, edit=_with_radios) as running:
        base = running.base
        context = browser.new_context(viewport=PHONE, has_touch=True, is_mobile=True)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            page.goto(base + "/setup")
            wait_until(page, "window.setup !== undefined", 20)
            # Viewing needs nothing; every control needs the PIN.
            page.fill("#session-name", "Hill repeats")
            page.evaluate("window.setup.pin = ''")
            page.click("#start-session")
            assert page.locator("#session .message").inner_text().startswith("Enter the admin PIN first")
            page.fill("#pin", TOKEN)
            page.fill("#session-tags", "tyres=1.6bar bike=hardtail")
            page.click("#start-session")
            wait_until(page, "window.setup.current.named === true", 30)
            session = page.evaluate("window.setup.current.session")
            assert api(base, "/api/session")["tags"] == {"tyres": "1.6bar", "bike": "hardtail"}
            # The radios: two ANT+ meters by the search channel, one BLE meter, and a chip nobody owns
            # beside the six chips of the configuration (each can be set to nobody here).
            running.daemon.sessions.submit(GateCrossing("serial", "DM-0099", "SF", time.time()))
            wait_until(page, "window.setup.radios.ant && window.setup.radios.ant.length === 2 && "
                             "window.setup.radios.ble.length === 1 && window.setup.radios.chips.length === 7 && "
                             "window.setup.radios.chips.some(c => c.id === 'DM-0099' && c.crossings === 1)", 30)
            assert "1 crossing without a rider · nobody's" in page.locator('[data-key="chip:DM-0099"]').inner_text()
            wait_until(page, "window.setup.radios.ant.every(d => d.power_w > 0)", 20)
            assert " W · " in page.locator('[data-key="ant:4321"]').inner_text()  # live watts
            assert "-61 dBm" in page.locator(f'[data-key="ble:{FakeBle.address}"]').inner_text()
            page.screenshot(path=str(ARTIFACTS / "pairing.png"), full_page=True)
            page.locator('[data-key="ant:4321"] select').select_option("r01")
            wait_until(page, "window.setup.messages.pairing === \"ANT+ 4321 is Anna's now.\"", 10)
            # Pairing a meter leaves the unknown chip listed (it vanished, and the page said every chip
            # had a rider).
            wait_until(page, "window.setup.radios.chips.some(c => c.id === 'DM-0099' && !c.rider)", 10)
            page.locator(f'[data-key="ble:{FakeBle.address}"] select').select_option("r02")
            page.locator('[data-key="chip:DM-0099"] select').select_option("r01")
            wait_until(page, "window.setup.radios.chips.find(c => c.id === 'DM-0099').rider === 'r01'", 10)
            # Anna has two chips now: said in her name, with which one counts and what to do; the
            # configuration's chip set to nobody on the page clears it.
            warning = "Anna has 2 chips (chip DM-0001 and chip DM-0099): only chip DM-0099 counts"
            wait_until(page, f"window.setup.radios.warnings.some(w => w.startsWith({warning!r}))", 10)
            page.locator('[data-key="chip:DM-0001"] select').select_option("")
            wait_until(page, "window.setup.radios.warnings.length === 0", 10)
            # A Bluetooth meter is connected once paired: its watts show from then on.
            wait_until(page, "window.setup.radios.ble.every(d => d.power_w > 0)", 20)
            # Applied at once: Anna's and Lea's power is theirs from now on, in this session.
            time.sleep(1.5)
            from gateway.spool.store import Spool

            spool = Spool(tmp_path / "spool.sqlite", "test", readonly=True).open()
            try:
                rows = spool.queries.since(0, kinds=("power",), session_id=session)
                riders = {(r.message["source"], r.rider_id) for r in rows}
            finally:
                spool.close()
            assert ("ant:4321", "r01") in riders and (f"ble:{FakeBle.address}", "r02") in riders
            assert ("ant:8765", None) in riders  # nobody's meter: kept, nobody's
            # Anna rides: crossings of her chip through every gate, her meter's power in between.
            for gate in ("SF", "G1", "G2", "G3", "SF"):
                running.daemon.sessions.submit(GateCrossing("serial", "DM-0099", gate, time.time()))
                time.sleep(1.2)
            # A new FTP from today on, from the phone.
            page.locator('[data-rider="r01"] summary').click()
            page.locator('[data-rider="r01"] input[type=number]').first.fill("300")
            page.locator('[data-rider="r01"] button').click()
            wait_until(page, "window.setup.messages.riders.startsWith('Anna: 300 W')", 10)
            assert page.evaluate("window.setup.messages.riders").endswith("(was 245 W, 58 kg).")
            assert page.locator('[data-rider="r01"] .history li').first.inner_text() == "configuration: 245 W, 58 kg"
            assert page.locator('[data-rider="r02"] summary').inner_text().endswith("edit")
            # A new rider by name alone: the box gives the id.
            page.fill("#new-name", "Mia Keller")
            page.click("#add-rider")
            wait_until(page, "window.setup.riders.some(r => r.name === 'Mia Keller' && r.id === 'r07')", 10)
            # Weather: the session ends from the phone (two taps).
            page.click("#end-session")
            page.click("#end-session")
            wait_until(page, "window.setup.current.named === false", 30)
            assert page.locator("#ended-debrief").get_attribute("href") == f"/debrief?session={session}"
            assert errors == []
        finally:
            context.close()
        results = api(base, f"/api/results?session={session}")["results"]
        assert any(r["rider_id"] == "r01" and r["power_avg"] for r in results)
    # A restart: pairings and the profile history are kept in the state directory.
    with RunningDaemon(tmp_path, edit=_with_radios) as running:
        base = running.base
        pairs = {p["key"]: p["rider"] for p in api(base, "/api/radios")["pairings"]}
        assert pairs["ant:4321"] == "r01" and pairs["chip:DM-0099"] == "r01"
        assert pairs[f"ble:{FakeBle.address}"] == "r02"
        anna = next(r for r in api(base, "/api/riders") if r["id"] == "r01")
        assert anna["ftp_w"] == 300 and anna["history"][-1]["ftp_w"] == 300
        context = browser.new_context(viewport=PHONE, has_touch=True, is_mobile=True)
        page = context.new_page()
        try:
            # Review: the ended session, played again from the spool through the same pipeline.
            page.goto(base + "/setup")
            wait_until(page, f"window.setup && window.setup.sessions.some(s => s.session === '{session}')", 20)
            page.fill("#pin", TOKEN)
            page.locator("#review .radio-row", has_text="Hill repeats").get_by_role("button").click()
            wait_until(page, "location.pathname === '/' || window.setup.messages.review !== ''", 20)
            assert page.evaluate("location.pathname === '/' ? '' : window.setup.messages.review") == ""
            wait_until(page, "window.trackside !== undefined", 20)
            wait_until(page, "window.trackside.count() >= 1", 60)
            review = page.evaluate("window.trackside.session")
            assert review != session and review.startswith("replay-")
            filters(page).locator("#session-select").scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "session-picker.png"))
            options = filters(page).locator("#session-select option").all_inner_texts()
            assert any(o.startswith("Hill repeats") for o in options)
            assert any(o.startswith("review of Hill repeats") for o in options)
        finally:
            context.close()


def test_sessions_and_riders_from_the_command_line_and_notes_in_exports(tmp_path: Path, gateway_env: dict[str, str]
                                                                         ) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway", *args, "--url", running.base, "--pin", TOKEN],
                              env=gateway_env, capture_output=True, text=True, timeout=120)

    with RunningDaemon(tmp_path) as running:
        out = cli("session", "start", "Tyre test", "--tag", "tyres=1.6bar", "--rider", "r01", "--rider", "r02")
        assert out.returncode == 0, out.stderr
        session = out.stdout.split()[1]
        bad = cli("session", "start", "Again", "--tag", "no-equals-sign")
        assert bad.returncode == 2 and "is not name=value" in bad.stderr and "Traceback" not in bad.stderr
        assert cli("rider", "set", "r01", "--ftp", "280", "--from", "2026-01-01").returncode == 0
        assert "2026-01-01: 280.0 W" in cli("rider", "list").stdout
        wrong = subprocess.run([sys.executable, "-m", "gateway", "session", "end", "--url", running.base, "--pin",
                                "nope-nope"], env=gateway_env, capture_output=True, text=True, timeout=60)
        assert wrong.returncode == 2 and "wrong admin PIN" in wrong.stderr
        # A replay of the sample gives results to take notes on.
        started = running.api("/api/replays", {"files": ["@sample"], "speed": 0})
        deadline = time.monotonic() + 60
        while running.api(f"/api/replays/{started['session']}")["state"] != "finished":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        first = running.api(f"/api/results?session={started['session']}")["results"][0]
        api(running.base, "/api/notes", {"session": started["session"], "rider_id": first["rider_id"],
                                         "number": first["number"], "text": "chain dropped"})
        shown = running.api(f"/api/results?session={started['session']}")["notes"]
        assert shown[0]["text"] == "chain dropped"
        with urllib.request.urlopen(f"{running.base}/api/export?session={started['session']}&format=json") as r:
            rows = json.loads(r.read())["results"]
        noted = [row for row in rows if row["note"]]
        assert [(n["rider_id"], n["number"], n["note"]) for n in noted] == [
            (first["rider_id"], first["number"], "chain dropped")]
        assert all(row["ftp_w_used"] is not None for row in rows)  # the values the session used
        ended = cli("session", "end")
        assert ended.returncode == 0 and session in ended.stdout
        listed = cli("session", "list").stdout
        assert "Tyre test" in listed
        assert cli("session", "end").returncode == 2  # nothing started any more
