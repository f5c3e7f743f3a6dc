"""Debrief (issue #16) without a server: fatigue trends (Theil-Sen) and equipment comparisons with
known effects. The debrief on the page and as a PDF: tests/system/test_debrief_page.py."""

from __future__ import annotations

import random
from typing import Any

import pytest

from gateway.debrief.compare import compare
from gateway.debrief.fatigue import fatigue, theil_sen

TERRAIN = ["climb", "descent", "climb", "descent"]
T0 = 1_790_000_000.0


def sessions_with_a_known_effect(effect_descent: float, seed: int = 3) -> tuple[list[dict[str, Any]],
                                                                                 dict[str, dict[str, str]]]:
    """Six riders, eight sessions alternating tyres A and B, three laps of four segments. With A,
    descents are ``effect_descent`` faster; climbs do not care. Power varies ±6 % run to run and
    time answers to it as physics says (climbs ~ 1/P, descents barely), with 1.5 % noise."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    tags: dict[str, dict[str, str]] = {}
    base = {1: 180.0, 2: 60.0, 3: 150.0, 4: 70.0}
    exponent = {"climb": -0.95, "descent": -0.15}
    for s in range(8):
        session = f"s{s}"
        tyre = "A" if s % 2 == 0 else "B"
        tags[session] = {"tyres": tyre}
        for rider in range(6):
            ftp = 250 + 15 * rider
            for lap in (1, 2, 3):
                for seg in (1, 2, 3, 4):
                    terrain = TERRAIN[seg - 1]
                    power = ftp * (1.0 if terrain == "climb" else 0.6) * rng.uniform(0.94, 1.06)
                    ref = ftp * (1.0 if terrain == "climb" else 0.6)
                    time = base[seg] * (1 + 0.02 * rider) * (power / ref) ** exponent[terrain]
                    if terrain == "descent" and tyre == "A":
                        time *= 1 - effect_descent
                    time *= rng.gauss(1, 0.015)
                    rows.append({"session_id": session, "rider_id": f"r{rider}", "name": f"R{rider}", "lap": lap,
                                 "segment": seg, "number": f"{lap}.{seg}", "duration": time, "power_avg": power,
                                 "flags": (), "start": T0 + s * 7200 + lap * 600 + seg * 120})
    return rows, tags


def test_a_known_effect_is_found_and_a_null_one_is_not_distinguishable() -> None:
    rows, tags = sessions_with_a_known_effect(0.03)
    out = compare(rows, tags, "tyres", "A", "B", [f"{t} {i + 1}" for i, t in enumerate(TERRAIN)])
    by = {s["segment"]: s for s in out["segments"]}
    for seg in (2, 4):  # descents: 3 % faster with A, and the interval covers it
        s = by[seg]
        assert s["low_pct"] <= -3.0 <= s["high_pct"], s
        assert s["high_pct"] < 0 and s["verdict"].startswith("A is faster by")
        assert s["sides"]["a"]["sessions"] == ["s0", "s2", "s4", "s6"] and s["sides"]["a"]["laps"] == 12
        assert s["runs_a"] == 4 * 6 * 3 and s["riders_both"] == 6
    for seg in (1, 3):  # climbs: no effect, whatever the power did
        s = by[seg]
        assert s["low_pct"] <= 0 <= s["high_pct"], s
        assert s["verdict"].startswith("cannot tell the setups apart")
        assert -1.2 < s["slope"] < -0.7  # power accounted for: time answers to power on a climb
    null_rows, null_tags = sessions_with_a_known_effect(0.0, seed=11)
    null = compare(null_rows, null_tags, "tyres", "A", "B")
    assert all(s["verdict"].startswith("cannot tell") for s in null["segments"])


def test_theil_sen_resists_one_bad_lap_and_says_when_laps_are_too_few() -> None:
    slope, low, high = theil_sen([1, 2, 3, 4, 5, 6], [100, 102, 104, 160, 108, 110])  # lap 4: a dropped chain
    assert slope == pytest.approx(2.0) and low is not None and high is not None and low <= 2.0 <= high
    assert theil_sen([1, 2, 3], [100, 101, 103])[1:] == (None, None)


def test_fatigue_lists_trends_transitions_and_who_fades_where() -> None:
    rows = []
    for lap in range(1, 6):
        for rider, fade in (("lea", 0.04), ("nina", 0.0)):
            t = 100 * (1 + fade * (lap - 1)) * (1 + 0.001 * ((lap * 7) % 3))
            q = (-1.0, -1.0) if rider == "nina" or lap < 3 else (1.0, 1.0)
            rows.append({"rider_id": rider, "name": rider.title(), "lap": lap, "segment": 2, "number": f"{lap}.2",
                         "duration": t, "power_avg": 250.0, "time_zscore": q[0], "power_zscore": q[1], "flags": ()})
    out = fatigue(rows, ["First climb", "Descent"])
    lea = next(s for s in out["series"] if s["rider_id"] == "lea")
    assert lea["time_trend"]["per_lap_pct"] == pytest.approx(4.0, abs=0.3)
    assert lea["time_trend"]["low_pct"] > 0
    assert lea["laps"][-1]["vs_first_pct"] == pytest.approx(16.0, abs=0.5)
    assert [t["text"] for t in out["transitions"]] == ["Lea, lap 3, segment 2 (Descent): efficient -> costly"]
    assert out["squad"][0]["fading"] == ["Lea"]
    assert out["lost_most"]["lea"][0]["segment_name"] == "Descent"


