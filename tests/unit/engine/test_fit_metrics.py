"""Ride metrics of real FIT rides: the head unit's own NP and TSS are the reference."""

from __future__ import annotations

import json

import pytest
from harness import DATA

from gateway.cli.main import main
from gateway.engine.ride import ride_report
from gateway.readers.fit import read_fit

FIT = DATA / "fit"


@pytest.mark.parametrize(
    "name",
    [
        "Edge810-Vector-2013-08-16-15-35-10.fit",
        "sweatpy-4078723797.fit",
        "sample-activity-indoor-trainer.fit",
    ],
)
def test_whole_ride_np_and_tss_agree_with_the_head_unit(name: str) -> None:
    """One default rule: TSS counts the 30-s rolling values (seconds with power minus 29)."""
    ride = read_fit(FIT / name)
    report = ride_report(ride)
    device = ride.device
    assert device.normalized_power is not None and device.tss is not None
    assert report["ride"]["normalized_power"] == pytest.approx(device.normalized_power, abs=1.5)
    assert report["ride"]["tss"] == pytest.approx(device.tss, rel=0.01)
    assert report["ride"]["intensity_factor"] == pytest.approx(device.intensity_factor, abs=0.006)


def test_timer_time_tss_of_the_edge_800_is_the_documented_3_percent_high() -> None:
    report = ride_report(read_fit(FIT / "sample-activity-indoor-trainer.fit"), tss_time="timer")
    assert report["ride"]["tss"] / 50.8 == pytest.approx(1.03, abs=0.01)


def test_json_output_has_ride_and_laps(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["metrics", str(FIT / "Edge810-Vector-2013-08-16-15-35-10.fit"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["laps"]) == 8
    keys = {"duration_s", "power_avg", "normalized_power", "intensity_factor", "tss", "watts_per_kg"}
    for part in [doc["ride"], *doc["laps"]]:
        assert keys <= part.keys()
    assert doc["ride"]["duration_s"] == pytest.approx(4700.05)
    # Laps partition the ride: their durations add up to it.
    assert sum(lap["duration_s"] for lap in doc["laps"]) == pytest.approx(4700.05, abs=1)
    assert doc["laps"][0]["normalized_power"] == pytest.approx(277, abs=1.5)  # the lap message says 277


def test_ftp_and_weight_default_to_the_file_and_can_be_overridden(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(FIT / "sweatpy-4078723797.fit")
    assert main(["metrics", path, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["ftp_w"], doc["weight_kg"]) == (200.0, 81.0)
    assert doc["ride"]["watts_per_kg"] == pytest.approx(doc["ride"]["power_avg"] / 81.0)
    assert main(["metrics", path, "--json", "--ftp", "250", "--weight", "75"]) == 0
    doc2 = json.loads(capsys.readouterr().out)
    assert doc2["ride"]["intensity_factor"] == pytest.approx(doc["ride"]["normalized_power"] / 250)
    assert doc2["ride"]["watts_per_kg"] == pytest.approx(doc["ride"]["power_avg"] / 75)


def test_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["metrics", str(FIT / "sweatpy-4078723797.fit")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2].split()[:6] == ["ride", "2:19:16", "219", "267.4", "1.337", "413.6"]
    assert out[-1] == "head unit: NP 267 W, IF 1.337, TSS 413.7, FTP 200 W"


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("activity-unexpected-eof.fit", "the file is truncated"),
        ("activity-settings-nodata.fit", "the file is truncated"),
        ("nick.fit", "the file is truncated"),
        ("activity-settings-corruptheader.fit", "not a FIT file or its header is corrupt"),
        ("developer-types-sample.fit", "this is a running activity, not a ride"),
        ("no-such-file.fit", "no such file"),
    ],
)
def test_bad_files_get_one_clear_line_and_exit_2(name: str, problem: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["metrics", str(FIT / name)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"trackside-gateway: {FIT / name}: {problem}")


