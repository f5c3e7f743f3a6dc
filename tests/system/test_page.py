"""The coach's page in a real headless Chromium against the real server on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from harness import ARTIFACTS, ROOT, TOKEN, RunningDaemon

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
# Playwright's own event loop grows a thread pool ("asyncio_N") while the module's browser lives.
pytestmark = pytest.mark.allow_threads("asyncio_")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """A headless Chromium for the module's tests (the page, the sun, the morning, the debrief)."""
    yield from launch_chromium()


def launch_chromium() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[RunningDaemon]:
    with RunningDaemon(tmp_path) as d:
        yield d


def wait_until(page, expression: str, timeout: float = 60.0) -> None:
    """Poll ``expression`` in the page until it is true. Through page.evaluate (the browser's own
    debugging channel): Playwright's wait_for_function compiles its string with Function(), which
    the page's Content-Security-Policy (no 'unsafe-eval') rightly refuses."""
    from playwright.sync_api import Error as PlaywrightError

    deadline = time.monotonic() + timeout
    while True:
        try:
            if page.evaluate(expression):
                return
        except PlaywrightError as exc:
            # The page navigated while the expression ran (a button that goes to another page):
            # the new page is asked at the next turn.
            if "Execution context was destroyed" not in str(exc):
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting in the page for {expression}")
        time.sleep(0.1)


def filters(page: Any) -> Any:
    """The page with its filters shown (on a phone they are one tap away, behind "Filters")."""
    if not page.locator("#filters").is_visible():
        page.click("#filters-toggle")
        page.locator("#filters").wait_for(state="visible", timeout=5000)
    return page


def open_page(browser, url: str):
    context = browser.new_context(viewport={"width": 412, "height": 915})  # a phone
    page = context.new_page()
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    wait_until(page, "window.trackside !== undefined", 20)
    return context, page, requests, errors


def test_points_appear_and_nothing_leaves_the_box(browser, running: RunningDaemon) -> None:
    context, page, requests, errors = open_page(browser, running.base + "/")
    try:
        running.api("/api/replays", {"files": ["@sample"], "speed": 0.003})
        wait_until(page, "window.trackside.drawnPoints() >= 30")
        assert {urlparse(u).hostname for u in requests} == {"127.0.0.1"}
        assert errors == []
        boxes = page.evaluate("Object.values(window.trackside.chart().options.plugins.annotation.annotations)"
                              ".filter(a => a.type === 'box').length")
        assert boxes == 4
        assert page.locator("#link").inner_text().startswith("● live")
        assert page.locator("#latest tbody tr").count() == 8
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "matrix.png"), full_page=True)
        # Tap a point: its metrics appear.
        page.evaluate("window.trackside.pick(Object.values(window.trackside.rows)[0])")
        assert "segment" in page.locator("#detail").inner_text()
    finally:
        context.close()


def test_switching_views_changes_axes_and_labels(browser, running: RunningDaemon) -> None:
    running.api("/api/replays", {"files": ["@sample"], "speed": 0})
    context, page, _, _ = open_page(browser, running.base + "/")
    try:
        wait_until(page, "window.trackside.drawnPoints() >= 60")
        titles = ("[window.trackside.chart().options.scales.x.title.text, "
                  "window.trackside.chart().options.scales.y.title.text]")
        assert page.evaluate(titles) == ["← faster    Time (z-score)    slower →",
                                         "less power ←    Power (z-score)    → more power"]
        filters(page).select_option("#view-select", "wpk")
        wait_until(page, "window.trackside.chart().options.scales.x.title.text === 'Time (s)'", 10)
        assert page.evaluate(titles) == ["Time (s)", "Power (W/kg)"]
        assert page.evaluate("Object.keys(window.trackside.chart().options.plugins.annotation.annotations)") == []
        xs = page.evaluate("window.trackside.chart().data.datasets.flatMap(d => d.data.map(p => p.x))")
        assert min(xs) > 60  # absolute seconds now, not z-scores
        filters(page).select_option("#segment-select", "2")
        wait_until(page, "window.trackside.drawnPoints() === 18", 10)  # 6 riders x 3 laps of the descent
    finally:
        context.close()
    context, page, _, _ = open_page(browser, running.base + "/?views=u23")
    try:
        options = filters(page).locator("#view-select option").all_inner_texts()
        assert options == ["Power vs. Time (Z-Score)", "Watts per Kilo vs. Absolute Time"]
    finally:
        context.close()


