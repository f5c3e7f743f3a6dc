"""The course simulator (#30): what it broadcasts decodes to the truth, boxes hear within range and
stamp with their own clocks, and the planner's coverage follows the engine's rule."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.decode.ant_power import AntPowerDecoder
from gateway.simulate.coverage import coverage_table, rider_coverage, span_coverage
from gateway.simulate.ride import RADIO_LATENCY_S, simulate
from gateway.simulate.world import BoxClock, Gate, SimBox, SimCourse, SimRider, World, boxes_at, demo_course

COURSE = SimCourse(900.0, (Gate("SF", 0.0), Gate("G1", 300.0), Gate("G2", 600.0)), ("climb", "descent", "flat"))
RIDERS = (SimRider("r01", "Anna", 245.0, 10001, "DM-0001"), SimRider("r02", "Lea", 270.0, 10002, "DM-0002", 15.0))


def test_the_same_world_and_seed_give_the_same_session() -> None:
    world = World(COURSE, RIDERS, boxes_at(COURSE, ["SF", "G1"]), laps=2)
    one, two = simulate(world, seed=7), simulate(world, seed=7)
    assert one.feeds == two.feeds and simulate(world, seed=8).feeds != one.feeds


def test_the_pages_a_meter_broadcasts_decode_to_the_power_it_rode() -> None:
    truth = simulate(World(COURSE, RIDERS, (), laps=1)).riders["r01"]
    decoder = AntPowerDecoder()
    decoded = [decoder.feed(b.page).get("power_w") for b in truth.broadcasts]
    assert decoded[0] is None  # the first page only sets the reference
    assert decoded[1:] == [float(b.power) for b in truth.broadcasts[1:]]
    assert len(truth.broadcasts) > 600 and len({b.page for b in truth.broadcasts}) == len(truth.broadcasts)


def test_a_box_hears_only_within_its_range_and_stamps_with_its_own_clock() -> None:
    clock = BoxClock(offset_s=2.5, drift_ppm=40.0, jitter_ms=0.0)
    box = SimBox("box-1", 300.0, range_m=25.0, gates=("G1",), clock=clock, reception=1.0)
    finish = SimBox("box-2", 0.0, range_m=25.0, gates=("SF",))
    session = simulate(World(COURSE, RIDERS[:1], (box, finish), laps=2))
    truth = session.riders["r01"]
    heard = {b.page: b.t for b, boxes in zip(truth.broadcasts, truth.heard, strict=True) if 0 in boxes}
    ant = [h for h in session.feeds["box-1"] if h.kind == "ant"]
    assert ant and len(ant) == len(heard) < len(truth.broadcasts) / 5
    for h in ant:
        true_t = heard[h.page] + RADIO_LATENCY_S
        assert h.box_t == pytest.approx(clock.read(true_t, session.world.t0), abs=1e-9)
    crossings = [h for h in session.feeds["box-1"] if h.kind == "crossing"]
    assert [c.gate for c in crossings] == ["G1", "G1"]  # its receiver's gate, once a lap
    # The gates without a box: the chip's splits reach the receiver at the start/finish.
    assert [h.gate for h in session.feeds["box-2"] if h.kind == "crossing"] == ["SF", "G2", "SF", "G2", "SF"]
    passes = [p for p in truth.passes if p.gate == "G1"]
    assert [c.chip_t for c in crossings] == [p.chip_t for p in passes]


def test_coverage_counts_seconds_with_power_and_short_gaps_as_the_engine_does() -> None:
    assert span_coverage([0.2, 1.3, 2.1], 0.0, 10.0) == pytest.approx(0.3)
    assert span_coverage([0.5, 5.4], 0.0, 10.0) == pytest.approx(0.6)  # a 4.9 s gap is held
    assert span_coverage([0.5, 6.0], 0.0, 10.0) == pytest.approx(0.2)  # a 5.5 s silence is a dropout
    assert span_coverage([], 0.0, 10.0) == 0.0


def test_more_boxes_hear_more_and_one_that_covers_the_lap_hears_everything() -> None:
    def table(*boxes: SimBox) -> list[float]:
        return [share for *_, share in coverage_table(simulate(World(COURSE, RIDERS, boxes, laps=2)))]

    everywhere = SimBox("box-1", 450.0, range_m=450.0, reception=1.0)
    assert table(everywhere) == [pytest.approx(1.0, abs=0.01)] * 3  # a last partial second may be empty
    assert table() == [0.0, 0.0, 0.0]
    one = table(SimBox("a", 0.0, 40.0, reception=1.0))
    two = table(SimBox("a", 0.0, 40.0, reception=1.0), SimBox("b", 450.0, 40.0, reception=1.0))
    assert all(b >= a for a, b in zip(one, two, strict=True)) and sum(two) > sum(one)
    # A box 40 m either side of a gate hears about 80 m of each segment ridden past it.
    session = simulate(World(COURSE, RIDERS[:1], (SimBox("b", 450.0, 40.0, reception=1.0),), laps=1))
    descent = next(c for c in rider_coverage(session.riders["r01"], 3) if c.segment == 2)
    assert descent.coverage == pytest.approx(80 / 300, abs=0.05)


def test_the_planner_prints_a_table_per_layout_and_draws_the_lap(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    picture = tmp_path / "lap.svg"
    assert main(["simulate", "--laps", "1", "--svg", str(picture)]) == 0
    out = capsys.readouterr().out
    assert "1 box: SF" in out and "2 boxes: SF+G2" in out and "3 boxes: SF+G1+G2" in out
    assert [line.split()[0] for line in out.splitlines()[2:]] == ["1", "2", "3", "4"]  # the demo loop's segments
    text = picture.read_text()
    assert text.startswith("<svg") and text.count("<path") == 3 and "http://" not in text.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    assert main(["simulate", "--course", "SF:0,G1:x"]) == 2
    assert "--course: 'G1:x' is not ID:METRES" in capsys.readouterr().err


def test_boxes_away_from_the_reference_are_off_by_seconds_and_drift() -> None:
    boxes = boxes_at(demo_course(), ["SF", "G1", "G2"])
    assert boxes[0].clock.offset_s == 0 and all(abs(b.clock.offset_s) >= 1 for b in boxes[1:])
    assert {abs(b.clock.drift_ppm) for b in boxes[1:]} == {40.0}
    assert dataclasses.replace(boxes[1], gates=()).gates == () and boxes[1].gates == ("G1",)
