"""Whose file and its clock, on real rides (pure functions, no spool): the power the boxes heard
of a rider (10 % of each lap) against the rider's head-unit file."""

from __future__ import annotations

import numpy as np
import pytest
from harness import DATA

from gateway.complete.align import by_crossings, by_power
from gateway.complete.whose import RiderEvidence, whose
from gateway.readers.fit import read_fit

RIDES = ["Edge810-Vector-2013-08-16-15-35-10.fit", "sweatpy-4078723797.fit", "2019-02-17-062644-ELEMNT-297E-195-0.fit"]


def heard(ride, offset: float, drift_ppm: float, share: float = 0.1, lap_s: float = 600.0):
    """What a box heard: the first ``share`` of every ``lap_s``, on a clock ``offset`` s off."""
    t, p = ride.times, ride.power
    keep = ((t - t[0]) % lap_s < share * lap_s) & ~np.isnan(p)
    return t[keep] + offset + drift_ppm * 1e-6 * (t[keep] - t[0]), p[keep]


@pytest.mark.parametrize("name", RIDES)
@pytest.mark.parametrize("offset", [37.0, -412.6, 3.3])
def test_the_clock_is_found_within_half_a_second(name: str, offset: float) -> None:
    ride = read_fit(DATA / "fit" / name)
    live_t, live_p = heard(ride, offset, 30.0)
    found = by_power(ride.times, ride.power, live_t, live_p)
    truth = ride.times + offset + 30e-6 * (ride.times - ride.times[0])
    assert found.sure and np.abs(found.to_box(ride.times) - truth).max() < 0.5


def test_too_little_heard_is_no_alignment() -> None:
    ride = read_fit(DATA / "fit" / RIDES[0])
    live_t, live_p = heard(ride, 37.0, 0.0, share=0.004)  # about 2 s a lap
    assert not by_power(ride.times, ride.power, live_t, live_p).sure


def test_lap_marks_against_the_gates_give_the_clock_without_power() -> None:
    ride = read_fit(DATA / "fit" / RIDES[0])
    laps = np.array([lap.start for lap in ride.laps[1:]])
    crossings = laps + 37.0 + 0.4  # the chip crossed within the second the head unit marked
    found = by_crossings(laps, crossings)
    assert found.method == "crossings" and found.sure and abs(found.offset_s - 37.4) < 0.5


def test_a_paired_meter_names_the_rider_and_power_names_no_one_it_does_not_fit() -> None:
    ride = read_fit(DATA / "fit" / RIDES[2])  # the ELEMNT's power meter is ANT+ 20304
    live_t, live_p = heard(ride, 12.0, 0.0)
    other = read_fit(DATA / "fit" / RIDES[1])
    stranger_p = np.interp(live_t - 12.0 - ride.times[0] + other.times[0], other.times, np.nan_to_num(other.power))
    riders = [RiderEvidence("r1", "Anna", frozenset({20304}), live_t, live_p),
              RiderEvidence("r2", "Lea", frozenset({777}), live_t, stranger_p)]
    verdict = whose(ride.times, ride.power, ride.power_meters, riders)
    assert verdict.rider is not None and verdict.rider.rider_id == "r1" and "20304" in verdict.rider.evidence
    # Without the pairing, the power alone: Anna's, clearly.
    bare = [RiderEvidence(r.rider_id, r.name, frozenset(), r.live_t, r.live_p) for r in riders]
    verdict = whose(ride.times, ride.power, (), bare)
    assert verdict.rider is not None and verdict.rider.rider_id == "r1"
    # Only Lea rode: the file is nobody's here, and goes to no one.
    assert whose(ride.times, ride.power, (), bare[1:]).rider is None
