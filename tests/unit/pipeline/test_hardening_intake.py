"""Hardening of the intake: bad timing lines, clocks that disagree, implausible sensor values, a
poisoned spool. Each test reproduces the fault first ("a bad sensor, a bad day and a stranger on
the Wi-Fi"). A receiver two hours ahead through a real pseudo-terminal: tests/system/test_serial_clock.py."""

from __future__ import annotations

import resource
import time

import pytest

from gateway.config import riders
from gateway.decode.ant_power import AntPowerDecoder
from gateway.decode.ble_power import BlePowerDecoder, CrankCadence
from gateway.decode.lines import LineFormat, decode_line
from gateway.engine.course import Course
from gateway.engine.segments import SegmentEngine
from gateway.errors import ConfigError, DecodeError
from gateway.model import GateCrossing, PowerSample, SegmentResult
from gateway.pipeline.build import rider_infos
from gateway.pipeline.ingest import Accepted, Batching, Ingest
from gateway.pipeline.plausible import Plausible
from gateway.pipeline.roster import Roster
from gateway.pipeline.runner import EngineRunner
from gateway.sources.receiver_clock import ReceiverClock
from gateway.spool.store import NewEvent, Spool

NOW = 1_790_000_000.0
COURSE = Course(("SF", "TOP"), max_segment_s=3600.0)
RIDERS = [{"id": "r01", "name": "Anna", "transponder": "BD-1", "ftp_w": 250, "weight_kg": 58,
           "power_meters": [{"ant": 23456}]}]




@pytest.mark.parametrize("line", ["BD-1,SF,nan", "BD-1,SF,inf", "BD-1,SF,-inf", "BD-1,SF,1e999", "BD-1,SF,0",
                                  "BD-1,SF,-5"])
def test_a_time_that_is_no_time_is_a_bad_line(line: str) -> None:
    with pytest.raises(DecodeError, match=r"not a usable time|is not a time"):
        decode_line(line, LineFormat())


def test_a_receiver_whose_clock_reset_never_reaches_the_engine() -> None:
    clock: ReceiverClock[str] = ReceiverClock()
    # The crash loop's two lines: a crossing at time 0, then one at the current time.
    first = clock.feed("reset", 0.0, NOW)
    assert first.placed == [] and "outside 2015-2100" in first.rejected[0][1]
    assert clock.feed("ok", NOW - 0.05, NOW).placed == [("ok", NOW - 0.05)]


