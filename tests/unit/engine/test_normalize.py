"""z-scores and modified z-scores against scipy on the real Freelap timing of a Swiss Cycling session."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import openpyxl
import pytest
from harness import DATA
from scipy import stats

from gateway.engine.course import Course
from gateway.engine.normalize import Population, Spread, quadrant
from gateway.engine.segments import RiderInfo, SegmentEngine
from gateway.model import SegmentResult
from gateway.results.rows import annotate


def zscores(values: list[float | None]) -> list[float | None]:
    """Each value's z-score over the values given (None stays None)."""
    spread = Spread.of([v for v in values if v is not None])
    return [spread.z(v) for v in values]


def modified_zscores(values: list[float | None]) -> list[float | None]:
    spread = Spread.of([v for v in values if v is not None])
    return [spread.modified_z(v) for v in values]

WORKBOOK = DATA / "freelap" / "swiss-cycling-mtb-2026-03-02-export.xlsx"
COURSE = Course(("SF", "TOP"), ("Climb", "Descent"))


def freelap_laps() -> list[tuple[str, int, float, float, float]]:
    """(transponder, block, lap time, climb, descent) from the export's per-transponder sheets."""
    wb = openpyxl.load_workbook(WORKBOOK, read_only=True, data_only=True)
    rows = []
    for sheet in wb.sheetnames[1:]:
        block = 0
        for row in wb[sheet].iter_rows(values_only=True):
            if isinstance(row[0], str) and row[0].startswith("Block"):
                block = int(row[0].split()[1])
            elif isinstance(row[0], int):
                rows.append((sheet, block, float(row[1]), float(row[2]), float(row[3])))
    wb.close()
    return rows


@pytest.fixture(scope="module")
def session_results() -> tuple[list[SegmentResult], list[tuple[str, int, float, float, float]]]:
    """The real laps replayed as gate crossings (bottom SF -> TOP -> SF) through the engine."""
    laps = freelap_laps()
    riders = {t: RiderInfo(t, t, squad="even" if i % 2 == 0 else "odd")
              for i, t in enumerate(sorted({r[0] for r in laps}))}
    engines = {b: SegmentEngine(COURSE, riders, f"block-{b}") for b in (1, 2)}
    clock: dict[tuple[str, int], float] = defaultdict(float)
    for transponder, block, _, climb, descent in laps:
        eng, t = engines[block], clock[(transponder, block)]
        if t == 0.0:
            eng.add_crossing(transponder, "SF", 0.0)
        eng.add_crossing(transponder, "TOP", t + climb)
        eng.add_crossing(transponder, "SF", t + climb + descent)
        clock[(transponder, block)] = t + climb + descent
    results = [r for eng in engines.values() for r in eng.flush()]
    return results, laps


def test_durations_come_from_the_timing_system(session_results) -> None:
    results, laps = session_results
    assert len(results) == 2 * len(laps) == 518
    climbs = sorted(r.duration for r in results if r.segment == 1)
    assert climbs == pytest.approx(sorted(x[3] for x in laps), abs=1e-9)
    assert all(r.flags == ("no_power",) for r in results)


def test_zscores_match_scipy_per_terrain_over_every_rider_and_lap(session_results) -> None:
    results, _ = session_results
    rows = annotate(results, results, 0.8)
    for segment in (1, 2):
        mine = [(r["duration"], r["time_zscore"], r["time_modified_zscore"]) for r in rows if r["segment"] == segment]
        x = np.array([m[0] for m in mine])
        assert np.allclose([m[1] for m in mine], stats.zscore(x), atol=1e-12)
        mad = stats.median_abs_deviation(x)
        assert mad > 0
        assert np.allclose([m[2] for m in mine], 0.6745 * (x - np.median(x)) / mad, atol=1e-12)
        # No power anywhere: every power score is undefined, not an error.
        assert all(r["power_zscore"] is None for r in rows)


def test_real_outliers_are_flagged(session_results) -> None:
    results, laps = session_results
    rows = annotate(results, results, 0.8)
    outliers = sorted((r["rider_id"], round(r["duration"], 2)) for r in rows if abs(r["time_modified_zscore"]) > 3.5)
    assert ("BD-2527", 113.77) in outliers  # the 131.6 s first lap: its climb
    lap_times = [x[2] for x in laps]
    flagged = [t for t, mz in zip(lap_times, modified_zscores(lap_times), strict=True) if abs(mz) > 3.5]
    assert flagged == [131.61]
    # The plain z-score sees it too, but the outlier inflates the deviation it is measured by.
    z = dict(zip(lap_times, zscores(lap_times), strict=True))
    assert 3.5 < z[131.61] < abs(modified_zscores(lap_times)[lap_times.index(131.61)])


