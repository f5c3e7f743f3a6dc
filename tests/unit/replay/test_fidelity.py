"""Files keep their own meaning: Axiamo segment numbers, head-unit TSS and lap-NP conventions, FIT
files from other head units (a Sigma ROX's 0-s lap timer, a triathlon's several sessions)."""

from __future__ import annotations

from pathlib import Path

import fitdecode
import numpy as np
import pytest
from fitwriter import FitFile, Lap, Session
from harness import DATA
from replay_files import axiamo_export

from gateway.config import riders
from gateway.engine.course import Course
from gateway.engine.metrics import Stretch, power_metrics
from gateway.engine.ride import ride_report
from gateway.engine.segments import RiderInfo, SegmentEngine
from gateway.errors import InputFileError
from gateway.model import GateCrossing
from gateway.readers.axiamo import segment_numbers
from gateway.readers.fit import read_fit
from gateway.replay.files import FileSpec, load_session, merged

FIT = DATA / "fit"
DEFAULT_GATES = ["SF", "G1", "G2", "G3"]  # the embedded defaults' four-gate course
T0 = 1_781_427_600.0


def replay_results(files: list[Path], gates: list[str], *, from_file: bool) -> tuple[list[str], list]:
    loaded = load_session([FileSpec(str(f)) for f in files], gates, riders([{"id": "r01", "name": "Anna"}]),
                          from_file=from_file)
    infos = {r: RiderInfo(r, r) for r in {"r01", *(s["id"] for s in loaded.strangers)}}
    engine = SegmentEngine(Course(tuple(loaded.gates)), infos, "s1")
    results = []
    for ev in merged(loaded.recordings):
        if isinstance(ev, GateCrossing):
            results += engine.add_crossing(ev.transponder, ev.gate, ev.wall_time, ev.lap)
        else:
            results += engine.add_power(ev.sensor, ev.wall_time, ev.power, ev.cadence)
    return loaded.gates, results + engine.flush()


# -- 1. Axiamo numbers are the truth ------------------------------------------------------------------


def test_two_segments_a_lap_keep_their_numbers_on_the_embedded_defaults(tmp_path: Path) -> None:
    """Before: replayed on the four-gate demo course they came out 1.1 1.2 1.3 1.4 2.1 2.2."""
    f = axiamo_export(tmp_path / "r01_two.xlsx", ["1.1", "1.2", "2.1", "2.2", "3.1", "3.2"])
    gates, results = replay_results([f], DEFAULT_GATES, from_file=True)
    assert len(gates) == 2
    assert [r.number for r in results] == ["1.1", "1.2", "2.1", "2.2", "3.1", "3.2"]
    assert [r.segment for r in results] == [1, 2, 1, 2, 1, 2]  # the terrain groups behind z-scores


def test_five_segments_a_lap(tmp_path: Path) -> None:
    numbers = [f"{lap}.{seg}" for lap in (1, 2) for seg in range(1, 6)]
    gates, results = replay_results([axiamo_export(tmp_path / "r01_five.xlsx", numbers)], DEFAULT_GATES, from_file=True)
    assert len(gates) == 5 and [r.number for r in results] == numbers


def test_a_missing_row_with_its_time_is_derived_and_without_it_is_a_missed_gate(tmp_path: Path) -> None:
    # 1.3 is missing, and the time between 1.2 and 1.4 is there: the gates say what happened.
    with_gap = axiamo_export(tmp_path / "r01_gap.xlsx", ["1.1", "1.2", "1.4", "2.1"], [60, 50, 70, 60], gaps={2: 45.0})
    _, results = replay_results([with_gap], DEFAULT_GATES, from_file=True)
    assert [(r.number, r.duration) for r in results] == [("1.1", 60), ("1.2", 50), ("1.3", 45), ("1.4", 70),
                                                         ("2.1", 60)]
    # 1.3 is missing and 1.4 starts where 1.2 ended: 1.2 covered both; never a renumbered segment.
    no_gap = axiamo_export(tmp_path / "r01_nogap.xlsx", ["1.1", "1.2", "1.4", "2.1"], [60, 95, 70, 60])
    _, results = replay_results([no_gap], DEFAULT_GATES, from_file=True)
    assert [r.number for r in results] == ["1.1", "1.2-3", "1.4", "2.1"]
    assert "missed_gate" in results[1].flags and results[1].segment is None


