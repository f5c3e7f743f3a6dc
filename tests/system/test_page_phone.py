"""The matrix on a phone, round three (#34), at 390x844 with touch on a real daemon: the chart first,
a tap that finds its point or offers a choice that holds it, the lap grid in m:ss, words a coach
reads; screenshots of each view in tests/artifacts/."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import ARTIFACTS
from test_page import filters, launch_chromium, wait_until
from test_page_sun import daemon, phone

pytestmark = pytest.mark.allow_threads("asyncio_")  # Playwright's, for the module's browser

POINTS = """(() => { const t = window.trackside, c = t.chart(), box = c.canvas.getBoundingClientRect();
  return c.data.datasets.flatMap((d, i) => d.ring ? [] : c.getDatasetMeta(i).data.map((el, k) =>
    [d.data[k].row.key, box.left + el.x, box.top + el.y])); })()"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium()


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"phone-r3-{name}.png"))


def test_the_chart_comes_first_and_a_tap_always_finds_its_point(browser: Any, tmp_path: Path) -> None:
    with daemon(tmp_path) as running:
        running.api("/api/replays", {"files": ["@sample"], "speed": 0})
        context, page, errors = phone(browser, running.base + "/", {"width": 390, "height": 844})
        try:
            wait_until(page, "window.trackside.replays.length > 0 && window.trackside.replays.every("
                             "r => r.state === 'finished') && window.trackside.drawnPoints() >= 70", 60)
            top = page.evaluate("document.querySelector('#matrix').getBoundingClientRect().top")
            assert top <= 844 / 4, top
            # The pill and the links on one line each.
            for selector in ("#link", ".navlink[href='/setup']", "#filters-toggle"):
                box = page.locator(selector).bounding_box()
                assert box is not None and box["height"] <= 48, (selector, box)
            assert re.fullmatch(r"● live · \d+ s ago", page.locator("#link").inner_text())
            _shot(page, "matrix")
            points = page.evaluate(POINTS)
            assert len(points) >= 70
            for key, _, _ in points:
                for angle in (45, 135, 225, 315):
                    page.evaluate("window.trackside.unpick(); window.scrollTo(0, 0)")
                    x, y = next((px, py) for k, px, py in page.evaluate(POINTS) if k == key)
                    page.touchscreen.tap(x + 9.5 * math.cos(math.radians(angle)),
                                         y + 9.5 * math.sin(math.radians(angle)))
                    wait_until(page, "window.trackside.picked !== null || window.trackside.choices.length > 0", 5)
                    got = page.evaluate("[window.trackside.picked && window.trackside.picked.key, "
                                        "window.trackside.choices.map(c => c.key)]")
                    assert got[0] == key or key in got[1], (key, angle, got)
            # Where marks overlap the sheet offers every result under the finger.
            page.evaluate("window.trackside.unpick(); window.scrollTo(0, 0)")
            key, x, y = points[0]
            page.touchscreen.tap(x, y)
            wait_until(page, "window.trackside.picked !== null || window.trackside.choices.length > 0", 5)
            if page.evaluate("window.trackside.choices.length"):
                assert re.fullmatch(r"\d+ results here: which one\?", page.locator("#choices-title").inner_text())
                _shot(page, "choice")
                page.locator("#choices .choice").first.click()
            # The sheet: times as m:ss, the tapped point above the sheet, a z-score explained.
            wait_until(page, "window.trackside.picked !== null", 5)
            assert re.fullmatch(r"\d+:\d\d\.\d", page.locator(".detail-table td").first.inner_text())
            picked = page.evaluate("window.trackside.picked.key")
            _, _, py = next(p for p in page.evaluate(POINTS) if p[0] == picked)
            assert py + 13 <= page.locator("#detail").bounding_box()["y"], "the sheet covers the tapped point"
            page.click("#z-why")
            assert "standard deviations" in page.locator("#z-help").inner_text()
            _shot(page, "sheet")
            # The selection stays on its result while live scores move the points.
            page.evaluate("""(() => { const t = window.trackside, r = t.rows[t.picked.key];
                t.rows[r.key] = { ...r, time_zscore: (r.time_zscore || 0) + 0.3 }; t.redraw(); })()""")
            assert page.evaluate("k => window.trackside.picked.key === k && window.trackside.chart().data.datasets"
                                 ".some(d => d.ring && d.data[0].row.key === k)", picked)
            page.evaluate("window.trackside.unpick()")
            # The lap grid: every rider x every lap of a segment, as m:ss.
            grid = page.locator("#lap-grid")
            grid.scroll_into_view_if_needed()
            cells = page.locator("#lap-table .lap-cell:visible").all_inner_texts()
            assert len(cells) >= 18 and all(re.fullmatch(r"\d+:\d\d\.\d", c) for c in cells), cells[:5]
            page.locator(".seg-tab").nth(1).click()
            assert "segment 2" in page.locator("#lap-grid-caption").inner_text()
            _shot(page, "grid")
            # Filters one tap away; the W/kg and modified-z views keep every mark inside the axes.
            page.evaluate("window.scrollTo(0, 0)")
            filters(page)
            _shot(page, "filters")
            for view, name in (("wpk", "wpk"), ("modified", "modz")):
                if view not in page.evaluate("window.trackside.views.map(v => v.id)"):
                    continue
                page.select_option("#view-select", view)
                page.wait_for_timeout(300)
                inside = page.evaluate("""(() => { const c = window.trackside.chart(), a = c.chartArea;
                    return c.data.datasets.flatMap((d, i) => c.getDatasetMeta(i).data.map(el =>
                      el.x - 13 >= a.left - 1 && el.x + 13 <= a.right + 1 && el.y - 13 >= a.top - 1
                      && el.y + 13 <= a.bottom + 1)); })()""")
                assert inside and all(inside), view
                ticks = page.evaluate("window.trackside.chart().scales.x.ticks.map(t => t.value)")
                if view == "modified":
                    assert all(float(t).is_integer() for t in ticks), ticks
                    assert page.evaluate("window.trackside.extent.x") <= 4
                _shot(page, name)
            assert errors == []
        finally:
            context.close()


def test_a_looping_replay_never_takes_the_coachs_live_session(browser: Any, tmp_path: Path) -> None:
    with daemon(tmp_path) as running:
        context, page, errors = phone(browser, running.base + "/", {"width": 390, "height": 844})
        try:
            cases = page.evaluate("""[takesOver('box-1-20261205-090000-a1b2c3', 'replay-box-1-20261205-091000-d4e5f6'),
                takesOver('replay-box-1-20261205-091000-d4e5f6', 'box-1-20261205-092000-a1b2c3'),
                takesOver('replay-box-1-20261205-091000-d4e5f6', 'replay-box-1-20261205-092000-a9b8c7'),
                takesOver('box-1-20261205-090000-a1b2c3', 'box-1-20261205-100000-a1b2c3')]""")
            assert cases == [False, True, True, True]
            assert errors == []
        finally:
            context.close()
