"""The page a coach reads in the sun (issue #19), each point in a real headless Chromium at phone
size (412x915, touch) against the real server: honest liveness through a proxy that holds or cuts
the connection, quadrants that cannot mislead, a generous tap, a table that says what it shows,
riders told apart by more than colour, replay controls that do one thing per tap, accessibility."""

from __future__ import annotations

import colorsys
import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import ARTIFACTS, TOKEN, RunningDaemon, free_port
from test_page import filters, launch_chromium, wait_until

pytestmark = pytest.mark.allow_threads("asyncio_", "proxy")
PHONE = {"width": 412, "height": 915}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium()


def phone(browser: Any, url: str, viewport: dict[str, int] = PHONE) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(viewport=viewport, has_touch=True, is_mobile=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    wait_until(page, "window.trackside !== undefined", 20)
    return context, page, errors


def daemon(tmp_path: Path, **web: Any) -> RunningDaemon:
    def edit(data: dict[str, Any]) -> None:
        data["web"].update(web)
        views = data["web"]["chart"]["views"]
        # A view whose configured scale shows only the slower half: two quadrants on screen.
        views.append({**views[0], "id": "slower", "name": "Slower half", "xScale": {"min": 0.2, "max": 3}})
    return RunningDaemon(tmp_path, edit=edit)


class Proxy:
    """A TCP relay between the browser and the box that can hold (connections stay open, nothing
    passes: a weak Wi-Fi) or cut (every connection closed, new ones refused: out of range)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.flowing = threading.Event()
        self.flowing.set()
        self.cut_off = False
        self.socks: list[socket.socket] = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut_off:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), name="proxy-pump", daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self.flowing.wait()
                if self.cut_off:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def hold(self) -> None:
        self.flowing.clear()

    def cut(self) -> None:
        self.cut_off = True
        self.flowing.set()
        with self.lock:
            for s in self.socks:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        self.cut_off = False
        self.flowing.set()

    def close(self) -> None:
        self.closed = True
        self.cut()
        self.listener.close()
        with self.lock:
            for s in self.socks:
                s.close()


def link_and_strip(page: Any) -> tuple[str, str, str]:
    return page.evaluate("[window.trackside.link().level, document.querySelector('#link').innerText, "
                         "document.querySelector('#status-strip').innerText]")


def test_the_pill_says_how_old_the_news_is_and_never_contradicts_itself(browser: Any, tmp_path: Path) -> None:
    with daemon(tmp_path, heartbeat_s=1) as running:
        proxy = Proxy(running.daemon.web_port or 0)
        context, page, errors = phone(browser, f"http://127.0.0.1:{proxy.port}/")
        try:
            running.api("/api/replays", {"files": ["@sample"], "speed": 0.01})
            wait_until(page, "window.trackside.drawnPoints() >= 3", 60)
            level, text, _ = link_and_strip(page)
            assert level == "ok" and re.fullmatch(r"● live · \d+ s ago", text), text
            seen: list[tuple[str, str, str]] = []

            def watch(seconds: float) -> None:
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    seen.append(link_and_strip(page))
                    time.sleep(0.25)

            proxy.hold()  # a weak Wi-Fi: the stream stays open and silent
            watch(7)
            levels = [s[0] for s in seen]
            assert "warn" in levels and levels[-1] == "bad", levels
            assert levels.index("warn") < levels.index("bad")
            assert any(s[1].startswith("◐ no news for") for s in seen)
            assert seen[-1][1].startswith("○ offline · last update")
            assert "lost" in page.locator("#announce").inner_text()
            # Offline, nothing on the page says connected, the box's clock stops ticking beside "as of",
            # and the chart is dimmed.
            strip = seen[-1][2]
            assert "as of" in strip and "connected" not in strip, strip
            assert not re.search(r"\bclock \d{1,2}:\d\d", strip), strip
            assert "stale" in (page.locator(".chart-box").get_attribute("class") or "")
            proxy.restore()
            wait_until(page, "window.trackside.link().level === 'ok'", 20)
            assert "Back online" in page.locator("#announce").inner_text()
            proxy.cut()  # out of range: connections closed, new ones refused
            seen.clear()
            watch(6)
            assert seen[-1][0] == "bad"
            # Never "live" beside anything that says the box is away, never "live" once cut.
            for level, text, strip in seen:
                assert not (level == "ok" and "not answering" in strip)
                assert "live" not in text or level == "ok"
            assert all(s[0] != "ok" for s in seen[8:])
            proxy.restore()
            wait_until(page, "window.trackside.link().level === 'ok'", 30)
            assert errors == []
        finally:
            context.close()
            proxy.close()


def test_quadrants_axes_and_labels_cannot_mislead(browser: Any, tmp_path: Path) -> None:
    with daemon(tmp_path) as running:
        context, page, errors = phone(browser, running.base + "/")
        try:
            running.api("/api/replays", {"files": ["@sample"], "speed": 0.004})
            wait_until(page, "window.trackside.count() >= 1")
            axes = ("['x', 'y'].map(a => [window.trackside.chart().scales[a].min, "
                    "window.trackside.chart().scales[a].max])")
            extents = []
            while page.evaluate("window.trackside.drawnPoints()") < 60:
                (x0, x1), (y0, y1) = page.evaluate(axes)
                if page.evaluate("window.trackside.drawnPoints()") > 0:
                    assert x0 == -x1 and y0 == -y1  # centred on 0
                    extents.append((x1, y1))
                time.sleep(0.2)
            assert extents == sorted(extents) and len(extents) > 5  # they only grow: points never jump
            titles = page.evaluate("[window.trackside.chart().options.scales.x.title.text, "
                                   "window.trackside.chart().options.scales.y.title.text]")
            assert titles[0].startswith("← faster") and titles[0].endswith("slower →")
            assert titles[1].endswith("→ more power")
            # Labels sit where no point is.
            boxes = page.evaluate("""(() => { const c = window.trackside.chart();
                const pts = c.data.datasets.flatMap((d, i) => c.getDatasetMeta(i).data.map(e => [e.x, e.y]));
                return [Object.values(c.options.plugins.annotation.annotations).filter(a => a.type === 'label')
                    .map(a => [a.quadrant, a.box]), pts]; })()""")
            labels, points = boxes
            assert {q for q, _ in labels} <= {"efficient", "strong", "costly", "easy"} and labels
            for _, b in labels:
                assert not any(b["x"] <= x <= b["x"] + b["w"] and b["y"] <= y <= b["y"] + b["h"] for x, y in points)
            # A view showing only the slower half labels and tints only the quadrants on screen.
            filters(page).select_option("#view-select", "slower")
            wait_until(page, "window.trackside.chart().scales.x.min === 0.2", 10)
            shown = page.evaluate("Object.values(window.trackside.chart().options.plugins.annotation.annotations)"
                                  ".filter(a => a.type === 'label').map(a => a.quadrant).sort()")
            assert set(shown) <= {"costly", "easy"}
            # A session's first result has no z-score yet: no tint, no label, a sentence instead.
            wait_until(page, "window.trackside.replays.every(r => r.state === 'finished')", 60)
            filters(page).select_option("#view-select", "zscore")
            page.evaluate("""(() => { const t = window.trackside; const r = Object.values(t.rows)[0];
                t.rows = { [r.key]: { ...r, time_zscore: null, power_zscore: null } };
                t.resetAxes(); t.redraw(); })()""")
            assert page.evaluate("Object.keys(window.trackside.chart().options.plugins.annotation.annotations)") == []
            assert page.locator("#chart-empty").inner_text().startswith("Waiting for results to compare")
            assert errors == []
        finally:
            context.close()


def test_a_tap_near_a_point_picks_the_nearest_and_opens_a_sheet_in_view(browser: Any, tmp_path: Path) -> None:
    with daemon(tmp_path) as running:
        running.api("/api/replays", {"files": ["@sample"], "speed": 0})
        context, page, errors = phone(browser, running.base + "/")
        try:
            # Every result in, so that no rescoring moves a point between aiming and tapping.
            wait_until(page, "window.trackside.drawnPoints() === 72")
            page.locator("#matrix").scroll_into_view_if_needed()
            time.sleep(0.5)
            box = page.locator("#matrix").bounding_box()
            points = page.evaluate("""(() => { const c = window.trackside.chart();
                return c.data.datasets.flatMap((d, i) =>
                    c.getDatasetMeta(i).data.map((e, k) => [e.x, e.y, d.data[k].row.key])); })()""")
            # Aim 18 px beside a point (outside its drawn mark): the nearest point within reach is picked,
            # or offered among the others under the finger.
            x, y, _ = points[len(points) // 2]
            tx, ty = x + 18, y
            nearest = min(points, key=lambda p: (p[0] - tx) ** 2 + (p[1] - ty) ** 2)
            page.touchscreen.tap(box["x"] + tx, box["y"] + ty)
            wait_until(page, "window.trackside.picked !== null || window.trackside.choices.length > 0", 5)
            offered = page.evaluate("window.trackside.choices.map(c => c.key)")
            if offered:
                assert nearest[2] in offered
                page.locator("#choices .choice").nth(offered.index(nearest[2])).click()
            wait_until(page, "window.trackside.picked !== null", 5)
            assert page.evaluate("window.trackside.picked.key") == nearest[2]
            ring = page.evaluate("window.trackside.chart().data.datasets.filter(d => d.ring)"
                                 ".map(d => d.data[0].row.key)")
            assert ring == [nearest[2]]
            sheet = page.locator("#detail").bounding_box()
            assert sheet["y"] + sheet["height"] <= PHONE["height"] + 1 and sheet["y"] >= PHONE["height"] * 0.4
            title = page.locator("#detail-title").inner_text()
            assert re.fullmatch(r"Lap \d+, segment \d+ \(.+\)", title), title
            text = page.locator("#detail").inner_text()
            assert "Time z-score" in text and "Power z-score" in text
            assert re.search(r"(Efficient|Strong|Costly|Easy)\s+(faster|slower) with (less|more) power"
                             r"|Average\s+within half a standard deviation", text)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "phone-sheet.png"))
            page.get_by_role("button", name="close the detail").click()
            assert page.evaluate("window.trackside.picked") is None
            assert errors == []
        finally:
            context.close()


CONTRAST = """(sel) => [...document.querySelectorAll(sel)].map(e => {
    const s = getComputedStyle(e);
    const hex = c => '#' + c.match(/\\d+/g).slice(0, 3).map(n => (+n).toString(16).padStart(2, '0')).join('');
    return contrast(hex(s.color), hex(s.backgroundColor)); })"""


def test_the_latest_table_says_lap_segment_units_and_quadrant_and_follows_the_filters(
        browser: Any, tmp_path: Path) -> None:
    with daemon(tmp_path) as running:
        running.api("/api/replays", {"files": ["@sample"], "speed": 0})
        context, page, errors = phone(browser, running.base + "/")
        try:
            wait_until(page, "window.trackside.drawnPoints() >= 60")
            heads = page.locator("#latest thead th").all_inner_texts()
            assert heads == ["Rider", "Lap.seg", "Time", "Watts", "W/kg", "Quadrant"]
            rows = page.locator("#latest tbody tr")
            assert rows.count() == 8
            for i in range(rows.count()):
                assert rows.nth(i).bounding_box()["height"] >= 44
                words = r"(Efficient|Strong|Costly|Easy|Average|not scored yet)"
                assert re.search(words, rows.nth(i).inner_text())
                assert re.fullmatch(r"\d+:\d\d\.\d", rows.nth(i).locator("td").nth(2).inner_text())  # m:ss
            assert min(page.evaluate(CONTRAST, "#latest .badge")) >= 4.5
            filters(page).select_option("#segment-select", "2")
            wait_until(page, "window.trackside.latest().every(r => r.segment === 2)", 5)
            assert all(c.startswith(("1.2", "2.2", "3.2")) for c in
                       page.locator("#latest tbody td:nth-child(2)").all_inner_texts())
            filters(page).select_option("#rider-select", "r02")
            filters(page).check("#only-focus")
            wait_until(page, "window.trackside.latest().every(r => r.rider_id === 'r02')", 5)
            assert set(page.locator("#latest tbody td:nth-child(1)").all_inner_texts()) == {"Lea"}
            assert "(segment 2 only, Lea only)" in page.locator("#latest-caption").inner_text()
            assert errors == []
        finally:
            context.close()


def _hue_sat(hex_colour: str) -> tuple[float, float]:
    r, g, b = (int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    h, _, s = colorsys.rgb_to_hls(r, g, b)
    return h * 360, s


def test_riders_are_told_apart_by_shape_and_initials_not_colour_alone(browser: Any, tmp_path: Path) -> None:
    def twenty(data: dict[str, Any]) -> None:
        data["web"].update(host="127.0.0.1")
        names = ["Anna", "Lea", "Nina", "Jonas", "Luca", "Marco", "Alex Berg", "Alex Brun", "Mia", "Noah", "Emma",
                 "Ben", "Lina", "Tim", "Sara", "Jan", "Eva", "Max", "Lou", "Kai"]
        data["riders"] = [*data["riders"], *({"id": f"x{i:02d}", "name": n} for i, n in enumerate(names[6:]))]
    with RunningDaemon(tmp_path, edit=twenty) as running:
        running.api("/api/replays", {"files": ["@sample"], "speed": 0})
        context, page, errors = phone(browser, running.base + "/")
        try:
            wait_until(page, "window.trackside.drawnPoints() >= 60")
            marks = page.evaluate("Object.entries(MARKS).map(([id, m]) => [id, m.colour, m.shape, m.text])")
            assert len(marks) == 20
            assert len({(c, s) for _, c, s, _ in marks}) == 20  # colour and shape together: no two alike
            assert len({t for *_, t in marks}) == 20  # and the initials inside differ too
            # The marks are the session's, as the server gives them: the PDF report draws the same.
            served = page.evaluate("fetch('/api/results').then(r => r.json()).then(d => d.marks)")
            assert len(served) >= 6
            assert all((c, s, t) == (served[i]["colour"], served[i]["shape"], served[i]["initials"])
                       for i, c, s, t in marks if i in served)
            # Twelve riders: any two differ in shape, or in lightness by 3:1 (told apart without hue).
            alike = page.evaluate("""(() => { const m = Object.values(MARKS).slice(0, 12), out = [];
                for (let i = 0; i < m.length; i++) for (let j = i + 1; j < m.length; j++)
                  if (m[i].shape === m[j].shape && contrast(m[i].colour, m[j].colour) < 3) out.push([i, j]);
                return out; })()""")
            assert alike == []
            quadrants = page.evaluate("Object.values(window.trackside.quadrants).map(q => q.color)")
            for _, colour, _, _ in marks:
                assert page.evaluate("c => contrast(c, '#ffffff')", colour) >= 3
                for q in quadrants:
                    tint = page.evaluate("([q]) => overWhite(q, 0x1f / 255)", [q])
                    assert page.evaluate("([a, b]) => contrast(a, b)", [colour, tint]) >= 3
                    hue, sat = _hue_sat(colour)
                    q_hue, _ = _hue_sat(q)
                    distance = min(abs(hue - q_hue), 360 - abs(hue - q_hue))
                    assert distance >= 25 or sat < 0.3, (colour, q)  # off the quadrants' hues
            # The legend is a row of buttons: a tap highlights the rider and keeps everyone on the chart.
            legend = page.locator("#legend button")
            assert legend.count() == 6 and min(legend.nth(i).bounding_box()["height"] for i in range(6)) >= 44
            drawn = page.evaluate("window.trackside.drawnPoints()")
            legend.filter(has_text="Lea").click()
            assert page.evaluate("window.trackside.focus") == "r02"
            page.evaluate("window.trackside.redraw()")  # the next update
            assert page.evaluate("window.trackside.drawnPoints()") == drawn
            assert page.evaluate("window.trackside.chart().data.datasets.filter(d => d.pointStyle.length && "
                                 "d.pointStyle.every(s => s === MARKS['r02'].full)).length") == 1
            assert errors == []
        finally:
            context.close()


def test_replay_controls_pin_first_one_replay_per_tap_and_say_paused(browser: Any, tmp_path: Path) -> None:
    with daemon(tmp_path) as running:
        context, page, errors = phone(browser, running.base + "/")
        try:
            order = page.evaluate("[...document.querySelectorAll('#replay input, #replay button')]"
                                  ".map(e => e.id || e.innerText)")
            assert order[0] == "pin"  # the PIN comes before the buttons
            assert page.get_by_label("Admin PIN").count() == 1
            page.evaluate("localStorage.clear(); window.trackside.pin = ''")
            page.click("#start-sample")
            assert page.locator("#control-message").inner_text().startswith("Enter the admin PIN first")
            page.fill("#pin", "not-the-pin")
            page.click("#start-sample")
            wait_until(page, "window.trackside.message.startsWith('Wrong admin PIN')", 5)
            assert running.api("/api/replays") == []
            page.fill("#pin", TOKEN)
            for _ in range(3):  # an impatient thumb
                page.locator("#start-sample").click(force=True, no_wait_after=True)
            time.sleep(2)
            started = running.api("/api/replays")
            assert len(started) == 1
            session = started[0]["session"]
            # The page shows the new replay at once, named, not a raw id.
            wait_until(page, f"window.trackside.session === '{session}'", 5)
            wait_until(page, "window.trackside.sessionLabel().startsWith('replay of')", 15)
            speed = page.locator("#replay .replay-row select").first
            assert speed.get_attribute("aria-label").startswith("speed of")
            assert speed.bounding_box()["height"] >= 44
            page.get_by_role("button", name="pause").click()
            wait_until(page, "window.trackside.sessionState() === 'paused'", 10)
            page.evaluate("window.trackside.poll()")
            wait_until(page, "document.querySelector('#session-state').textContent === 'paused'", 10)
            assert page.get_by_role("button", name="resume").is_visible()
            assert not page.get_by_role("button", name="pause").is_visible()
            page.get_by_role("button", name="stop").click()
            wait_until(page, "window.trackside.finishedReplays().length === 1", 10)
            assert page.locator("#replay .replay-row button").count() == 0  # a finished replay has no buttons
            assert "Finished replays (1)" in page.locator("#replay details summary").inner_text()
            assert errors == []
        finally:
            context.close()


def test_small_things_trail_header_sizes_and_landscape(browser: Any, tmp_path: Path) -> None:
    with daemon(tmp_path) as running:
        running.api("/api/replays", {"files": ["@sample"], "speed": 0})
        context, page, errors = phone(browser, running.base + "/")
        try:
            wait_until(page, "window.trackside.drawnPoints() >= 60")
            assert filters(page).locator("#trail").is_disabled()  # laps are one rider's
            filters(page).select_option("#rider-select", "r03")
            filters(page).check("#trail")
            assert page.locator("#trail-hint").inner_text().startswith("Choose a segment")
            filters(page).select_option("#segment-select", "1")
            trail = page.evaluate("window.trackside.chart().data.datasets.filter(d => d.showLine)"
                                  ".map(d => [d.lapLabels, d.data.map(p => p.row.lap)])")
            assert trail == [[True, [1, 2, 3]]]
            assert "replay-" not in page.locator("#session-label").inner_text()
            assert page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)") >= 16
            small = page.evaluate("""[...document.querySelectorAll('button, select, input[type=password], label.check')]
                .filter(e => e.offsetParent !== null).map(e => [e.id || e.innerText, e.getBoundingClientRect().height])
                .filter(([_, h]) => h < 44)""")
            assert small == []
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "phone-matrix.png"), full_page=True)
        finally:
            context.close()
        context, page, errors = phone(browser, running.base + "/", {"width": 915, "height": 412})
        try:
            wait_until(page, "window.trackside.drawnPoints() >= 60")
            page.locator(".chart-box").scroll_into_view_if_needed()
            chart = page.locator(".chart-box").bounding_box()
            assert chart["height"] <= 412  # the whole chart, axis titles included, fits the screen
            page.screenshot(path=str(ARTIFACTS / "landscape.png"))
            assert errors == []
        finally:
            context.close()


def test_screen_readers_get_the_chart_as_text_and_named_controls(browser: Any, tmp_path: Path) -> None:
    with daemon(tmp_path) as running:
        running.api("/api/replays", {"files": ["@sample"], "speed": 0.05})
        context, page, _ = phone(browser, running.base + "/")
        try:
            wait_until(page, "window.trackside.drawnPoints() >= 3")
            canvas = page.locator("#matrix")
            assert canvas.get_attribute("role") == "img"
            assert "points" in canvas.get_attribute("aria-label")
            described = page.locator("#" + canvas.get_attribute("aria-describedby")).inner_text()
            assert described.startswith("Latest segments")
            for name in ("Session", "View", "Segment", "Rider"):
                assert page.get_by_label(name, exact=True).count() == 1
            wait_until(page, "window.trackside.replays.length === 1", 10)
            assert page.get_by_role("combobox", name=re.compile("^speed of")).count() == 1
            assert page.locator("#announce").get_attribute("aria-live") == "polite"
        finally:
            context.close()