def test_segment_numbers_as_text_and_as_floats() -> None:
    # Text is exact; Excel's floats drop trailing zeros: 1.1 after 1.9 is segment 10.
    assert segment_numbers("f", ["1.1", "1.10", "2,1", "2.2"]) == [(1, 1), (1, 10), (2, 1), (2, 2)]
    floats = [1 + k / 10 for k in range(1, 10)] + [1.1, 1.11, 2.1]
    assert segment_numbers("f", floats) == [(1, k) for k in range(1, 12)] + [(2, 1)]
    assert segment_numbers("f", [1.1, 1.2, 2.1, 2.2]) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    with pytest.raises(InputFileError, match=r"cannot read 'x\.1' as a segment number") as info:
        segment_numbers("f", ["1.1", "x.1"])
    assert info.value.location == "sheet Segments, row 3, column Number"
    with pytest.raises(InputFileError, match=r"segment 1\.2 comes after 1\.3"):
        segment_numbers("f", ["1.3", "1.2"])


def test_ten_segments_a_lap_from_floats_replay_as_numbered(tmp_path: Path) -> None:
    numbers = [1 + k / 10 for k in range(1, 10)] + [1.1, 2.1]
    gates, results = replay_results([axiamo_export(tmp_path / "r01_ten.xlsx", numbers)], DEFAULT_GATES, from_file=True)
    assert len(gates) == 10 and results[9].number == "1.10" and results[10].number == "2.1"


def test_a_file_that_starts_at_lap_two_keeps_its_lap_numbers(tmp_path: Path) -> None:
    f = axiamo_export(tmp_path / "r01_later.xlsx", ["2.3", "2.4", "3.1", "3.2", "3.3", "3.4", "5.1"])
    _, results = replay_results([f], DEFAULT_GATES, from_file=True)
    assert [r.number for r in results] == ["2.3", "2.4", "3.1", "3.2", "3.3", "3.4", "5.1"]


def test_the_files_of_one_session_must_agree(tmp_path: Path) -> None:
    a = axiamo_export(tmp_path / "r01_a.xlsx", ["1.1", "1.2", "2.1", "2.2"])
    b = axiamo_export(tmp_path / "r02_b.xlsx", [f"1.{k}" for k in range(1, 6)])
    with pytest.raises(InputFileError, match=r"lap 1 has 5 segments, but r01_a.xlsx has 2 a lap") as info:
        load_session([FileSpec(str(a)), FileSpec(str(b))], DEFAULT_GATES, [], from_file=True)
    assert info.value.path == str(b)
    c = axiamo_export(tmp_path / "r02_c.xlsx", ["1.1", "1.2", "2.1"])  # an unfinished last lap agrees
    assert len(load_session([FileSpec(str(a)), FileSpec(str(c))], DEFAULT_GATES, [], from_file=True).gates) == 2


def test_the_bundled_sample_keeps_the_demo_course_and_its_names(tmp_path: Path) -> None:
    from gateway.replay.files import expand

    loaded = load_session(expand(["@sample"]), DEFAULT_GATES, [], from_file=True)
    assert loaded.gates == DEFAULT_GATES


# -- 2. TSS duration -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Edge810-Vector-2013-08-16-15-35-10.fit", "sweatpy-4078723797.fit",
                                  "sample-activity-indoor-trainer.fit"])
def test_the_default_tss_rule_reproduces_garmin_within_one_percent(name: str) -> None:
    """Garmin counts the 30-s rolling values (seconds with power minus 29), not the timer."""
    ride = read_fit(FIT / name)
    report = ride_report(ride)
    assert report["tss_time"] == "rolling"
    assert report["ride"]["tss"] == pytest.approx(ride.device.tss, rel=0.01)
    timer = ride_report(ride, tss_time="timer")["ride"]["tss"]
    assert timer > report["ride"]["tss"]  # the timer counts the first 29 s (and pauses' records) too


# -- 3. lap NP: segment window (the seed's) and ride window (the head units') ---------------------------


def device_lap_np(path: Path) -> list[float]:
    with fitdecode.FitReader(path) as reader:
        return [float(f.get_value("normalized_power")) for f in reader
                if isinstance(f, fitdecode.FitDataMessage) and f.name == "lap"]


