"""The coach's morning at the course (issue #15), in a real headless Chromium at phone size against
the real daemon: start a named session, pair two power meters and a chip from fake radios that
send pages built to the ANT+ and Bluetooth power profiles, see live watts, record an FTP with its date, end the
session, restart the daemon (pairings and profile history still there), review the ended session.
Also: the rider book on its own, the command line, notes on results and in exports."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from harness import TOKEN, RunningDaemon
from test_page import ARTIFACTS, launch_chromium, wait_until

from gateway.config.settings import MeterSettings, RiderSettings
from gateway.decode.ble_power import SERVICE
from gateway.model import GateCrossing
from gateway.pipeline.riderbook import RiderBook, RiderBookError

pytestmark = pytest.mark.allow_threads("asyncio_", "fake-")
PHONE = {"width": 412, "height": 915}


def crank(ev: int, period: int, torque: int) -> bytes:
    """A crank torque page (0x12) built to the ANT+ power profile."""
    return bytes([0x12, ev & 0xFF, ev & 0xFF, 90, period & 0xFF, period >> 8, torque & 0xFF, torque >> 8])


def extended(page: bytes, device: int) -> bytes:
    """What the stick hands over with extended messages on: the page, a flag, the channel id."""
    return page + bytes([0x80, device & 0xFF, device >> 8, 11, 0x05])


class FakeStick:
    """openant's Node at its boundary with two power meters in range (4321 and 8765): the search
    channel hears whichever it holds; a channel of its own gets its meter's pages."""

    def __init__(self) -> None:
        self.channels: list[SimpleNamespace] = []
        self._stop = threading.Event()

    def set_network_key(self, network: int, key: list[int]) -> None:
        pass

    def new_channel(self, ctype: int, network: int = 0, ext: int = 0) -> SimpleNamespace:
        ch = SimpleNamespace(on_broadcast_data=None, on_burst_data=None, device=None)
        ch.set_id = lambda dev, dtype, tt: setattr(ch, "device", dev)
        ch.set_period = ch.set_search_timeout = ch.set_rf_freq = ch.open = ch.enable_extended_messages = (
            lambda *_: None)
        self.channels.append(ch)
        return ch

    def start(self) -> None:
        pages: dict[int, list[bytes]] = {4321: [], 8765: []}
        n = 0
        while not self._stop.wait(0.25):
            n += 1
            for device in pages:
                # Accumulated crank period and torque, about 250 W at 90 rpm.
                page = crank(n, (1365 * n) & 0xFFFF, ((900 + device % 50) * n) & 0xFFFF)
                for ch in list(self.channels):
                    if ch.device == device:
                        ch.on_broadcast_data(page)
                    elif ch.device == 0 and (n // 8) % 2 == list(pages).index(device):
                        ch.on_broadcast_data(extended(page, device))  # the search channel takes turns

    def stop(self) -> None:
        self._stop.set()


class FakeBle:
    """bleak at its boundary: one power meter advertising the cycling power service, notifying
    0x2A63 measurements (instantaneous power 250 W) once connected."""

    address = "c4:7c:8d:6a:11:22"

    def __init__(self) -> None:
        self.device = SimpleNamespace(address=self.address.upper(), name="Stages 1234")

    async def discover(self, timeout: float, return_adv: bool, service_uuids: list[str]) -> dict[str, Any]:
        await asyncio.sleep(0.2)
        return {self.device.address: (self.device, SimpleNamespace(service_uuids=[SERVICE], rssi=-61))}

    async def find_device_by_filter(self, match: Any, timeout: float) -> Any:
        adv = SimpleNamespace(service_uuids=[SERVICE])
        if match(self.device, adv):
            return self.device
        await asyncio.sleep(min(timeout, 1.0))
        return None

    def client(self, device: Any, disconnected_callback: Any) -> Any:
        class Client:
            is_connected = False

            async def connect(self) -> None:
                self.is_connected = True

            async def start_notify(self, uuid: str, handler: Any) -> None:
                async def notify() -> None:
                    while self.is_connected:
                        handler(None, bytearray(bytes.fromhex("0000FA00")))
                        await asyncio.sleep(0.25)
                self.task = asyncio.get_running_loop().create_task(notify())

            async def disconnect(self) -> None:
                self.is_connected = False
                self.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self.task

        return Client()


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
            # The radios: two ANT+ meters by the search channel, one BLE meter, and a chip nobody owns.
            running.daemon.sessions.submit(GateCrossing("serial", "DM-0099", "SF", time.time()))
            wait_until(page, "window.setup.radios.ant && window.setup.radios.ant.length === 2 && "
                             "window.setup.radios.ble.length === 1 && window.setup.radios.chips.length === 1", 30)
            wait_until(page, "window.setup.radios.ant.every(d => d.power_w > 0)", 20)
            assert " W · " in page.locator('[data-key="ant:4321"]').inner_text()  # live watts
            assert "-61 dBm" in page.locator(f'[data-key="ble:{FakeBle.address}"]').inner_text()
            page.screenshot(path=str(ARTIFACTS / "pairing.png"), full_page=True)
            page.locator('[data-key="ant:4321"] select').select_option("r01")
            wait_until(page, "window.setup.messages.pairing.startsWith('4321 is Anna')", 10)
            page.locator(f'[data-key="ble:{FakeBle.address}"] select').select_option("r02")
            page.locator('[data-key="chip:DM-0099"] select').select_option("r01")
            wait_until(page, "window.setup.radios.chips.every(c => c.rider === 'r01')", 10)
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
            # Weather: the session ends from the phone (two taps).
            page.click("#end-session")
            page.click("#end-session")
            wait_until(page, "window.setup.current.named === false", 30)
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
            page.locator("#session-select").scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "session-picker.png"))
            options = page.locator("#session-select option").all_inner_texts()
            assert any(o.startswith("Hill repeats") for o in options)
            assert any(o.startswith("review of Hill repeats") for o in options)
        finally:
            context.close()


