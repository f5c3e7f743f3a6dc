"""The course at the hub (#30), without a broker or a database: boxes along the course each hear a
rider for part of a lap; the hub merges their pages, places them on one timeline and runs the
engine. Checked against the engine's results on the simulator's true stream."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.engine.course import Course
from gateway.engine.segments import RiderInfo, SegmentEngine, same
from gateway.hub.course import CourseSession
from gateway.simulate.coverage import rider_coverage
from gateway.simulate.ride import RECEIVER_LATENCY_S, Session, simulate
from gateway.simulate.world import BoxClock, Gate, SimBox, SimCourse, SimRider, World

SIM_COURSE = SimCourse(600.0, (Gate("SF", 0.0), Gate("G1", 200.0), Gate("G2", 400.0)), ("climb", "flat", "descent"))
COURSE = Course(("SF", "G1", "G2"))
RIDERS = tuple(SimRider(f"r{i}", f"R{i}", 230.0 + 15 * i, 10001 + i, f"C-{i}", start_s=12.0 * i) for i in range(6))
# Open ground: every message in range arrives, so a segment a box covers is heard whole.
BOXES = (SimBox("box-1", 100.0, 110.0, ("SF",), BoxClock(0.0, 0.0, 5.0), reception=1.0),
         SimBox("box-2", 300.0, 110.0, ("G1",), BoxClock(2.4, 40.0, 5.0), reception=1.0),
         SimBox("box-3", 460.0, 70.0, ("G2",), BoxClock(-3.1, -35.0, 5.0), reception=1.0))  # segment 3 in part


def infos() -> dict[str, RiderInfo]:
    return {r.rider_id: RiderInfo(r.rider_id, r.name, r.ftp_w, 60.0) for r in RIDERS}


def feed(session: Session, hub: CourseSession, boxes: set[str] | None = None) -> None:
    """What the boxes' spools deliver to the hub: power samples with their identity, crossings."""
    rider_of = {r.device: r.rider_id for r in RIDERS} | {r.transponder: r.rider_id for r in RIDERS}
    for box, heard in session.feeds.items():
        if boxes is not None and box not in boxes:
            continue
        for h in heard:
            if h.kind == "ant":
                hub.add_page(box, rider_of[h.device], h.box_t, f"ant:{h.device}:{h.page.hex()}")
            else:
                hub.add_crossing(box, rider_of[h.transponder], h.gate, h.box_t, h.chip_t)


def truth_results(session: Session) -> dict[tuple[str, str], object]:
    engine = SegmentEngine(COURSE, infos(), "truth")
    out = []
    for truth in session.riders.values():
        rid = truth.rider.rider_id
        for p in truth.passes:
            out += engine.add_crossing(rid, p.gate, p.t)
        out += engine.add_power_run(rid, [b.t for b in truth.broadcasts], [float(b.power) for b in truth.broadcasts],
                                    [float(b.cadence) for b in truth.broadcasts])
    out += engine.flush()
    return {(r.rider_id, r.number): r for r in out}


def course_session() -> CourseSession:
    """The hub's course session, the first box's clock synchronised (its session record says so)."""
    return CourseSession("course-1", COURSE, infos(), synchronised={"box-1": True},
                         receiver_latency_s=RECEIVER_LATENCY_S)


@pytest.fixture(scope="module")
def session() -> Session:
    return simulate(World(SIM_COURSE, RIDERS, BOXES, laps=3), seed=11)


def test_complete_segments_equal_the_truth_and_partial_ones_say_how_much_was_heard(session: Session) -> None:
    hub = course_session()
    feed(session, hub)
    results = {(c.result.rider_id, c.result.number): c for c in hub.settle()}
    truth = truth_results(session)
    assert set(results) == set(truth) and len(truth) == 6 * 3 * 3
    implied = {(c.rider_id, f"{c.lap}.{c.segment}"): c.coverage
               for t in session.riders.values() for c in rider_coverage(t, 3)}
    complete = 0
    for key, change in results.items():
        got, want = change.result, truth[key]
        assert got.duration == pytest.approx(want.duration, abs=1e-6)  # the chip's own times
        assert got.coverage == pytest.approx(implied[key], abs=0.02)
        # Every page some box heard, once (a page two boxes heard counts once; the very first of
        # the session only sets the reference), against the simulator's count.
        truth_of = session.riders[key[0]]
        heard = sum(1 for b, boxes in zip(truth_of.broadcasts, truth_of.heard, strict=True)
                    if boxes and want.start <= b.t < want.end)
        assert abs(got.samples - heard) <= 2  # the ends differ from the truth's by the receiver's latency
        if heard == want.samples:  # the merged stream is complete: the result is the truth's
            complete += 1
            assert got.normalized_power == pytest.approx(want.normalized_power, abs=0.5)
            assert got.power_avg == pytest.approx(want.power_avg, abs=0.5)
    assert complete >= 6 * 3 * 2 - 1  # segments 1 and 2 of every lap are heard whole
    partial = [c.result.coverage for c in results.values() if c.result.segment == 3]
    assert all(0.5 < share < 0.95 for share in partial)
    assert {b for c in results.values() for b in c.boxes} == {"box-1", "box-2", "box-3"}


