"""The live segment engine: samples and crossings in, the same results as computing directly."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.engine.course import Course
from gateway.engine.metrics import Stretch, power_metrics
from gateway.engine.segments import RiderInfo, SegmentEngine

COURSE = Course(("SF", "TOP"), ("Climb", "Descent"), debounce_s=5.0)
ROSTER = {
    "r01": RiderInfo("r01", "Anna", ftp_w=250.0, weight_kg=58.0),
    "r02": RiderInfo("r02", "Lea", ftp_w=270.0, weight_kg=61.0),
}


def engine(**kw: float) -> SegmentEngine:
    return SegmentEngine(COURSE, ROSTER, "s1", **kw)


def stream(rng: np.random.Generator, t0: float, t1: float, base: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.arange(t0, t1, 0.25)
    return t, rng.normal(base, 40, t.size).clip(0), rng.normal(85, 5, t.size)


def test_results_equal_direct_computation_on_4hz_streams() -> None:
    rng = np.random.default_rng(1)
    eng = engine()
    gates = [(0.0, "SF"), (170.0, "TOP"), (230.0, "SF"), (405.0, "TOP"), (463.0, "SF")]
    t, p, c = stream(rng, -20.0, 470.0, 260.0)
    results = []
    crossings = iter(gates)
    next_gate = next(crossings)
    for ti, pi, ci in zip(t, p, c, strict=True):
        while next_gate and next_gate[0] <= ti:
            results += eng.add_crossing("r01", next_gate[1], next_gate[0])
            next_gate = next(crossings, None)
        results += eng.add_power("r01", float(ti), float(pi), float(ci))
    assert [r.number for r in results] == ["1.1", "1.2", "2.1", "2.2"]
    for r, (start, end) in zip(results, [(0, 170), (170, 230), (230, 405), (405, 463)], strict=True):
        m = power_metrics(Stretch(t, p, c, start, end), ftp_w=250.0, weight_kg=58.0)
        assert (r.start, r.end, r.duration) == (start, end, end - start)
        assert r.normalized_power == pytest.approx(m.normalized_power)
        assert r.power_avg == pytest.approx(m.power_avg)
        assert r.cadence_avg == pytest.approx(m.cadence_avg)
        assert r.tss == pytest.approx(m.tss)
        assert r.watts_per_kg == pytest.approx(m.power_avg / 58.0)
        assert r.samples == (end - start) * 4
        assert r.coverage == 1.0


def test_result_waits_for_late_samples_then_grace() -> None:
    eng = engine(grace_s=3.0)
    for i in range(0, 100):
        eng.add_power("r01", float(i), 200.0)
    assert eng.add_crossing("r01", "SF", 0.0) == []
    # The crossing at 120 s arrives before the power stream reaches it: the result waits.
    assert eng.add_crossing("r01", "TOP", 120.0) == []
    assert eng.tick(122.0) == []
    late = eng.add_power("r01", 100.0, 200.0)
    assert late == []
    (result,) = eng.tick(123.0)
    assert result.number == "1.1"
    assert "power_gap" in result.flags and result.coverage == pytest.approx(101 / 120)


def test_a_recordings_last_segment_closes_with_its_last_sample_not_after_the_grace() -> None:
    """A replay knows where each rider's file ends: the segment ending after the last sample is
    what ``tick`` would give ``grace_s`` later, given at once; a live stream still waits."""
    results = {}
    for ends in ({}, {"r01": 99.0}):
        eng = engine(grace_s=3.0)
        eng.set_stream_ends(ends)
        eng.add_crossing("r01", "SF", 0.0)
        for i in range(0, 99):
            assert eng.add_power("r01", float(i), 200.0 + i) == []
        eng.add_crossing("r01", "TOP", 99.4)  # after the file's last sample (a rounding's worth)
        early = eng.add_power("r01", 99.0, 300.0)
        assert (early != []) == bool(ends)
        assert eng.awaiting_power() == (frozenset() if early else frozenset({"r01"}))
        results[bool(ends)] = early or eng.tick(102.4)
    assert results[True] == results[False] and results[True][0].number == "1.1"


def test_rider_without_power_meter_gets_a_time_only_result() -> None:
    eng = engine()
    eng.add_crossing("r02", "SF", 0.0)
    eng.add_crossing("r02", "TOP", 95.5)
    (result,) = eng.tick(200.0)
    assert (result.number, result.duration, result.power_avg, result.samples) == ("1.1", 95.5, None, 0)
    assert result.flags == ("no_power",)


def test_unknown_transponders_and_riders_are_counted() -> None:
    eng = engine()
    eng.add_unknown_crossing("BD-9999", "SF", 1.0)
    eng.add_unknown_crossing("BD-9999", "TOP", 90.0)
    assert eng.add_crossing("nobody", "SF", 3.0) == []
    assert eng.add_crossing("r01", "NOT-A-GATE", 3.0) == []
    stats = eng.stats()
    assert stats["unknown_transponders"] == {"BD-9999": 2}
    assert stats["unknown_riders"] == {"nobody": 1}
    assert stats["unknown_gates"] == {"NOT-A-GATE": 1}


def test_duplicate_crossing_is_counted_not_a_segment() -> None:
    eng = engine()
    eng.add_crossing("r02", "SF", 0.0)
    eng.add_crossing("r02", "SF", 0.8)
    eng.add_crossing("r02", "TOP", 90.0)
    assert [r.number for r in eng.flush()] == ["1.1"]
    assert eng.duplicates == 1


def test_out_of_order_crossing_before_emission_is_simply_placed() -> None:
    eng = engine()
    eng.add_crossing("r02", "SF", 0.0)
    eng.add_crossing("r02", "SF", 150.0)  # TOP at 100 s not in yet: looks like a missed gate
    eng.add_crossing("r02", "TOP", 100.0)
    assert [(r.number, r.flags) for r in eng.flush()] == [("1.1", ("no_power",)), ("1.2", ("no_power",))]


def test_out_of_order_crossing_after_emission_withdraws_and_corrects() -> None:
    eng = engine()
    eng.add_crossing("r02", "SF", 0.0)
    eng.add_crossing("r02", "SF", 150.0)
    (wrong,) = eng.tick(160.0)
    assert wrong.number == "1.1-2" and "missed_gate" in wrong.flags
    out = eng.add_crossing("r02", "TOP", 100.0)
    out += eng.tick(170.0)
    assert [(r.number, "withdrawn" in r.flags) for r in out] == [("1.1-2", True), ("1.1", False), ("1.2", False)]
    assert eng.stats()["results"] == 2


def test_memory_stays_bounded_over_a_long_session() -> None:
    eng = engine(keep_s=60.0)
    t = 0.0
    for _lap in range(30):
        eng.add_crossing("r01", "SF", t)
        for _ in range(400):
            eng.add_power("r01", t, 250.0)
            t += 0.25
        eng.add_crossing("r01", "TOP", t)
        eng.add_power("r01", t + 0.25, 250.0)
        t += 1
    assert len(eng._riders["r01"].t) < 400 + 60 * 4 + 10