def test_reconnects_after_the_server_restarts_and_shows_every_result_once(browser, running: RunningDaemon) -> None:
    context, page, _, _ = open_page(browser, running.base + "/")
    try:
        started = running.api("/api/replays", {"files": ["@sample"], "speed": 0.004})
        wait_until(page, "window.trackside.count() >= 10")
        assert running.daemon.server is not None
        running.daemon.server.stop()  # the page goes away; the pipeline runs on
        wait_until(page, "window.trackside.online === false", 20)
        assert "live" not in page.locator("#link").inner_text()
        time.sleep(2)  # results keep coming into the spool meanwhile
        running.daemon.start_web()
        wait_until(page, "window.trackside.online === true", 30)
        deadline = time.monotonic() + 60
        while running.api(f"/api/replays/{started['session']}")["state"] != "finished":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        server = running.api(f"/api/results?session={started['session']}")["results"]
        wait_until(page, f"window.trackside.count() === {len(server)}", 20)
        shown = page.evaluate("Object.values(window.trackside.rows).map(r => [r.rider_id, r.number, r.start])")
        assert sorted(map(tuple, shown)) == sorted((r["rider_id"], r["number"], r["start"]) for r in server)
        received = page.evaluate("Object.values(window.trackside.received)")
        assert set(received) == {1}  # none twice
        assert len(server) == 72
    finally:
        context.close()


def test_control_without_the_pin_is_refused(browser, running: RunningDaemon) -> None:
    started = running.api("/api/replays", {"files": ["@sample"], "speed": 0.05})
    context, page, _, _ = open_page(browser, running.base + "/")
    try:
        wait_until(page, "window.trackside.replays.length === 1", 20)
        page.evaluate("window.trackside.pin = ''")
        page.get_by_role("button", name="pause").click()
        wait_until(page, "document.querySelector('#replay .replay-row .message').innerText"
                         ".startsWith('Enter the admin PIN first')", 10)
        assert running.api(f"/api/replays/{started['session']}")["state"] == "playing"
        page.fill("#pin", "wrong-pin")
        page.get_by_role("button", name="pause").click()
        wait_until(page, "document.querySelector('#replay .replay-row .message').innerText.startsWith('Wrong')", 10)
        assert running.api(f"/api/replays/{started['session']}")["state"] == "playing"
        page.fill("#pin", TOKEN)
        page.get_by_role("button", name="pause").click()
        deadline = time.monotonic() + 10
        while running.api(f"/api/replays/{started['session']}")["state"] != "paused":
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        context.close()


def test_a_config_without_chart_views_draws_the_seeds_views(browser, tmp_path: Path) -> None:
    """Before: a `--config` file without `web.chart.views` did not inherit the embedded views: the View
    menu was empty and the chart said "No results match these filters" while the table had rows.
    `make hub-demo`'s own configs did this, on the box and on the hub."""
    import re

    from gateway import config

    script = (ROOT / "tools" / "hub-demo").read_text()
    box = re.search(r'cat > "\$dir/box.yaml" <<YAML\n(.*?)\nYAML\n', script, re.S)
    assert box is not None, "tools/hub-demo writes its box's config as a heredoc"
    text = box.group(1).replace("$dir", str(tmp_path)).replace("$bootstrap", "127.0.0.1:9")
    assert "views" not in text
    data = config.parse(text, "hub-demo box.yaml").data
    data["kafka"]["enabled"] = False
    with RunningDaemon(tmp_path / "state", data=data) as running:
        context, page, _, errors = open_page(browser, running.base + "/")
        try:
            assert filters(page).locator("#view-select option").all_inner_texts() == [
                "Power vs. Time (Z-Score)", "Power vs. Time (Modified Z-Score)", "Watts per Kilo vs. Absolute Time"]
            running.api("/api/replays", {"files": ["@sample"], "speed": 0})
            wait_until(page, "window.trackside.drawnPoints() >= 30")
            assert errors == []
        finally:
            context.close()


def test_the_page_runs_without_unsafe_eval(browser, running: RunningDaemon) -> None:
    """The Content-Security-Policy has no 'unsafe-eval' (Alpine's CSP build reads the attributes); so
    the attributes may use only what that build reads: the component's own properties and methods, no
    browser globals, one expression each (no ';', '??', '?.', '=>' nor statements)."""
    import re
    import urllib.request

    with urllib.request.urlopen(running.base + "/") as reply:
        policy = reply.headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "unsafe-eval" not in policy
    static = ROOT / "gateway" / "web" / "static"
    attribute = re.compile(r'\s(?:x-[a-z:.-]+|@[a-z.:-]+|:[a-z-]+)="([^"]*)"')
    forbidden = re.compile(r";|\?\?|\?\.|=>|\bif \(|\b(?:window|document|location|Math|Number|String|Object|JSON|Date|"
                           r"encodeURIComponent|parseInt|parseFloat|Array|console)\b")
    text = re.compile(r"'(?:[^'\\]|\\.)*'")  # a string literal says what it likes
    bad = [(page.name, expression) for page in static.glob("*.html")
           for expression in attribute.findall(page.read_text()) if forbidden.search(text.sub("''", expression))]
    assert bad == []
    warnings: list[str] = []
    for path in ("/", "/setup", "/debrief"):
        context = browser.new_context()
        page = context.new_page()
        page.on("console", lambda m: warnings.append(m.text) if "Alpine" in m.text or "CSP" in m.text else None)
        page.on("pageerror", lambda e: warnings.append(str(e)))
        try:
            page.goto(running.base + path)
            page.wait_for_load_state("networkidle")
            time.sleep(0.5)
            assert warnings == [], (path, warnings)
        finally:
            context.close()
