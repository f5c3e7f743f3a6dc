"""Segment assembly from gate crossings: numbering, missed gates, duplicates, order."""

from __future__ import annotations

import random

from gateway.engine.course import Course, Crossing, assemble

COURSE = Course(("SF", "G1", "G2", "G3"), debounce_s=5.0)


def spans_of(crossings: list[tuple[float, str]], course: Course = COURSE) -> list[tuple[str, float, float, tuple]]:
    out = assemble([Crossing(t, g) for t, g in crossings], course)
    return [(s.number, s.start, s.end, s.flags) for s in out.spans]


def two_laps() -> list[tuple[float, str]]:
    gates = ["SF", "G1", "G2", "G3"] * 2 + ["SF"]
    return [(100.0 * i, g) for i, g in enumerate(gates)]


def test_laps_and_segments_are_numbered_lap_dot_segment() -> None:
    assert [s[0] for s in spans_of(two_laps())] == ["1.1", "1.2", "1.3", "1.4", "2.1", "2.2", "2.3", "2.4"]
    first = assemble([Crossing(t, g) for t, g in two_laps()], COURSE).spans[0]
    assert (first.start_gate, first.end_gate, first.segment) == ("SF", "G1", 1)


def test_a_missed_gate_makes_one_flagged_span_not_a_normal_segment() -> None:
    crossings = [(0.0, "SF"), (100.0, "G1"), (300.0, "G3"), (400.0, "SF"), (500.0, "G1")]
    out = assemble([Crossing(t, g) for t, g in crossings], COURSE)
    assert [(s.number, s.segment, s.flags) for s in out.spans] == [
        ("1.1", 1, ()),
        ("1.2-3", None, ("missed_gate",)),
        ("1.4", 4, ()),
        ("2.1", 1, ()),
    ]


def test_a_missed_start_finish_still_counts_the_lap() -> None:
    crossings = [(0.0, "SF"), (100.0, "G1"), (200.0, "G2"), (300.0, "G3"), (500.0, "G1"), (600.0, "G2")]
    assert [s[0] for s in spans_of(crossings)] == ["1.1", "1.2", "1.3", "1.4-1", "2.2"]


def test_duplicate_crossings_are_debounced() -> None:
    crossings = [(0.0, "SF"), (0.4, "SF"), (100.0, "G1"), (103.0, "G1"), (200.0, "G2")]
    out = assemble([Crossing(t, g) for t, g in crossings], COURSE)
    assert [(s.number, s.start, s.end) for s in out.spans] == [("1.1", 0.0, 100.0), ("1.2", 100.0, 200.0)]
    assert [(c.time, c.gate) for c in out.duplicates] == [(0.4, "SF"), (103.0, "G1")]


def test_arrival_order_does_not_matter() -> None:
    crossings = two_laps()
    shuffled = crossings[:]
    random.Random(3).shuffle(shuffled)
    assert spans_of(shuffled) == spans_of(crossings)


def test_crossings_before_the_first_start_belong_to_lap_0() -> None:
    crossings = [(0.0, "G2"), (100.0, "G3"), (200.0, "SF"), (300.0, "G1")]
    assert [s[0] for s in spans_of(crossings)] == ["0.3", "0.4", "1.1"]


def test_unknown_gate_is_set_aside() -> None:
    out = assemble([Crossing(0.0, "SF"), Crossing(50.0, "XX"), Crossing(100.0, "G1")], COURSE)
    assert [s.number for s in out.spans] == ["1.1"]
    assert out.unknown_gates == [Crossing(50.0, "XX")]


def test_single_gate_course_times_laps() -> None:
    course = Course(("SF",), debounce_s=5.0)
    assert spans_of([(0.0, "SF"), (50.0, "SF"), (101.0, "SF")], course) == [
        ("1.1", 0.0, 50.0, ()),
        ("2.1", 50.0, 101.0, ()),
    ]


def test_same_gate_twice_on_a_loop_is_a_lap_of_missed_gates() -> None:
    crossings = [(0.0, "SF"), (100.0, "G1"), (500.0, "G1")]
    assert spans_of(crossings)[1] == ("1.2-1", 100.0, 500.0, ("missed_gate",))