@pytest.mark.parametrize("name", ["Edge810-Vector-2013-08-16-15-35-10.fit", "sample-activity-indoor-trainer.fit"])
def test_the_ride_window_reproduces_the_head_units_lap_np(name: str) -> None:
    ride = read_fit(FIT / name)
    device = device_lap_np(FIT / name)
    ride_window = [lap["normalized_power"] for lap in ride_report(ride, np_window="ride")["laps"]]
    segment_window = [lap["normalized_power"] for lap in ride_report(ride)["laps"]]
    ride_err = [abs(a - b) for a, b in zip(ride_window, device, strict=True)]
    seg_err = [abs(a - b) for a, b in zip(segment_window, device, strict=True)]
    assert max(ride_err) < 4.0 and float(np.mean(ride_err)) < 1.5, ride_err
    assert max(seg_err) > 8.0  # the seed's window differs on short laps, as measured: 7-33 W


def test_the_live_engine_uses_the_same_window_as_metrics() -> None:
    """The Edge 810 ride through the live engine, laps as gate crossings: each segment's NP under
    either window equals what `metrics` computes over the same span (one code path)."""
    ride = read_fit(FIT / "Edge810-Vector-2013-08-16-15-35-10.fit")
    for window in ("segment", "ride"):
        engine = SegmentEngine(Course(("SF",), max_segment_s=7200), {"r": RiderInfo("r", "R", ftp_w=315)}, "s",
                               np_window=window, keep_s=7200)
        results = []
        laps = ride.laps
        crossings = [laps[0].start] + [lap.end for lap in laps]
        ci = 0
        for t, p, c in zip(ride.times, ride.power, ride.cadence, strict=True):
            while ci < len(crossings) and crossings[ci] <= t:
                results += engine.add_crossing("r", "SF", crossings[ci])
                ci += 1
            if p == p:
                results += engine.add_power("r", float(t), float(p), None if c != c else float(c))
        while ci < len(crossings):
            results += engine.add_crossing("r", "SF", crossings[ci])
            ci += 1
        results += engine.flush()
        want = [power_metrics(Stretch(ride.times, ride.power, ride.cadence, r.start, r.end),
                              np_window=window).normalized_power for r in results]
        assert [r.np_window for r in results] == [window] * len(laps)
        assert [r.normalized_power for r in results] == pytest.approx(want, abs=0.01)


# -- 4. FIT files from other head units ----------------------------------------------------------------


def rox_file(path: Path) -> Path:
    """A Sigma ROX writes total_timer_time 0 in its lap messages."""
    return FitFile(records=[(T0 + i, 180 + (i % 60), 88) for i in range(1200)],
                   laps=[Lap(T0, 600, 0), Lap(T0 + 600, 600, 0)],
                   sessions=[Session("cycling", T0, 1200, 1200, ftp_w=250)]).write(path)


def test_a_zero_lap_timer_falls_back_to_the_elapsed_time(tmp_path: Path) -> None:
    report = ride_report(read_fit(rox_file(tmp_path / "rox.fit")))
    assert [lap["duration_s"] for lap in report["laps"]] == [600.0, 600.0]
    assert all(lap["tss"] and lap["tss"] > 5 for lap in report["laps"])


def triathlon(path: Path, rides: int = 1) -> Path:
    """Swim, bike (or two rides), run: records throughout, power only on the bike."""
    f = FitFile()
    t, sessions, laps = T0, [], []
    for sport, seconds in [("swimming", 900)] + [("cycling", 1800)] * rides + [("running", 1200)]:
        for i in range(seconds):
            watts = 220 + (i % 30) if sport == "cycling" else (300 if sport == "running" else None)
            f.records.append((t + i, watts, 85))
        sessions.append(Session(sport, t, seconds, seconds, ftp_w=260))
        laps.append(Lap(t, seconds, seconds, sport=sport))
        t += seconds + 60
    f.sessions, f.laps = sessions, laps
    return f.write(path)


def test_a_triathlon_yields_its_ride(tmp_path: Path) -> None:
    ride = read_fit(triathlon(tmp_path / "tri.fit"))
    assert ride.sport == "cycling" and len(ride.laps) == 1
    assert ride.times[0] == T0 + 960 and ride.times[-1] == T0 + 960 + 1799  # none of the swim or the run
    assert "3 sessions in the file (swimming, cycling, running)" in (ride.note or "")


def test_several_rides_in_one_file_pick_one_and_say_the_default(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli.main import main

    path = triathlon(tmp_path / "two.fit", rides=2)
    assert main(["metrics", str(path)]) == 0
    out = capsys.readouterr().out
    assert "cycling session 1 of 2 used (--session N picks another)" in out
    second = read_fit(path, session=2)
    assert second.times[0] == T0 + 960 + 1860
    assert main(["metrics", str(path), "--session", "3"]) == 2
    assert "the file has 2 cycling session(s), not a session 3" in capsys.readouterr().err
