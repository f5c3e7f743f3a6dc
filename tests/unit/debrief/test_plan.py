"""Planning an equipment test (#32): a balanced order, and runs from the squad's noise."""

from __future__ import annotations

from test_equipment import ride

from gateway.debrief.plan import balanced_order, plan


def test_abba_for_each_rider_counterbalanced_across_riders() -> None:
    order = balanced_order(["r0", "r1", "r2", "r3"], "1.8bar", "1.6bar", 4)
    assert order["r0"] == ["1.8bar", "1.6bar", "1.6bar", "1.8bar"]
    assert order["r1"] == ["1.6bar", "1.8bar", "1.8bar", "1.6bar"]
    for setups in order.values():  # the same mean place in the session for both setups
        assert sum(i for i, s in enumerate(setups) if s == "1.8bar") == sum(i for i, s in enumerate(setups)
                                                                          if s == "1.6bar")
    for k in range(4):  # and each run ridden on both setups by half the squad
        assert sorted(setups[k] for setups in order.values()) == ["1.6bar", "1.6bar", "1.8bar", "1.8bar"]


def test_runs_needed_follow_the_squads_noise() -> None:
    history, _ = ride({f"r{i}": ["x", "x"] for i in range(4)}, effect_descent=0.0, fatigue=0.0, seed=6)
    out = plan(["r0", "r1", "r2", "r3"], "1.8bar", "1.6bar", 4, history)
    assert 0.6 < out["noise_pct"] < 1.5  # the simulation's 1 % noise, found again
    assert out["runs_needed_for_2pct"] == 2 and out["detectable_pct"] < 2.0
    assert "needs 2 runs of each setup per rider" in out["note"]
    none = plan(["r0"], "1.8bar", "1.6bar", 4, [])
    assert none["runs_needed_for_2pct"] is None and "unknown" in none["note"]


def test_a_planned_test_tags_each_riders_run_and_the_comparison_reads_them() -> None:
    """The squad rides the plan's runs together, session after session, each rider on their own
    setup (the session record's ``rider_tags``): a 3 % faster descent on 1.6bar is found."""
    import random

    from gateway.debrief.compare import compare, rider_key

    riders = ["r0", "r1", "r2", "r3"]
    order = balanced_order(riders, "1.8bar", "1.6bar", 4)
    rng = random.Random(9)
    rows, tags = [], {}
    for run in range(4):
        session = f"run-{run}"
        tags[session] = {"course": "loop"}
        for k, rider in enumerate(riders):
            setup = order[rider][run]
            tags[rider_key(session, rider)] = {"course": "loop", "tyres": setup}
            for lap in range(1, 4):
                power = 130.0 * rng.uniform(0.94, 1.06)
                time = 90.0 * (1 + 0.03 * k) * (power / 130.0) ** -0.15 * 1.005 ** (run * 3 + lap)
                time *= (0.97 if setup == "1.6bar" else 1.0) * rng.gauss(1, 0.01)
                rows.append({"session_id": session, "rider_id": rider, "lap": lap, "segment": 2, "duration": time,
                             "power_avg": power, "flags": (), "start": 1.79e9 + run * 3600 + lap * 300})
    (descent,) = compare(rows, tags, "tyres", "1.8bar", "1.6bar")["segments"]
    assert descent["verdict"].startswith("1.6bar is faster by") and descent["low_pct"] <= 3.0 <= descent["high_pct"]
    assert descent["sides"]["a"]["sessions"] == ["run-0", "run-1", "run-2", "run-3"]