def test_clock_offsets_are_found_within_20_ms(session: Session) -> None:
    hub = course_session()
    feed(session, hub)
    hub.settle()
    t0 = session.world.t0
    for box in BOXES[1:]:
        for t in (t0 + 60, t0 + 600, session.end - 10):
            assert abs(hub.clocks[box.box_id].to_reference(box.clock.read(t, t0)) - BOXES[0].clock.read(t, t0)) < 0.02


def test_a_box_delivering_late_corrects_what_it_touches_and_nothing_else(session: Session) -> None:
    hub = course_session()
    feed(session, hub, {"box-1", "box-2"})
    before = {(c.result.rider_id, c.result.number): c.result for c in hub.settle()}
    feed(session, hub, {"box-3"})  # its spool, an hour later
    after = [c.result for c in hub.settle()]
    # Without box 3 the G2 crossings were missing: spans G1-SF flagged missed_gate. Its delivery
    # withdraws those and gives segments 2 and 3; segment 1 of every lap stays as it was.
    withdrawn = [r for r in after if "withdrawn" in r.flags]
    assert withdrawn and all("missed_gate" in r.flags for r in withdrawn)
    assert all(r.segment in (2, 3) for r in after if "withdrawn" not in r.flags)
    assert {k for k in before if k[1].endswith(".1")} == {(r.rider_id, r.number) for r in before.values()
                                                           if r.segment == 1}
    assert not any(r.segment == 1 for r in after)
    assert hub.settle() == []  # nothing left to correct


def test_a_spool_delivered_in_batches_ends_on_the_same_clocks_and_results_as_one_delivery(session: Session) -> None:
    """Box 3's spool reaches the hub a hundred messages at a time, a settle after each (as the
    hub's consumer batches it): its clock is first estimated on the few pages the first batches
    share with box 2. Once the delivery is over it is estimated on all of them, and every result is
    what one delivery of the whole spool gives (CI once saw a segment take 13 pages of the next one,
    box 3's clock left 3 s off)."""
    whole = course_session()
    feed(session, whole)
    want = {(c.result.rider_id, c.result.number): c.result for c in whole.settle()}
    hub = course_session()
    feed(session, hub, {"box-1", "box-2"})
    got = {(c.result.rider_id, c.result.number): c.result for c in hub.settle()}
    spool = session.feeds["box-3"]
    for at in range(0, len(spool), 100):
        feed(replace(session, feeds={"box-3": spool[at:at + 100]}), hub)
        got.update({(c.result.rider_id, c.result.number): c.result for c in hub.settle()})
    got.update({(c.result.rider_id, c.result.number): c.result for c in hub.settle()})  # nothing new: quiet
    got = {k: r for k, r in got.items() if "withdrawn" not in r.flags}
    assert hub.clocks["box-3"].shared == whole.clocks["box-3"].shared
    assert set(got) == set(want)
    assert [k for k in want if not same(got[k], want[k])] == []  # the pages, within a clock's milliseconds


def test_a_ble_meter_held_by_one_box_joins_the_stream_once() -> None:
    """A BLE meter talks to the one box holding its connection: its samples (as that box decoded
    them) join the rider's stream as they are, placed on the timeline; delivered twice, counted once."""
    hub = CourseSession("course-1", Course(("SF",)), {"r0": RiderInfo("r0", "R0", 250.0, 60.0)})
    t0 = 1_790_000_000.0
    for lap in range(3):
        hub.add_crossing("box-1", "r0", "SF", t0 + 60.0 * lap, t0 + 60.0 * lap)
    for _ in range(2):  # a hub taking the rider over reads what it had
        for i in range(240):
            t = t0 + 0.25 * i
            hub.add_page("box-1", "r0", t, f"ble:AA:BB:CC:DD:EE:01:2c01{i:04x}", (200.0 + (i % 2) * 100, 90.0))
    (lap1,) = [c.result for c in hub.settle() if c.result.number == "1.1"]
    assert lap1.samples == 240 and lap1.power_avg == pytest.approx(250.0) and lap1.coverage == pytest.approx(1.0)


def test_a_page_a_box_flagged_implausible_is_decoded_through_but_never_averaged(session: Session) -> None:
    """As on the box: an implausible sample is kept and flagged, never averaged. At the hub the
    page still feeds the decoder (the next page's power is the difference to it)."""
    rider_of = {r.device: r.rider_id for r in RIDERS} | {r.transponder: r.rider_id for r in RIDERS}
    clean, flagged = course_session(), course_session()
    marked = 0
    for hub in (clean, flagged):
        for box, heard in session.feeds.items():
            for i, h in enumerate(heard):
                if h.kind != "ant":
                    hub.add_crossing(box, rider_of[h.transponder], h.gate, h.box_t, h.chip_t)
                    continue
                bad = hub is flagged and rider_of[h.device] == "r0" and i % 50 == 0
                marked += bad
                hub.add_page(box, rider_of[h.device], h.box_t, f"ant:{h.device}:{h.page.hex()}", implausible=bad)
    before = {c.result.number: c.result for c in clean.settle() if c.result.rider_id == "r0"}
    after = {c.result.number: c.result for c in flagged.settle() if c.result.rider_id == "r0"}
    assert marked and sum(r.samples for r in after.values()) < sum(r.samples for r in before.values())
    assert sum(r.samples for r in before.values()) - sum(r.samples for r in after.values()) <= marked
