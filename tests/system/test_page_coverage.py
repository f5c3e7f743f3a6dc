"""Honest coverage on the coach's page (#30), in a real headless Chromium at phone size: one box
beside the course (its `sim` source: the pages and timing lines it would hear) hears each rider
whole on the segment it stands by and for seconds on the others. Those results are drawn hollow,
say how much power was heard, stay out of the power z-scores, and say which box heard them; the
box page links to the hub's course view."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import RunningDaemon
from test_page import filters, launch_chromium, wait_until

from gateway.cli.simulate import write_feeds
from gateway.simulate.ride import simulate
from gateway.simulate.world import BoxClock, Gate, SimBox, SimCourse, SimRider, World

pytestmark = pytest.mark.allow_threads("asyncio_")
COURSE = SimCourse(600.0, (Gate("SF", 0.0), Gate("G1", 200.0), Gate("G2", 400.0)), ("climb", "flat", "descent"))
RIDERS = tuple(SimRider(f"r{i}", f"Rider {i}", 230.0 + 15 * i, 10001 + i, f"C-{i}", start_s=10.0 * i)
               for i in range(4))
# At 100 m with a 110 m range: segment 1 whole, a few metres of segment 3 and none of segment 2.
BOX = SimBox("box-1", 100.0, 110.0, ("SF", "G1", "G2"), BoxClock(0.0, 0.0, 2.0), reception=1.0)
HUB = "http://192.168.8.20:8090/"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium()


def test_partial_power_is_hollow_says_how_much_was_heard_and_moves_no_score(browser: Any, tmp_path: Path) -> None:
    write_feeds(simulate(World(COURSE, RIDERS, (BOX,), laps=2), seed=2), tmp_path / "feeds")

    def edit(data: dict[str, Any]) -> None:
        data["web"]["hub_url"] = HUB
        data["gateway"]["id"] = "box-1"
        data["course"] = {"id": "sim-loop", "name": "Simulated loop", "gates": [{"id": g.id} for g in COURSE.gates]}
        data["riders"] = [{"id": r.rider_id, "name": r.name, "ftp_w": r.ftp_w, "weight_kg": 60,
                           "transponder": r.transponder, "power_meters": [{"ant": r.device}]} for r in RIDERS]
        data["sources"]["sim"] = {"enabled": True, "feed": str(tmp_path / "feeds" / "box-1.jsonl"), "speed": 0}

    with RunningDaemon(tmp_path / "state", edit=edit) as running:
        context = browser.new_context(viewport={"width": 412, "height": 915}, has_touch=True, is_mobile=True)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            page.goto(running.base + "/")
            wait_until(page, "window.trackside !== undefined", 20)
            wait_until(page, "window.trackside.count() >= 16", 60)  # four riders, two laps, segments 1-2
            rows = page.evaluate("Object.values(window.trackside.rows).map(r => [r.segment, r.coverage, "
                                 "r.power_partial, r.power_zscore])")
            whole = [r for r in rows if r[0] == 1]
            partial = [r for r in rows if r[0] == 3 and r[1] is not None]
            assert whole and all(c >= 0.8 and not p and z is not None for _, c, p, z in whole)
            # Heard for seconds only, by the only box: no whole result on the segment to score against.
            assert partial and all(c < 0.8 and p and z is None for _, c, p, z in partial)
            # Drawn hollow (on the W/kg view: z-scores of power need a population): the rider's shape
            # as an outline, not the filled mark.
            filters(page).select_option("#view-select", "wpk")
            styles = page.evaluate("window.trackside.chart().data.datasets.filter(d => !d.ring).flatMap(d => "
                                   "d.data.map((p, i) => [p.row.power_partial, d.pointStyle[i] === "
                                   "MARKS[p.row.rider_id].hollow, d.pointStyle[i] === MARKS[p.row.rider_id].full]))")
            assert styles and all((hollow, not full) if part else (full, not hollow) for part, hollow, full in styles)
            note = page.locator("#partial-note")
            assert note.is_visible() and "under 80 %" in note.inner_text()
            # The sheet of a partial result: how much was heard, what follows, which box heard it.
            filters(page).select_option("#segment-select", "3")
            wait_until(page, "window.trackside.latest().length > 0 && window.trackside.latest()"
                             ".every(r => r.segment === 3)", 5)
            first = page.locator("#latest tbody tr").first
            assert "% heard" in first.inner_text()
            first.click()
            heard = page.locator("#detail-heard").inner_text()
            assert heard.startswith("power ") and "not in the power z-scores (under 80 %)" in heard
            assert page.locator("#detail-boxes").inner_text() == (
                "Heard by this box (box-1); the course view merges every box.")
            link = page.locator("#hub-link")
            assert link.is_visible() and link.get_attribute("href") == HUB
            assert link.bounding_box()["height"] >= 44
            assert errors == []
        finally:
            context.close()
