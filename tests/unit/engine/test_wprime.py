"""W' balance and critical power against published reference values (sweatpy's tests, Skiba's
forms) and on a real ride."""

from __future__ import annotations

import numpy as np
import pytest
from harness import DATA

from gateway.engine.wprime import (
    best_efforts,
    critical_power,
    tau_s,
    w_prime_balance_differential,
    w_prime_balance_integral,
)
from gateway.readers.fit import read_fit

RAMP = np.arange(100, dtype=np.float64)  # 0..99 W, CP 25 W, W' 2000 J: the reference case


def test_integral_form_matches_the_reference_values() -> None:
    assert tau_s(RAMP, 25.0) == pytest.approx(795.44010528262652, rel=1e-12)
    assert w_prime_balance_integral(RAMP, 25.0, 2000.0)[75] == pytest.approx(750.77417744392937, rel=1e-9)
    assert w_prime_balance_integral(RAMP, 25.0, 2000.0, tau=100.0)[75] == pytest.approx(909.61894732869769, rel=1e-9)


def test_differential_form_matches_the_reference_values() -> None:
    bal = w_prime_balance_differential(RAMP, 25.0, 2000.0)
    assert bal[50] == pytest.approx(1675.0) and bal[75] == pytest.approx(725.0)


def test_critical_power_of_the_two_parameter_model() -> None:
    efforts = {t: 10000 / t + 200 for t in range(1, 1801)}
    cp, w_prime = critical_power(efforts)
    assert cp == pytest.approx(200.0) and w_prime == pytest.approx(10000.0)
    assert critical_power({300: 250.0}) is None


def test_on_a_real_ride_w_prime_is_spent_above_cp_and_recovers_below() -> None:
    ride = read_fit(DATA / "fit" / "Edge810-Vector-2013-08-16-15-35-10.fit")
    efforts = best_efforts(ride.power)
    assert list(efforts) == [180, 300, 480, 720, 1200] and efforts[180] > efforts[1200]
    fitted = critical_power(efforts)
    assert fitted is not None
    cp, w_prime = fitted
    assert 200 < cp < efforts[1200] and 2000 < w_prime < 40000
    for bal in (w_prime_balance_integral(ride.power, cp, w_prime),
                w_prime_balance_differential(ride.power, cp, w_prime)):
        assert bal.max() <= w_prime + 1e-6 and bal.min() < w_prime * 0.8  # spent on the hard parts
        assert bal[-1] > bal.min()  # and recovered after
