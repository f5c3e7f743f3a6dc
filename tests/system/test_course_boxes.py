"""The course, not the box (#30), against real parts: three box daemons fed by the course simulator
(their `sim` source: the pages and timing lines each would hear, stamped by clocks that are seconds
off and drift 40 ppm), a real Kafka broker, real hubs, a real PostgreSQL server. The hub's course
results are checked against the engine's results on the simulator's true stream."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from harness import TOKEN, free_port, spawn, wait_for
from rides import write_axiamo
from test_page import launch_chromium, wait_until

from gateway.cli.simulate import write_feeds
from gateway.engine.course import Course
from gateway.engine.segments import RiderInfo, SegmentEngine
from gateway.model import SegmentResult
from gateway.simulate.coverage import rider_coverage
from gateway.simulate.ride import RECEIVER_LATENCY_S, Session, simulate
from gateway.simulate.world import BoxClock, Gate, SimBox, SimCourse, SimRider, World

pytestmark = [pytest.mark.kafka, pytest.mark.allow_threads("asyncio_")]
SIM_COURSE = SimCourse(600.0, (Gate("SF", 0.0), Gate("G1", 200.0), Gate("G2", 400.0)), ("climb", "flat", "descent"))
RIDERS = tuple(SimRider(f"r{i}", f"Rider {i}", 230.0 + 15 * i, 10001 + i, f"C-{i}", start_s=12.0 * i) for i in range(6))
# Open ground (every message in range arrives); boxes 1-2 and 2-3 hear a stretch in common, 1 and 3 none.
BOXES = (SimBox("box-1", 100.0, 110.0, ("SF",), BoxClock(0.0, 0.0, 5.0), reception=1.0),
         SimBox("box-2", 300.0, 110.0, ("G1",), BoxClock(2.4, 40.0, 5.0), reception=1.0),
         SimBox("box-3", 460.0, 70.0, ("G2",), BoxClock(-3.1, -35.0, 5.0), reception=1.0))
EXPECTED = len(RIDERS) * 3 * 3  # six riders, three laps, three segments


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium()


@pytest.fixture(scope="module")
def session() -> Session:
    return simulate(World(SIM_COURSE, RIDERS, BOXES, laps=3), seed=11)


class Course3:
    """Three box daemons on one course, their feeds from the simulator, forwarding to one broker."""

    def __init__(self, tmp: Path, session: Session, bootstrap: str, env: dict[str, str], speed: float = 0.0) -> None:
        self.tmp, self.env, self.speed = tmp, env, speed
        write_feeds(session, tmp / "feeds")
        tag = uuid.uuid4().hex[:8]
        self.kafka = {"enabled": True, "bootstrap_servers": bootstrap, "partitions": 3,
                      "topics": {k: f"{k}-{tag}" for k in ("power", "crossings", "segments", "sessions")}}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def config(self, box: str, bootstrap: str | None = None) -> Path:
        riders = [{"id": r.rider_id, "name": r.name, "ftp_w": r.ftp_w, "weight_kg": 60, "transponder": r.transponder,
                   "power_meters": [{"ant": r.device}]} for r in RIDERS]
        doc = {"gateway": {"id": box, "state_dir": str(self.tmp / box)}, "riders": riders,
               "course": {"id": "sim-loop", "name": "Simulated loop",
                          "gates": [{"id": g.id} for g in SIM_COURSE.gates]},
               "kafka": {**self.kafka, "bootstrap_servers": bootstrap or self.kafka["bootstrap_servers"]},
               "web": {"enabled": False},
               "sources": {"sim": {"enabled": True, "feed": str(self.tmp / "feeds" / f"{box}.jsonl"),
                                   "speed": self.speed}}}
        path = self.tmp / f"{box}.yaml"
        path.write_text(json.dumps(doc))
        return path

    def start(self, box: str, bootstrap: str | None = None) -> None:
        self.procs[box] = spawn(["run", "--config", str(self.config(box, bootstrap))], self.env,
                                self.tmp / f"{box}.log")

    def stop(self, box: str, check: bool = True) -> None:
        proc = self.procs.pop(box)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        assert code == 0 or not check, (self.tmp / f"{box}.log").read_text()[-2000:]

    def hub(self, name: str, dsn: str, web_port: int | None = None) -> subprocess.Popen[bytes]:
        path = self.tmp / f"{name}.yaml"
        path.write_text(json.dumps({
            "gateway": {"id": name, "state_dir": str(self.tmp / f"{name}-state")},
            "course": {"gates": [{"id": "SF"}]}, "riders": [], "kafka": {**self.kafka, "properties": {
                "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}},
            "web": {"admin_token": TOKEN},
            "hub": {"group_id": f"g-{self.kafka['topics']['power']}", "port": web_port or 0, "web": bool(web_port),
                    "host": "127.0.0.1", "batch_ms": 100,
                    "receiver_latency_ms": RECEIVER_LATENCY_S * 1000}}))
        return spawn(["hub", "--config", str(path)], {**self.env, "TRACKSIDE_PG_DSN": dsn}, self.tmp / f"{name}.log")

    def close(self) -> None:
        for box in list(self.procs):
            self.stop(box, check=False)  # a test that failed early may stop a box still starting


def course_results(dsn: str) -> dict[tuple[str, str], tuple[SegmentResult, list[str], int]]:
    """The current course results by (rider, segment number): the result, its boxes, its hub_seq."""
    from gateway.hub.results import FIELDS, result_of

    select = ", ".join(f'"{f}"' for f in FIELDS)
    try:
        with psycopg.connect(dsn) as conn:
            rows = conn.execute(f"SELECT {select}, boxes, hub_seq FROM segments_current "
                                "WHERE gateway_id = 'course'").fetchall()
    except psycopg.errors.UndefinedTable:
        return {}  # the hub has not made its tables yet
    return {(r[1], r[3]): (result_of(r[:len(FIELDS)]), r[-2] or [], r[-1]) for r in rows}


def settled(dsn: str, want: int, timeout: float) -> dict[tuple[str, str], tuple[SegmentResult, list[str], int]]:
    """The course results once ``want`` of them are in and nothing changed for 4 s."""
    deadline, last, since = time.monotonic() + timeout, None, time.monotonic()
    while time.monotonic() < deadline:
        got = course_results(dsn)
        marks = {k: v[2] for k, v in got.items()}
        if marks != last:
            last, since = marks, time.monotonic()
        elif len(got) == want and time.monotonic() - since > 4:
            return got
        time.sleep(0.5)
    raise AssertionError(f"{len(last or {})} course results, not {want}, or still changing")


def truth(session: Session) -> dict[tuple[str, str], SegmentResult]:
    engine = SegmentEngine(Course(("SF", "G1", "G2")), {r.rider_id: RiderInfo(r.rider_id, r.name, r.ftp_w, 60.0)
                                                        for r in RIDERS}, "truth")
    out: list[SegmentResult] = []
    for t in session.riders.values():
        for p in t.passes:
            out += engine.add_crossing(t.rider.rider_id, p.gate, p.t)
        b = t.broadcasts
        out += engine.add_power_run(t.rider.rider_id, [x.t for x in b], [float(x.power) for x in b],
                                    [float(x.cadence) for x in b])
    return {(r.rider_id, r.number): r for r in out + engine.flush()}


def check_against_truth(session: Session, results: dict[tuple[str, str], Any]) -> None:
    want = truth(session)
    implied = {(c.rider_id, f"{c.lap}.{c.segment}"): c.coverage for t in session.riders.values()
               for c in rider_coverage(t, 3)}
    assert set(results) == set(want)
    complete = 0
    for key, (got, boxes, _) in results.items():
        true = want[key]
        assert got.duration == pytest.approx(true.duration, abs=1e-6), key  # the chips' own times
        assert got.coverage == pytest.approx(implied[key], abs=0.02), key
        t = session.riders[key[0]]
        heard = sum(1 for b, by in zip(t.broadcasts, t.heard, strict=True) if by and true.start <= b.t < true.end)
        assert abs(got.samples - heard) <= 2, key  # every page once, however many boxes heard it
        if heard == true.samples:
            complete += 1
            assert got.normalized_power == pytest.approx(true.normalized_power, abs=0.5), key
        assert boxes, key
    assert complete >= EXPECTED * 2 // 3 - 1


def test_three_boxes_six_riders_three_laps_one_truth_at_the_hub(tmp_path: Path, session: Session, kafka_bootstrap: str,
                                                                  gateway_env: dict[str, str], pg_dsn: str) -> None:
    course = Course3(tmp_path, session, kafka_bootstrap, gateway_env)
    port = free_port()
    hub = course.hub("hub-1", pg_dsn, web_port=port)
    try:
        for box in ("box-1", "box-2", "box-3"):
            course.start(box)
        results = settled(pg_dsn, EXPECTED, 180)
        check_against_truth(session, results)
        # Box clocks from the pages two boxes both heard: within 20 ms of the simulation's.
        with psycopg.connect(pg_dsn) as conn:
            record = conn.execute("SELECT record FROM sessions WHERE kind = 'course'").fetchone()[0]
        clocks = record["boxes"]
        assert clocks["box-3"]["linked"] and clocks["box-1"]["linked"]
        for a, b in (("box-1", "box-2"), ("box-2", "box-3"), ("box-1", "box-3")):
            sim = BOXES[int(b[-1]) - 1].clock.offset_s - BOXES[int(a[-1]) - 1].clock.offset_s
            assert clocks[b]["offset_s"] - clocks[a]["offset_s"] == pytest.approx(sim, abs=0.02 + 45e-6 * 400), (a, b)
        # Rider 0's own recording (#31), on a head unit's clock 5 s off, added to the course session
        # at the hub: every one of the rider's course results is completed, and no one else's moves.
        add_rider_file(session, tmp_path, (port, pg_dsn), results)
    finally:
        course.close()
        hub.send_signal(signal.SIGTERM)
        hub.wait(60)


def test_a_box_offline_through_the_session_corrects_only_what_it_touches(
        tmp_path: Path, session: Session, kafka_bootstrap: str, gateway_env: dict[str, str], pg_dsn: str,
        browser: Any) -> None:
    course = Course3(tmp_path, session, kafka_bootstrap, gateway_env)
    port = free_port()
    hub = course.hub("hub-1", pg_dsn, web_port=port)
    context = browser.new_context(viewport={"width": 412, "height": 915}, has_touch=True, is_mobile=True)
    try:
        course.start("box-1")
        course.start("box-2")
        course.start("box-3", bootstrap="127.0.0.1:9")  # no uplink: everything waits in its spool
        before = settled(pg_dsn, len(RIDERS) * 3 * 2, 180)  # the G2 crossings are box 3's: spans G1-SF
        assert all("missed_gate" in r.flags for (_, n), (r, _, _) in before.items() if n.endswith("-3"))
        # The hub page on the course session, as a coach would have it open.
        with psycopg.connect(pg_dsn) as conn:
            course_session = conn.execute("SELECT session_id FROM sessions WHERE kind = 'course'").fetchone()[0]
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/?session={course_session}")
        wait_until(page, "window.trackside !== undefined && window.trackside.count() === 36", 30)
        wait_until(page, "window.trackside.courseBoxes().length === 2", 15)
        boxes = page.locator("#course-boxes").inner_text()
        assert "box-1" in boxes and "reference" in boxes and "shared messages" in boxes
        course.stop("box-3")
        course.start("box-3")  # the uplink is back: its spool drains
        after = settled(pg_dsn, EXPECTED, 180)
        check_against_truth(session, after)
        for key, (result, _, seq) in after.items():
            if result.segment == 1:  # start/finish to G1: nothing box 3 heard, nothing changed
                assert before[key][2] == seq, key
        with psycopg.connect(pg_dsn) as conn:
            withdrawn = conn.execute("SELECT count(*) FROM segments WHERE gateway_id = 'course' AND withdrawn"
                                     ).fetchone()[0]
        assert withdrawn == len(RIDERS) * 3  # each lap's G1-SF span that missed G2, once
        # The page follows live: the spans gone, segments 2 and 3 in, box 3 on the course's clock.
        wait_until(page, "window.trackside.count() === 54 && "
                         "Object.values(window.trackside.rows).every(r => r.segment !== null)", 30)
        wait_until(page, "window.trackside.courseBoxes().some(b => b.box === 'box-3' && b.linked)", 15)
        page.evaluate("window.trackside.pick(Object.values(window.trackside.rows).find(r => r.segment === 3))")
        wait_until(page, "document.querySelector('#detail-boxes').innerText.includes('box-3')", 10)
    finally:
        context.close()
        course.close()
        hub.send_signal(signal.SIGTERM)
        hub.wait(60)


def test_two_hubs_one_killed_mid_session_give_the_same_course_results(
        tmp_path: Path, session: Session, kafka_bootstrap: str, gateway_env: dict[str, str], pg_dsn: str) -> None:
    course = Course3(tmp_path, session, kafka_bootstrap, gateway_env, speed=0.08)  # about 30 s of riding
    hubs = [course.hub("hub-a", pg_dsn), course.hub("hub-b", pg_dsn)]
    try:
        for box in ("box-1", "box-2", "box-3"):
            course.start(box)
        wait_for(lambda: len(course_results(pg_dsn)) >= 10, 90, "the first course results")
        hubs[0].send_signal(signal.SIGKILL)
        hubs[0].wait(10)
        results = settled(pg_dsn, EXPECTED, 240)
        check_against_truth(session, results)
    finally:
        course.close()
        hubs[1].send_signal(signal.SIGTERM)
        hubs[1].wait(60)


def record_session(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        return str(conn.execute("SELECT session_id FROM sessions WHERE kind = 'course'").fetchone()[0])


def add_rider_file(session: Session, tmp: Path, hub: tuple[int, str],
                   before: dict[tuple[str, str], tuple[SegmentResult, list[str], int]]) -> None:
    port, dsn = hub
    broadcasts = session.riders["r0"].broadcasts
    ride = write_axiamo(tmp / "rider-0.xlsx", [b.t + 5.0 for b in broadcasts], [float(b.power) for b in broadcasts],
                        [float(b.cadence) for b in broadcasts])
    exe = Path(sys.executable).parent / "trackside-gateway"
    out = subprocess.run([str(exe), "session", "add-files", record_session(dsn), str(ride), "--url",
                          f"http://127.0.0.1:{port}", "--pin", TOKEN], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("added: rider-0.xlsx: Rider 0's"), out.stdout + out.stderr
    want = truth(session)

    def completed() -> bool:
        got = course_results(dsn)
        return all(r.coverage > 0.99 for (rid, _), (r, _, _) in got.items() if rid == "r0") and len(got) == EXPECTED
    wait_for(completed, 60, "rider 0's course results completed by the file")
    after = course_results(dsn)
    for key, (result, _, seq) in after.items():
        if key[0] != "r0":
            assert seq == before[key][2], key  # nobody else's result moved
            continue
        assert result.power_avg == pytest.approx(want[key].power_avg, abs=0.5), key
        assert result.normalized_power == pytest.approx(want[key].normalized_power, abs=0.5), key