def test_the_rider_book_keeps_values_by_date_and_pairings_over_the_yaml(tmp_path: Path) -> None:
    roster = (RiderSettings("r01", "Anna", "u23", 58, 245, "DM-0001", (MeterSettings("ant", "111"),)),
              RiderSettings("r02", "Lea", None, 61, 270, None, (MeterSettings("ant", "111"),)))
    book = RiderBook(tmp_path / "riders.json", roster)
    assert any("ant:111 is assigned to 2 riders" in w for w in book.warnings())
    book.set_profile("r01", ftp_w=260, day="2026-06-01")
    book.set_profile("r01", weight_kg=57.5, day="2026-09-01")
    june = time.mktime(time.strptime("2026-07-15", "%Y-%m-%d"))
    may = time.mktime(time.strptime("2026-05-15", "%Y-%m-%d"))
    autumn = time.mktime(time.strptime("2026-10-01", "%Y-%m-%d"))
    by = {t: {r.id: r for r in book.riders_on(t)} for t in (may, june, autumn)}
    assert (by[may]["r01"].ftp_w, by[may]["r01"].weight_kg) == (245, 58)  # the YAML's before any entry
    assert (by[june]["r01"].ftp_w, by[june]["r01"].weight_kg) == (260, 58)
    assert (by[autumn]["r01"].ftp_w, by[autumn]["r01"].weight_kg) == (260, 57.5)
    result = book.pair("ant", "111", "r02")
    assert result["before"] is None
    riders = {r.id: r for r in book.riders_on(autumn)}
    assert not riders["r01"].power_meters and riders["r02"].power_meters == (MeterSettings("ant", "111"),)
    assert book.warnings() == []
    book.pair("chip", "DM-0007", "r02")
    assert {r.id: r.transponder for r in book.riders_on(autumn)}["r02"] == "DM-0007"
    book.add("r07", "Mia")
    again = RiderBook(tmp_path / "riders.json", roster)  # what a restart reads
    assert [r.id for r in again.riders_on(autumn)] == ["r01", "r02", "r07"]
    assert again.pairings()["ant:111"] == "r02"
    with pytest.raises(RiderBookError, match="not plausible"):
        again.set_profile("r01", ftp_w=5000)
    with pytest.raises(RiderBookError, match="no rider"):
        again.pair("ant", "5", "nobody")
    (tmp_path / "riders.json").write_text("{broken")
    fresh = RiderBook(tmp_path / "riders.json", roster)  # kept aside: the box starts from the YAML's riders
    assert fresh.damaged is not None and fresh.damaged.startswith("riders.json: not JSON")
    assert [r.id for r in fresh.riders_on(autumn)] == ["r01", "r02"]


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
