"""Debrief (issue #16) end to end: the debrief API after a replay of the bundled sample, on the page
in Chromium, and the PDF report rendered by poppler."""

from __future__ import annotations

from typing import Any

TERRAIN = ["climb", "descent", "climb", "descent"]


def _finished(running: Any, session: str) -> None:
    import time

    deadline = time.monotonic() + 90
    while running.api(f"/api/replays/{session}")["state"] != "finished":
        assert time.monotonic() < deadline
        time.sleep(0.2)


def _ppm(path: Any) -> tuple[int, int, bytes]:
    """A binary PPM (P6) as width, height, RGB bytes: what pdftoppm writes without -png."""
    data = path.read_bytes()
    parts = data.split(maxsplit=4)
    assert parts[0] == b"P6"
    return int(parts[1]), int(parts[2]), parts[4]


def test_the_debrief_of_the_sample_on_the_page_and_as_a_pdf(tmp_path: Any) -> None:
    import shutil
    import subprocess
    import urllib.request

    from harness import TOKEN, RunningDaemon
    from playwright.sync_api import sync_playwright
    from test_page import ARGS, ARTIFACTS, CHROMIUM, wait_until

    with RunningDaemon(tmp_path / "state") as running:
        sessions = []
        for tyre in ("1.6bar", "1.8bar"):
            started = running.api("/api/replays", {"files": ["@sample"], "speed": 0, "tags": [f"tyres={tyre}"]})
            _finished(running, started["session"])
            sessions.append(started["session"])
        out = running.api(f"/api/debrief?session={sessions[0]}")
        fatigue = out["fatigue"]
        assert len(fatigue["series"]) == 6 * 4 and out["segment_names"][0] == "First climb"
        assert all(len(s["laps"]) == 3 for s in fatigue["series"])
        assert out["comparable"] == {"tyres": ["1.6bar", "1.8bar"]}
        cmp = running.api(f"/api/debrief?session={sessions[0]}&tag=tyres")["comparison"]
        # The same rides under both tags: no difference, and the comparison says it cannot tell.
        assert len(cmp["segments"]) == 4
        assert all(s["verdict"].startswith("cannot tell") and abs(s["effect_pct"]) < 1e-9 for s in cmp["segments"])
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            context = browser.new_context(viewport={"width": 412, "height": 915}, has_touch=True, is_mobile=True)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            # A phone with a share sheet: what the page hands it is recorded.
            page.add_init_script("navigator.canShare = () => true; navigator.share = async (d) => { "
                                 "window.shared = d.files.map(f => [f.name, f.type, f.size]); };")
            page.goto(f"{running.base}/debrief?session={sessions[0]}")
            wait_until(page, "window.debrief !== undefined && window.debrief.riderSeries().length === 4", 30)
            # Three laps: the chart; a session of one lap so far: words, not a dot on empty axes.
            assert page.locator("#fatigue").is_visible() and page.locator("#one-lap").is_hidden()
            page.evaluate("""(() => { const d = window.debrief, keep = d.data.fatigue.series;
                d.data.fatigue.series = keep.map(s => ({ ...s, laps: s.laps.slice(0, 1) })); })()""")
            wait_until(page, "getComputedStyle(document.getElementById('one-lap')).display !== 'none'", 5)
            assert page.locator("#fatigue").is_hidden()
            page.reload()
            wait_until(page, "window.debrief !== undefined && window.debrief.riderSeries().length === 4", 30)
            assert page.locator("#trends li").count() == 4
            assert "% a lap" in page.locator("#trends").inner_text()
            page.click("#share-report")
            wait_until(page, "window.shared !== undefined", 30)
            (shared,) = page.evaluate("window.shared")
            assert shared[0].endswith(" - Anna.pdf") and shared[0][:4].isdigit() and shared[1] == "application/pdf"
            assert shared[2] > 10_000
            page.select_option("#tag-select", "tyres")
            wait_until(page, "document.querySelectorAll('#comparison tbody tr').length === 4", 20)
            # W' for the chosen rider: CP and W' from the two sessions of the sample, each lap's cost.
            wait_until(page, "document.querySelector('#wbal-head').innerText.length > 0", 20)
            assert page.locator("#wbal-head").inner_text().startswith("CP ")
            assert "from the best 3-20 minute efforts of 2 session(s)" in page.locator("#wbal-head").inner_text()
            wait_until(page, "document.querySelectorAll('#wbal-laps li').length === 3", 10)
            assert "kJ above CP, W' down to" in page.locator("#wbal-laps").inner_text()
            shown = page.locator("#comparison").inner_text()
            assert "cannot tell" in shown
            # What went into each side, for every segment.
            assert shown.count("1.6bar: 6 rider(s), 1 session(s), 3 lap(s), 18 run(s)") == 4, shown
            # Plan a test: ABBA for the squad, and what this course's history says of the runs it needs.
            page.fill("#plan-tag", "tyres")
            page.fill("#plan-a", "1.8bar")
            page.fill("#plan-b", "1.6bar")
            page.click("#plan-make")
            wait_until(page, "document.querySelectorAll('#plan-order tbody tr').length === 6", 20)
            rows = page.locator("#plan-order tbody tr").all_inner_texts()
            assert "1.8bar → 1.6bar → 1.6bar → 1.8bar" in rows[0] and "1.6bar → 1.8bar → 1.8bar → 1.6bar" in rows[1]
            assert "runs of each setup per rider" in page.locator("#plan-note").inner_text()
            href = page.locator("#report").get_attribute("href")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "debrief.png"), full_page=True)
            # Ride it: the set-up page (same phone) tags each rider's run as the next session starts.
            page.click("#plan-use")
            page.goto(f"{running.base}/setup")
            wait_until(page, "window.setup !== undefined && window.setup.plan !== null", 20)
            assert page.locator("#planned").inner_text().startswith("Planned test (tyres), run 1 of 4:")
            page.fill("#pin", TOKEN)
            page.dispatch_event("#pin", "change")
            page.fill("#session-name", "Tyre test")
            page.click("#start-session")
            wait_until(page, "window.setup.current.named === true", 20)
            own = running.api("/api/session")["rider_tags"]
            assert len(own) == 6 and sorted(v["tyres"] for v in own.values()) == ["1.6bar"] * 3 + ["1.8bar"] * 3
            assert page.evaluate("window.setup.plan.next") == 1
            assert errors == []
            context.close()
            browser.close()
        with urllib.request.urlopen(running.base + href, timeout=60) as reply:
            assert reply.headers["Content-Type"] == "application/pdf"
            pdf = reply.read()
        with urllib.request.urlopen(f"{running.base}/api/report.pdf?session={sessions[0]}&rider=r02", timeout=60) as r:
            own = r.read()
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    pages = int(next(line.split()[1] for line in subprocess.run(
        ["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout.splitlines()
        if line.startswith("Pages:")))
    assert pages >= 3  # words and lap grids, three laps' matrices (two a page), fatigue (and comparisons)
    subprocess.run(["pdftoppm", "-r", "40", str(path), str(tmp_path / "page")], check=True)
    for k in range(1, pages + 1):
        _, _, rgb = _ppm(next(tmp_path.glob(f"page-{k:0{len(str(pages))}d}.ppm")))
        ink = sum(1 for i in range(0, len(rgb), 3 * 7) if rgb[i] < 200)
        assert ink > 50, f"page {k} is blank"
    texts = [subprocess.run(["pdftotext", "-f", str(k), "-l", str(k), str(path), "-"], capture_output=True, text=True,
                            check=True).stdout for k in range(1, pages + 1)]
    first = next(k for k, text in enumerate(texts, start=1) if "Efficiency matrix, lap" in text)
    assert all(word in texts[first - 1] for word in ("Efficient", "Strong", "Costly", "Easy"))
    _, _, rgb = _ppm(next(tmp_path.glob(f"page-{first:0{len(str(pages))}d}.ppm")))
    pixels = {tuple(rgb[i:i + 3]) for i in range(0, len(rgb), 3)}
    # The four tints: greenish, yellowish, reddish and bluish pixels are all there.
    assert any(g > r + 8 and g > b + 8 for r, g, b in pixels)
    assert any(r > b + 20 and g > b + 10 and abs(r - g) < 20 for r, g, b in pixels)
    assert any(r > g + 10 and r > b + 10 for r, g, b in pixels)
    assert any(b > r + 10 for r, g, b in pixels)
    subprocess.run(["pdftoppm", "-r", "60", "-png", "-f", "1", "-l", str(first), str(path), str(tmp_path / "first")],
                   check=True)
    for made in tmp_path.glob("first-*.png"):
        shutil.copy(made, ARTIFACTS / f"report-page{made.stem.rsplit('-', 1)[1].lstrip('0')}.png")
    own_text = subprocess.run(["pdftotext", "-", "-"], input=own, capture_output=True, check=True).stdout.decode()
    assert own_text.lstrip().startswith("Lea") and "Anna" not in own_text  # the others are grey dots, unnamed
