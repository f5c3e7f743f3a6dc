"""Pure metric functions on crafted series whose answers are known by hand or by brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gateway.engine.metrics import (
    Stretch,
    intensity_factor,
    normalized_power,
    power_metrics,
    resample_1hz,
    training_stress_score,
    watts_per_kg,
)


def brute_force_np(p: list[float]) -> float:
    rolling = [sum(p[i:i + 30]) / 30 for i in range(len(p) - 29)]
    return (sum(r ** 4 for r in rolling) / len(rolling)) ** 0.25


def test_constant_power_np_equals_power() -> None:
    value, short = normalized_power([250.0] * 120)
    assert value == pytest.approx(250.0)
    assert short is False


def test_np_matches_brute_force_on_intervals() -> None:
    rng = np.random.default_rng(7)
    p = list(np.concatenate([np.full(60, 150.0), np.full(45, 420.0), rng.uniform(0, 600, 200)]))
    value, _ = normalized_power(p)
    assert value == pytest.approx(brute_force_np(p), rel=1e-12)
    # NP of a variable effort exceeds its average power.
    assert value > float(np.mean(p)) + 20


def test_gap_is_excluded_not_zero_filled() -> None:
    times = np.concatenate([np.arange(0, 100), np.arange(160, 260)]).astype(float)
    power = np.full(times.size, 300.0)
    m = power_metrics(Stretch(times, power, None, 0.0, 260.0))
    assert m.normalized_power == pytest.approx(300.0)
    assert m.power_avg == pytest.approx(300.0)
    assert m.coverage == pytest.approx(200 / 260)
    assert "power_gap" in m.flags


def test_short_silence_is_held_long_silence_is_excluded() -> None:
    times = np.array([0.0, 1.0, 2.0, 6.0, 7.0, 30.0])
    grid = resample_1hz(times, [100, 200, 300, 400, 500, 600], 0.0, 33.0, max_gap_s=5.0)
    assert grid[:3] == [100, 200, 300]
    assert grid[3:6] == [300, 300, 300]  # 4 s of silence: the meter skipped messages
    assert grid[6:8] == [400, 500]
    assert all(math.isnan(v) for v in grid[8:30])  # 23 s of silence: a dropout, left out entirely
    assert grid[30:] == [600, 600, 600]  # held to the end: 3 s after the last sample


def test_four_hz_samples_average_per_second() -> None:
    t = np.arange(0, 60, 0.25)
    p = np.where((t % 1) < 0.5, 100.0, 300.0)
    grid = resample_1hz(t, p, 0.0, 60.0)
    assert grid == [200.0] * 60


def test_short_segment_np_is_mean_and_flagged() -> None:
    m = power_metrics(Stretch(np.arange(20.0), np.linspace(100, 300, 20), None, 0.0, 20.0))
    assert m.normalized_power == pytest.approx(200.0)
    assert "short_segment" in m.flags


def test_one_hour_at_ftp_is_100_tss() -> None:
    assert training_stress_score(3600.0, 250.0, 250.0) == pytest.approx(100.0)
    assert intensity_factor(225.0, 250.0) == pytest.approx(0.9)
    assert training_stress_score(1800.0, 225.0, 250.0) == pytest.approx(0.5 * 0.81 * 100)
    assert watts_per_kg(300.0, 60.0) == pytest.approx(5.0)


@pytest.mark.parametrize(("ftp", "weight"), [(None, 60.0), (250.0, None), (0.0, 0.0)])
def test_missing_ftp_or_weight_gives_none_not_an_error(ftp: float | None, weight: float | None) -> None:
    m = power_metrics(Stretch(np.arange(60.0), np.full(60, 200.0), None, 0.0, 60.0), ftp_w=ftp, weight_kg=weight)
    assert m.normalized_power == pytest.approx(200.0)
    if not ftp:
        assert m.intensity_factor is None and m.tss is None
    if not weight:
        assert m.watts_per_kg is None


def test_no_samples_is_a_time_only_result() -> None:
    m = power_metrics(Stretch([], [], None, 10.0, 70.0), ftp_w=250.0, weight_kg=60.0)
    assert (m.duration_s, m.samples, m.coverage) == (60.0, 0, 0.0)
    assert m.power_avg is None and m.normalized_power is None and m.tss is None
    assert m.flags == ("no_power",)


def test_samples_outside_the_segment_are_ignored_and_cadence_averaged() -> None:
    t = np.arange(-10.0, 70.0)
    p = np.where((t >= 0) & (t < 60), 250.0, 1000.0)
    c = np.where((t >= 0) & (t < 60), 90.0, math.nan)
    m = power_metrics(Stretch(t, p, c, 0.0, 60.0), ftp_w=250.0, weight_kg=62.5)
    assert m.samples == 60
    assert m.power_avg == pytest.approx(250.0)
    assert m.cadence_avg == pytest.approx(90.0)
    assert m.watts_per_kg == pytest.approx(4.0)
    assert m.tss == pytest.approx(60 / 3600 * 100)
    assert m.flags == ()


def naive_grid(times: list[float], values: list[float], start: float, end: float, max_gap_s: float) -> list[float]:
    """The 1 Hz grid by its definition, a second at a time (slow, obviously right)."""
    inside = [(t, v) for t, v in zip(times, values, strict=True) if start <= t < end and not math.isnan(v)]

    def mean_of(k: int) -> float | None:
        got = [v for t, v in inside if start + k <= t < start + k + 1]
        return sum(got) / len(got) if got else None

    out = []
    for k in range(math.ceil(end - start)):
        own = mean_of(k)
        before = [t for t, _ in inside if t < start + k]
        after = [t for t, _ in inside if t >= start + k + 1]
        if own is not None:
            out.append(own)
        elif before and (min(after) if after else end) - max(before) <= max_gap_s:
            out.append(mean_of(int(max(before) - start)))
        else:
            out.append(math.nan)
    return out


def test_the_grid_matches_its_definition_on_irregular_samples_with_gaps() -> None:
    rng = np.random.default_rng(11)
    for _ in range(40):
        times = np.sort(rng.uniform(0.0, 90.0, int(rng.integers(1, 200)))).tolist()
        values = rng.uniform(0.0, 900.0, len(times)).tolist()
        values = [math.nan if rng.random() < 0.1 else v for v in values]  # a meter's value it could not read
        start, end = float(rng.uniform(-5, 20)), float(rng.uniform(40, 95))  # fractional ends too
        want = naive_grid(times, values, start, end, 3.0)
        shuffled = rng.permutation(len(times))  # in time order (bisection) and in any order (a loop)
        for t_in, v_in in ((times, values), ([times[i] for i in shuffled], [values[i] for i in shuffled])):
            got = resample_1hz(t_in, v_in, start, end, max_gap_s=3.0)
            assert len(got) == len(want)
            assert all((math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12)
                       for a, b in zip(got, want, strict=True))