def test_populations_sessions_squad_and_history(session_results) -> None:
    results, _ = session_results
    block1 = [r for r in results if r.session_id == "block-1"]
    squads = {r.rider_id: ("even" if sorted({x.rider_id for x in results}).index(r.rider_id) % 2 == 0 else "odd")
              for r in results}
    for population, expected_n in [
        (Population(frozenset({"block-1"})), sum(1 for r in block1 if r.segment == 1)),
        (Population(frozenset({"block-1", "block-2"})), sum(1 for r in results if r.segment == 1)),
        (Population(squad="odd"), sum(1 for r in results if r.segment == 1 and squads[r.rider_id] == "odd")),
        (Population(rider_id="AA-0001"), sum(1 for r in results if r.segment == 1 and r.rider_id == "AA-0001")),
    ]:
        members = [r for r in results if population.admits(r, squads.get)]
        assert sum(1 for r in members if r.segment == 1) == expected_n
        target = next(r for r in block1 if r.rider_id == "AA-0001" and r.segment == 1)
        (row,) = annotate([target], members, 0.8)
        x = np.array([r.duration for r in members if r.segment == 1])
        assert row["time_zscore"] == pytest.approx((target.duration - x.mean()) / x.std())


@pytest.mark.parametrize(
    ("values", "z", "mz"),
    [
        ([], [], []),
        ([5.0], [None], [None]),
        ([5.0, 7.0], [-1.0, 1.0], [None, None]),
        ([5.0, 5.0, 5.0], [None, None, None], [None, None, None]),
        ([5.0, None, 9.0], [-1.0, None, 1.0], [None, None, None]),
    ],
)
def test_undefined_cases_are_none(values, z, mz) -> None:
    assert zscores(values) == z
    assert modified_zscores(values) == mz


def test_mad_zero_falls_back_on_mean_absolute_deviation() -> None:
    values = [10.0, 10.0, 10.0, 10.0, 14.0]
    assert stats.median_abs_deviation(values) == 0
    mean_ad = np.mean(np.abs(np.array(values) - 10.0))
    assert modified_zscores(values) == pytest.approx([0, 0, 0, 0, 4.0 / (1.253314 * mean_ad)])


def test_quadrants_of_the_efficiency_matrix() -> None:
    assert quadrant(-1.0, -0.5) == "efficient"
    assert quadrant(-1.0, 0.5) == "strong"
    assert quadrant(1.0, 0.5) == "costly"
    assert quadrant(1.0, -0.5) == "easy"
    assert quadrant(None, 1.0) is None and quadrant(0.0, 1.0) is None


def test_missed_gate_spans_stay_out_of_the_terrain_population() -> None:
    def result(number: str, segment: int | None, duration: float) -> SegmentResult:
        return SegmentResult("s", "r", "R", number, 1, segment, 0.0, duration, duration, "SF", "TOP",
                             200.0, None, None, None, None, None, 10, 1.0)

    results = [result("1.1", 1, 100.0), result("2.1", 1, 110.0), result("3.1", 1, 120.0), result("4.1-2", None, 400.0)]
    rows = annotate(results, results, 0.8)
    assert rows[0]["time_zscore"] == pytest.approx(stats.zscore([100.0, 110.0, 120.0])[0])
    assert rows[3]["time_zscore"] is None and rows[3]["time_modified_zscore"] is None


def test_power_heard_for_part_of_a_segment_stays_out_of_the_power_population() -> None:
    """A box beside the course heard one rider for 35 % of the segment (a low average of the seconds
    it heard): that rider is scored and marked partial, but moves no one else's power score; the
    gates timed the whole segment, so their time counts in the time population as any."""
    def result(rider: str, duration: float, watts: float, coverage: float) -> SegmentResult:
        return SegmentResult("s", rider, rider, "1.1", 1, 1, 0.0, duration, duration, "SF", "TOP",
                             watts, None, None, None, None, None, 10, coverage)

    whole = [result("a", 100.0, 250.0, 1.0), result("b", 104.0, 270.0, 0.95), result("c", 98.0, 290.0, 0.9)]
    partial = result("d", 130.0, 120.0, 0.35)
    rows = annotate([*whole, partial], [*whole, partial], 0.8)
    assert rows[0]["power_zscore"] == pytest.approx(stats.zscore([250.0, 270.0, 290.0])[0])
    assert rows[0]["time_zscore"] == pytest.approx(stats.zscore([100.0, 104.0, 98.0, 130.0])[0])
    assert rows[3]["power_partial"] and not any(r["power_partial"] for r in rows[:3])
    assert rows[3]["power_zscore"] == pytest.approx((120.0 - 270.0) / np.std([250.0, 270.0, 290.0]))
    # At a threshold of 0.3 the same result counts: the coach's setting decides.
    assert annotate(whole, [*whole, partial], 0.3)[0]["power_zscore"] == pytest.approx(
        stats.zscore([250.0, 270.0, 290.0, 120.0])[0])
