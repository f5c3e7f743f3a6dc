"""Whose file it is: the power meter's ANT+ device number in the file's device records against the
session's pairing, else how well the file's power lays over what the boxes heard of each rider.
A file goes to a rider without asking only when the evidence is clear; otherwise the coach is
shown the candidates with their evidence and picks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gateway.complete.align import CONFIDENT, Alignment, by_power

CLEARLY_BETTER = 3.0  # the best rider's fit must be this many times closer than the next one's


@dataclass(frozen=True)
class RiderEvidence:
    """What the session knows of a rider: the meters paired (ANT+ device numbers), and the power
    the boxes heard (box time)."""

    rider_id: str
    name: str
    meters: frozenset[int]
    live_t: npt.NDArray[np.float64]
    live_p: npt.NDArray[np.float64]


@dataclass(frozen=True)
class Candidate:
    rider_id: str
    name: str
    evidence: str  # in words, for the coach
    alignment: Alignment


@dataclass(frozen=True)
class Verdict:
    """``rider``: the file's rider when the evidence is clear; else the ``candidates`` to choose from
    (none: nobody in the session fits the file)."""

    rider: Candidate | None
    candidates: tuple[Candidate, ...]


def whose(file_t: npt.NDArray[np.float64], file_p: npt.NDArray[np.float64], file_meters: Sequence[int],
          riders: Sequence[RiderEvidence]) -> Verdict:
    by_meter = [r for r in riders if r.meters & set(file_meters)]
    if len(by_meter) == 1:
        r = by_meter[0]
        number = sorted(r.meters & set(file_meters))[0]
        alignment = by_power(file_t, file_p, r.live_t, r.live_p)
        found = Candidate(r.rider_id, r.name, f"the file's power meter {number} is paired with {r.name}", alignment)
        return Verdict(found, (found,))
    fits: list[tuple[float, Candidate]] = []
    for r in by_meter or riders:
        alignment = by_power(file_t, file_p, r.live_t, r.live_p)
        if alignment.method != "power":
            continue
        error = _rms(file_t, file_p, r, alignment)
        fits.append((error, Candidate(r.rider_id, r.name, f"its power matches what the boxes heard of {r.name} "
                                      f"within {error:.0f} W over {alignment.evidence_s:.0f} s", alignment)))
    # A fit whose clock could not be placed with confidence (a few seconds of pedalling heard, a
    # stretch of zeros that lies over any file's) ranks after every fit that could.
    fits.sort(key=lambda f: (not f[1].alignment.sure, f[0]))
    candidates = tuple(c for _, c in fits)
    if fits and fits[0][1].alignment.confidence >= CONFIDENT and fits[0][0] < 60.0 and (
            len(fits) == 1 or fits[1][0] > CLEARLY_BETTER * max(fits[0][0], 5.0)):
        return Verdict(fits[0][1], candidates)
    return Verdict(None, candidates)


def _rms(file_t: npt.NDArray[np.float64], file_p: npt.NDArray[np.float64], rider: RiderEvidence,
         alignment: Alignment) -> float:
    """The root mean square power difference of the rider's live samples against the aligned file."""
    at = alignment.to_box(file_t)
    good = ~np.isnan(file_p)
    inside = (rider.live_t >= at[good][0]) & (rider.live_t <= at[good][-1])
    if not inside.any():
        return float("inf")
    diff = np.interp(rider.live_t[inside], at[good], file_p[good]) - rider.live_p[inside]
    return float(np.sqrt(np.nanmean(diff ** 2)))
