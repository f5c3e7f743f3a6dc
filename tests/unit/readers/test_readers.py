"""Readers: Axiamo Excel, FIT and MyFreelap CSV into the same events; bad files get one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import DATA
from replay_files import axiamo, freelap_csv, real_freelap_laps

from gateway.config import riders
from gateway.engine.course import Course
from gateway.engine.segments import RiderInfo, SegmentEngine
from gateway.errors import InputFileError
from gateway.readers.axiamo import read_axiamo
from gateway.readers.freelap import read_freelap
from gateway.replay.files import FileSpec, load_session, merged, rider_of

FIT = DATA / "fit"
GATES = ["SF", "G1", "G2"]
T0 = 1_781_427_600.0


def good_axiamo(path: Path) -> Path:
    segments = [("1.1", T0, 60.0), ("1.2", T0 + 60, 40.5), ("1.3", T0 + 100.5, 30.0)]
    power = [(T0 + i * 0.5, 200 + i % 10, 85, 20.5) for i in range(262)]
    return axiamo(path, segments, power)


def test_axiamo_power_and_segments_become_samples_and_crossings(tmp_path: Path) -> None:
    rec = read_axiamo(good_axiamo(tmp_path / "anna.xlsx"), "r01", GATES)
    assert len(rec.samples) == 262
    s = rec.samples[3]
    assert (s.source, s.sensor, s.wall_time, s.power, s.cadence, s.torque) == (
        "replay:anna.xlsx", "r01", T0 + 1.5, 203, 85, 20.5)
    assert [(c.gate, c.wall_time) for c in rec.crossings] == [
        ("SF", T0), ("G1", T0 + 60), ("G2", T0 + 100.5), ("SF", T0 + 130.5)]


def test_axiamo_times_as_excel_datetimes(tmp_path: Path) -> None:
    import datetime as dt

    start = dt.datetime(2026, 6, 14, 9, 0, 0)
    path = axiamo(tmp_path / "a.xlsx", [("1.1", start, "1:00.0")],
                  [(start + dt.timedelta(seconds=i), 250, None, None) for i in range(60)])
    rec = read_axiamo(path, "r01", GATES)
    assert rec.crossings[0].wall_time == T0 and rec.crossings[1].wall_time == T0 + 60
    assert rec.samples[59].wall_time == T0 + 59 and rec.samples[0].cadence is None


@pytest.mark.parametrize(
    ("build", "message", "location"),
    [
        (lambda p: axiamo(p, [], [], sheets=("Segments", "Power")), "no sheet 'PowerData' (found: Segments, Power)",
         None),
        (lambda p: axiamo(p, [], [(T0, 1)], power_header=("Frame", "Time", "InstantPower")),
         "sheet 'PowerData' has no column 'WallTime'", None),
        (lambda p: axiamo(p, [("1.1", T0, 60)], [(T0, 200), ("09:00:xx", 210)]), "cannot read '09:00:xx' as a time",
         "sheet PowerData, row 3, column WallTime"),
        (lambda p: axiamo(p, [("1.1", T0, "sixty")], [(T0, 200)]), "cannot read 'sixty' as a duration",
         "sheet Segments, row 2, column Duration"),
        (lambda p: (p.write_text("not a workbook"), p)[1], "not an Excel workbook", None),
    ],
)
def test_axiamo_errors_name_the_sheet_row_and_column(tmp_path: Path, build, message: str, location: str | None) -> None:
    path = build(tmp_path / "bad.xlsx")
    with pytest.raises(InputFileError) as info:
        read_axiamo(path, "r01", GATES)
    assert message in str(info.value)
    assert info.value.path == str(path)
    assert info.value.location == location


def test_fit_rides_replay_their_power_and_laps() -> None:
    loaded = load_session([FileSpec(str(FIT / "Edge810-Vector-2013-08-16-15-35-10.fit"), "Anna")],
                          GATES, riders([{"id": "r01", "name": "Anna"}]))
    recs, strangers = loaded.recordings, loaded.strangers
    (rec,) = recs
    assert strangers == []
    assert rec.rider == "r01" and len(rec.samples) == 4700
    assert len(rec.crossings) == 9  # the start and the end of each of the 8 laps
    assert [c.gate for c in rec.crossings[:4]] == ["SF", "G1", "G2", "SF"]


def test_rider_from_file_name_or_command_line() -> None:
    roster = riders([{"id": "r01", "name": "Anna"}, {"id": "r02", "name": "Lea"}])
    assert rider_of(FileSpec("/x/anna.xlsx"), roster) == ("r01", "Anna")
    assert rider_of(FileSpec("/x/r02_intervals.fit"), roster) == ("r02", "Lea")
    assert rider_of(FileSpec("/x/ride.fit", rider="lea"), roster) == ("r02", "Lea")
    assert rider_of(FileSpec("/x/Tom Pidcock.fit"), roster) == ("Tom-Pidcock", "Tom Pidcock")
    assert FileSpec.parse("Lea=/x/ride.fit@-3.5") == FileSpec("/x/ride.fit", "Lea", -3.5)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "cp1252", "latin-1"])
def test_real_freelap_times_come_back_as_segment_durations(tmp_path: Path, encoding: str) -> None:
    laps = real_freelap_laps()
    path = freelap_csv(tmp_path / "export.csv", laps, encoding=encoding)
    rec = read_freelap(path, ["SF", "TOP"])
    infos = {t: RiderInfo(t, t) for t in laps}
    engine = SegmentEngine(Course(("SF", "TOP")), infos, "s")
    for c in rec.crossings:
        engine.add_crossing(c.transponder, c.gate, c.wall_time)
    results = engine.flush()
    # The pause between blocks shows as a lap of missed gates, kept out of the terrain results.
    got = sorted((r.rider_id, r.segment, round(r.duration, 2)) for r in results if r.segment is not None)
    want = sorted((t, seg, round(x, 2)) for t, blocks in laps.items() for block in blocks
                  for lap, climb, descent in block for seg, x in ((1, climb), (2, lap - climb)))
    assert got == want
    assert len(got) == 2 * 259
    # Blocks are laid out one after another: nobody's block 2 overlaps anybody's block 1.
    firsts = sorted(c.wall_time for c in rec.crossings)
    assert firsts[0] == pytest.approx(1772445600.0)  # 2026-03-02 10:00 UTC


def test_freelap_bad_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("Session\nDate;02/03/2026\nN;ID;TEMPS;;L1;L2\n1;BD-1;4,67;;;\n2;BD-1;44,76;;27,3;17;46\n"
                    "3;BD-1;4x.1;;27,3;17,46\n")
    with pytest.raises(InputFileError) as info:
        read_freelap(path, ["SF", "TOP"])
    assert info.value.location == "line 6, column TEMPS"
    assert "cannot read '4x.1' as a lap time" in str(info.value)
    path.write_text("just some text\n")
    with pytest.raises(InputFileError, match="no header row 'N;ID;TEMPS'"):
        read_freelap(path, ["SF", "TOP"])


def test_session_of_power_files_and_a_timing_file_aligned_with_an_offset(tmp_path: Path) -> None:
    day = 1772445600.0
    power = [(day - 60 + i, 250, 90, None) for i in range(400)]
    axiamo(tmp_path / "anna.xlsx", [], power)
    laps = {"BD-2525": [[(100.0, 60.0, 40.0)]]}
    freelap_csv(tmp_path / "times.csv", laps, marker=0.0)
    roster = riders([{"id": "r01", "name": "Anna", "transponder": "BD-2525"}])
    specs = [FileSpec(str(tmp_path / "anna.xlsx"), offset_s=30.0), FileSpec(str(tmp_path / "times.csv"))]
    recs = load_session(specs, ["SF", "TOP"], roster).recordings
    events = merged(recs)
    assert events[0].wall_time == day - 30  # the head unit's clock was 30 s behind
    crossings = [e for e in events if hasattr(e, "transponder")]
    assert [(c.transponder, c.gate, c.wall_time - day) for c in crossings] == [
        ("BD-2525", "SF", 0.0), ("BD-2525", "TOP", 60.0), ("BD-2525", "SF", 100.0)]


def test_unknown_kind_of_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"unknown kind of file '\.gpx'"):
        load_session([FileSpec(str(tmp_path / "ride.gpx"))], GATES, [])


def test_files_read_side_by_side_keep_their_order_and_the_first_bad_one_is_named(tmp_path: Path) -> None:
    import gc

    day = 1772445600.0
    for i, name in enumerate(["anna", "ben", "cara", "dora"]):
        axiamo(tmp_path / f"{name}.xlsx", [], [(day + i + k, 200 + i, 90, None) for k in range(50)])
    specs = [FileSpec(str(tmp_path / f"{n}.xlsx")) for n in ["dora", "anna", "cara", "ben"]]
    recs = load_session(specs, ["SF", "TOP"], []).recordings
    assert [r.rider for r in recs] == ["dora", "anna", "cara", "ben"]
    assert [r.samples[0].power for r in recs] == [203, 200, 202, 201]
    (tmp_path / "bad1.xlsx").write_text("not a workbook")
    (tmp_path / "bad2.xlsx").write_bytes(b"PK\x03\x04 broken zip")
    bad = [specs[0], FileSpec(str(tmp_path / "bad2.xlsx")), specs[1], FileSpec(str(tmp_path / "bad1.xlsx"))]
    with pytest.raises(InputFileError, match="not an Excel workbook") as info:
        load_session(bad, ["SF", "TOP"], [])
    assert info.value.path.endswith("bad2.xlsx")
    assert gc.isenabled()  # the cycle collector is off only while files are read