def test_a_span_longer_than_the_course_allows_is_flagged_not_resampled() -> None:
    """Before: a crossing at 0 then one now made the 1 Hz resampler allocate 13 GiB."""
    eng = SegmentEngine(COURSE, rider_infos(riders(RIDERS)), "s1")
    eng.add_power("r01", 1.0, 200.0)
    eng.add_crossing("r01", "SF", 1.0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    results = eng.add_crossing("r01", "TOP", NOW) + eng.add_power("r01", NOW + 1, 200.0)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB: no big array
    (result,) = results
    assert "too_long" in result.flags and result.segment is None
    assert result.power_avg is None and result.normalized_power is None


def test_one_poisoned_event_in_the_spool_cannot_stop_a_restart(spool: Spool) -> None:
    """A row the engine chokes on is logged and skipped; the others are still restored."""
    spool.appender.append([NewEvent("crossing", "r01", "s1", 1.0,
                                    {"wallTime": 1.0, "transponder": "BD-1", "rider_id": "r01"}),
                  NewEvent("crossing", "r01", "s1", NOW, {"wallTime": NOW, "transponder": "BD-1", "gate": "SF",
                                                           "rider_id": "r01"}),
                  NewEvent("power", "r01", "s1", NOW + 1, {"wallTime": "soon", "instantPower": 200.0,
                                                            "rider_id": "r01"})])
    eng = SegmentEngine(COURSE, rider_infos(riders(RIDERS)), "s1")
    runner = EngineRunner(eng, lambda r: None)
    assert runner.restore(spool) == 3
    assert runner.errors == 2  # the crossing without a gate, the sample without a time
    assert eng.open_since() == NOW  # the good crossing is in place


def test_an_engine_error_on_one_event_is_counted_and_the_rest_go_on(spool: Spool) -> None:
    eng = SegmentEngine(COURSE, rider_infos(riders(RIDERS)), "s1")
    out: list[SegmentResult] = []
    runner = EngineRunner(eng, out.append)

    def broken(*_: object) -> list[SegmentResult]:
        raise MemoryError("13 GiB")

    eng.add_crossing = broken  # type: ignore[method-assign]
    row = spool.appender.append([NewEvent("crossing", "r01", "s1", 1.0, {"wallTime": 1.0})])[0]
    runner.on_accepted([Accepted(GateCrossing("serial:x", "BD-1", "SF", 1.0), row.seq, row.recv_time, "r01")])
    assert runner.errors == 1


def test_a_power_sample_that_breaks_the_engine_is_skipped_and_the_rest_of_its_batch_goes_on(
        spool: Spool) -> None:
    eng = SegmentEngine(COURSE, rider_infos(riders(RIDERS)), "s1")
    runner = EngineRunner(eng, lambda r: None)
    real = eng.add_power
    fed: list[float] = []

    def flaky(rider: str, t: float, power: float, cadence: float | None = None) -> list[SegmentResult]:
        if t == 3.0:
            raise ValueError("a sample the engine cannot take")
        fed.append(t)
        return real(rider, t, power, cadence)

    eng.add_power = flaky  # type: ignore[method-assign]
    samples = [PowerSample("ant:23456", "23456", float(t), 200.0) for t in range(1, 7)]
    rows = spool.appender.append([NewEvent("power", "r01", "s1", s.wall_time, {"wallTime": s.wall_time})
                                  for s in samples])
    runner.on_accepted([Accepted(s, row.seq, row.recv_time, "r01") for row, s in zip(rows, samples, strict=True)])
    assert runner.errors == 1 and fed == [1.0, 2.0, 4.0, 5.0, 6.0]


# -- clocks --------------------------------------------------------------------------------------------


def test_a_receiver_two_hours_ahead_is_placed_on_the_box_timeline() -> None:
    clock: ReceiverClock[int] = ReceiverClock(tolerance_s=2.0)
    placed = []
    for i in range(10):
        box = NOW + 60.0 * i
        got = clock.feed(i, box + 7200.0 + 0.01 * (i % 3), box + 0.05)
        placed += got.placed
    assert clock.applied and clock.offset_s == pytest.approx(-7200.0, abs=0.05)
    assert all(abs(t - (NOW + 60.0 * i)) < 0.1 for i, t in placed)


def test_within_the_tolerance_the_receiver_times_are_kept() -> None:
    clock: ReceiverClock[int] = ReceiverClock(tolerance_s=2.0)
    got = [clock.feed(i, NOW + i - 0.3, NOW + i).placed[0][1] for i in range(5)]
    assert got == [NOW + i - 0.3 for i in range(5)] and not clock.applied


def test_a_clock_reset_mid_session_is_held_then_confirmed_or_rejected() -> None:
    clock: ReceiverClock[str] = ReceiverClock(max_jump_s=600.0, confirm=3)
    for i in range(5):
        clock.feed(f"a{i}", NOW + i, NOW + i)
    # One crossing a day off, then the receiver carries on as before: that one is rejected.
    assert clock.feed("odd", NOW + 86400.0, NOW + 5).placed == []
    back = clock.feed("a5", NOW + 6, NOW + 6)
    assert back.placed == [("a5", NOW + 6)] and back.rejected[0][0] == "odd"
    # The receiver's clock is set 3 h back for good: after three agreeing crossings it is believed.
    outs = [clock.feed(f"b{i}", NOW + 10 + i - 10800.0, NOW + 10 + i) for i in range(3)]
    assert outs[0].placed == [] and outs[1].placed == []
    assert [item for item, _ in outs[2].placed] == ["b0", "b1", "b2"]
    assert all(abs(t - (NOW + 10 + i)) < 0.01 for i, (_, t) in enumerate(outs[2].placed))


def test_a_box_whose_clock_went_back_starts_a_new_session(spool: Spool) -> None:
    from gateway.pipeline import session

    first = session.live_session(spool, "box1", 6.0, now=NOW)
    assert session.live_session(spool, "box1", 6.0, now=NOW + 60) == first  # a restart: same session
    back = session.live_session(spool, "box1", 6.0, now=NOW - 30 * 86400)  # a month back
    assert back != first


# -- implausible values --------------------------------------------------------------------------------


def forged_ant_pages() -> list[bytes]:
    """Well-formed pages that decode to 65535 W and 122880 rpm."""
    return [bytes([0x10, 1, 0xFF, 90, 0, 0, 0, 0]), bytes([0x10, 2, 0xFF, 90, 0xFF, 0xFF, 0, 0]),
            bytes([0x12, 1, 1, 90, 0, 0, 0, 0]), bytes([0x12, 2, 2, 90, 1, 0, 0xFF, 0x7F])]


def test_forged_pages_decode_to_absurd_values_that_ingest_flags_and_the_engine_ignores(spool: Spool) -> None:
    dec = AntPowerDecoder()
    decoded = [dec.feed(p) for p in forged_ant_pages()]
    assert decoded[1]["power_w"] == 65535.0 and decoded[3]["cadence_rpm"] == 122880.0
    ble = BlePowerDecoder(CrankCadence())
    neg = ble.feed(bytes.fromhex("0000 18fc"), 0.0)  # -1000 W
    assert neg["power_w"] == -1000.0

    eng = SegmentEngine(COURSE, rider_infos(riders(RIDERS)), "s1")
    results: list[SegmentResult] = []
    ingest = Ingest(spool, Roster(riders(RIDERS)), "s1", batching=Batching(0.01), plausible=Plausible())
    runner = EngineRunner(eng, ingest.submit)
    ingest.subscribe(runner.on_accepted)
    ingest.subscribe(lambda batch: results.extend(a.event for a in batch if isinstance(a.event, SegmentResult)))
    ingest.start()
    try:
        ingest.submit(GateCrossing("serial:x", "BD-1", "SF", NOW))
        for i in range(120):
            watts = {30: 65535.0, 31: -1000.0, 32: 1.6e6}.get(i, 200.0)
            cadence = 4e9 if i == 33 else 90.0
            ingest.submit(PowerSample("ant:23456", "23456", NOW + i, watts, cadence))
        ingest.submit(GateCrossing("serial:x", "BD-1", "TOP", NOW + 100))
        ingest.submit(PowerSample("ant:23456", "23456", NOW + 121, 200.0, 90.0))
        assert ingest.flush()
        time.sleep(0.1)
        assert ingest.flush()
    finally:
        ingest.stop()
    assert ingest.implausible == {"ant:23456": 4}
    (result,) = results
    assert result.power_avg == pytest.approx(200.0) and result.cadence_avg == pytest.approx(90.0)
    stored = [r.message for r in spool.queries.since(0, kinds=("power",))]
    flagged = [m for m in stored if "implausible" in m]
    assert [m["implausible"] for m in flagged] == [["power"], ["power"], ["power"], ["cadence"]]
    assert len(stored) == 121  # kept, not lost


def test_plausible_ranges_come_from_the_config() -> None:
    from gateway import config

    cfg = config.parse("gateway: {id: b}\ncourse: {gates: [{id: SF}]}\nriders: []\n"
                       "sources: {plausible: {power_w: [0, 2000]}}\n")
    p = Plausible.from_settings(cfg.settings.sources.plausible)
    assert p.problems(PowerSample("ant:1", "1", 0.0, 2100.0)) == ["power"]
    assert p.problems(PowerSample("ant:1", "1", 0.0, 1900.0, 240.0)) == []
    assert p.problems(PowerSample("ant:1", "1", 0.0, 100.0, float("nan"))) == ["cadence"]
    with pytest.raises(ConfigError, match=r"sources.plausible.power_w: expected \[lowest, highest\]"):
        config.parse("gateway: {id: b}\ncourse: {gates: [{id: SF}]}\nriders: []\n"
                     "sources: {plausible: {power_w: [2000, 0]}}\n")


# -- the serial receiver end to end: skewed clock, fresh counters --------------------------------------


