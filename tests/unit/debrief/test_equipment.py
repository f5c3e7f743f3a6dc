"""Equipment comparisons that cannot fool a coach (#32): simulated sessions of known truth. Four
riders, five laps of a climb and a descent in each session; riders tire 3 % a lap at the same
power; power varies run to run and time answers to it; 1 % noise."""

from __future__ import annotations

import random
from typing import Any

import pytest

from gateway.debrief.compare import compare

T0 = 1_790_000_000.0
TERRAIN = {1: ("climb", 240.0, -0.95), 2: ("descent", 90.0, -0.15)}


def ride(plan: dict[str, list[str]], *, effect_descent: float, fatigue: float, seed: int,
         laps: int = 5) -> tuple[list[dict[str, Any]], dict[str, dict[str, str]]]:
    """``plan``: each rider's setups, one a session, in order (sessions an hour apart, numbered
    alike for everyone). With setup "1.6bar" descents are ``effect_descent`` faster."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    tags: dict[str, dict[str, str]] = {}
    for rider, setups in plan.items():
        k = int(rider[1:])
        for s, setup in enumerate(setups):
            session = f"{rider}-s{s}"
            tags[session] = {"tyres": setup}
            for lap in range(1, laps + 1):
                for seg, (terrain, base, exponent) in TERRAIN.items():
                    ref = 260.0 * (1.0 if terrain == "climb" else 0.5)
                    power = ref * rng.uniform(0.94, 1.06)
                    time = base * (1 + 0.03 * k) * (power / ref) ** exponent
                    time *= (1 + fatigue) ** (s * laps + lap - 1)
                    if terrain == "descent" and setup == "1.6bar":
                        time *= 1 - effect_descent
                    time *= rng.gauss(1, 0.01)
                    rows.append({"session_id": session, "rider_id": rider, "lap": lap, "segment": seg,
                                 "duration": time, "power_avg": power, "flags": (),
                                 "start": T0 + s * 3600 + lap * 400 + seg * 200})
    return rows, tags


def by_segment(rows: list[dict[str, Any]], tags: dict[str, dict[str, str]]) -> dict[int, dict[str, Any]]:
    out = compare(rows, tags, "tyres", "1.8bar", "1.6bar", ["climb", "descent"])
    return {s["segment"]: s for s in out["segments"]}


def test_one_setup_after_the_other_with_tired_riders_gives_no_verdict_and_says_why() -> None:
    # The case: 1.8bar, then 1.6bar, the riders more tired in the second, no tyre effect.
    plan = {f"r{i}": ["1.8bar", "1.6bar"] for i in range(4)}
    for seg in by_segment(*ride(plan, effect_descent=0.0, fatigue=0.03 / 5, seed=1)).values():
        assert seg["effect_pct"] is None and seg["low_pct"] is None
        assert seg["verdict"] == ("1.6bar was ridden only after 1.8bar: fatigue (or the day) and the setup "
                                  "cannot be told apart")
        assert seg["sides"]["a"]["riders"] == ["r0", "r1", "r2", "r3"] and seg["sides"]["b"]["laps"] == 20


def test_abba_finds_a_three_percent_effect_on_descents_and_nothing_on_climbs() -> None:
    # ABBA for each rider, counterbalanced across riders (ABBA, BAAB), and fatigue all along.
    plan = {f"r{i}": (["1.8bar", "1.6bar", "1.6bar", "1.8bar"] if i % 2 == 0 else
                      ["1.6bar", "1.8bar", "1.8bar", "1.6bar"]) for i in range(4)}
    segments = by_segment(*ride(plan, effect_descent=0.03, fatigue=0.006, seed=2))
    descent, climb = segments[2], segments[1]
    assert descent["verdict"].startswith("1.6bar is faster by"), descent
    assert descent["low_pct"] <= 3.0 <= descent["high_pct"], descent
    assert climb["verdict"].startswith("cannot tell the setups apart"), climb


def test_abba_with_no_effect_cannot_tell() -> None:
    plan = {f"r{i}": (["1.8bar", "1.6bar", "1.6bar", "1.8bar"] if i % 2 == 0 else
                      ["1.6bar", "1.8bar", "1.8bar", "1.6bar"]) for i in range(4)}
    for seg in by_segment(*ride(plan, effect_descent=0.0, fatigue=0.006, seed=3)).values():
        assert seg["verdict"].startswith("cannot tell the setups apart"), seg
        # How large a difference the test could have seen, and what a 2 % one needs, from its noise.
        assert 0.5 < seg["noise_pct"] < 1.6 and seg["detectable_pct"] < 1.5, seg
        assert f"could have seen a difference of about {seg['detectable_pct']:.1f} %" in seg["verdict"]
        assert seg["runs_needed_for_2pct"] == 2


def test_one_run_against_four_gives_no_verdict() -> None:
    # The rider PDF: one 1.6bar run against four 1.8bar runs (one lap each).
    plan = {"r0": ["1.8bar", "1.8bar", "1.6bar", "1.8bar", "1.8bar"]}
    rows, tags = ride(plan, effect_descent=0.0, fatigue=0.006, seed=4, laps=1)
    for seg in by_segment(rows, tags).values():
        assert seg["effect_pct"] is None and "at least 2 times" in seg["verdict"], seg
        assert seg["left_out"] == ["r0: 4 of 1.8bar, 1 of 1.6bar"]


def laps_of(riders: dict[str, float], *, laps: int = 5, seed: int = 5, power_spread: float = 0.0
            ) -> list[dict[str, Any]]:
    """One session's climb: each rider slower by their fade a lap at the same power; power varying
    ``power_spread`` lap to lap, time following it as 1/P; 1 % noise."""
    rng = random.Random(seed)
    rows = []
    for rider, fade in riders.items():
        for lap in range(1, laps + 1):
            power = 260.0 * rng.uniform(1 - power_spread, 1 + power_spread)
            time = 240.0 * (1 + fade) ** (lap - 1) * (260.0 / power) * rng.gauss(1, 0.01)
            rows.append({"rider_id": rider, "name": rider, "lap": lap, "segment": 1, "duration": time,
                         "power_avg": power * rng.gauss(1, 0.003), "flags": (), "time_zscore": None,
                         "power_zscore": None})
    return rows


def test_a_three_percent_fade_over_five_laps_is_found_and_steady_riders_are_not() -> None:
    from gateway.debrief.fatigue import fatigue

    steady_flagged = 0
    for seed in range(10):
        out = fatigue(laps_of({"fading": 0.03, "steady": 0.0}, seed=seed))
        trend = {s["rider_id"]: s["time_trend"] for s in out["series"]}
        assert trend["fading"]["low_pct"] > 0 and trend["fading"]["verdict"] == "slower lap after lap", (seed, trend)
        assert trend["fading"]["low_pct"] <= 3.0 <= trend["fading"]["high_pct"] + 0.3, (seed, trend)
        assert "fading" in out["squad"][0]["fading"], seed
        steady_flagged += trend["steady"]["verdict"] != "no clear trend"
    assert steady_flagged <= 2  # a 95 % interval from five laps: a steady rider is flagged now and then
    three = fatigue(laps_of({"a": 0.03}, laps=3))["series"][0]["time_trend"]
    assert three["low_pct"] is None and three["verdict"] == "too few laps to tell: an interval needs 4"


def test_a_score_near_zero_is_no_quadrant_and_no_change() -> None:
    from gateway.debrief.fatigue import fatigue, quadrant

    assert quadrant({"time_zscore": -0.19, "power_zscore": 1.2}) == ""
    assert quadrant({"time_zscore": -0.8, "power_zscore": 1.2}) == "strong"
    rows = laps_of({"lea": 0.0}, laps=3)
    for row, (tz, pz) in zip(rows, [(-0.9, -0.9), (-0.19, 0.7), (0.9, 0.9)], strict=True):
        row.update(time_zscore=tz, power_zscore=pz)
    # Lap 2 sits in the neutral band: no "efficient -> strong", no "strong -> costly".
    assert fatigue(rows)["transitions"] == []


def test_time_lost_is_split_into_what_power_explains_and_the_rest() -> None:
    from gateway.debrief.fatigue import fatigue

    # Power varies ±8 % lap to lap and time follows it; r3 also fades 3 % a lap at the same power.
    out = fatigue(laps_of({"r0": 0.0, "r1": 0.0, "r2": 0.0, "r3": 0.03}, power_spread=0.08, seed=8))
    for s in out["series"]:
        for lap in s["laps"][1:]:
            lost = lap["time_s"] - s["laps"][0]["time_s"]
            fade = s["laps"][0]["time_s"] * (1.03 ** (lap["lap"] - 1) - 1) if s["rider_id"] == "r3" else 0.0
            assert lap["power_explains_s"] + lap["rest_s"] == pytest.approx(lost)
            # Within about three times the laps' noise (1 % of a lap, twice: this lap's and the first's).
            assert lap["rest_s"] == pytest.approx(fade, abs=0.05 * s["laps"][0]["time_s"]), (s["rider_id"], lap)
