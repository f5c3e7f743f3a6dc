"""A rider's own recording (a head unit's FIT file, an Axiamo logger's Excel export) as the arrays
completing a session needs: per-second power and cadence on the file's clock, its lap marks, the
power meters it had paired, and a digest that makes adding it twice a no-op."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from gateway.errors import InputFileError
from gateway.readers.axiamo import read_axiamo
from gateway.readers.fit import read_fit

KINDS = (".fit", ".xlsx")


@dataclass(frozen=True)
class HeadUnitFile:
    name: str
    digest: str  # sha256 of the bytes
    times: npt.NDArray[np.float64]  # the file's clock
    power: npt.NDArray[np.float64]
    cadence: npt.NDArray[np.float64]
    laps: npt.NDArray[np.float64]  # lap marks (starts of laps after the first), the file's clock
    meters: tuple[int, ...]  # ANT+ device numbers of the power meters paired

    @property
    def start(self) -> float:
        return float(self.times[0])

    @property
    def end(self) -> float:
        return float(self.times[-1])


def read_head_unit(path: Path, name: str) -> HeadUnitFile:
    """The file at ``path`` (shown as ``name``), or InputFileError saying what is wrong with it."""
    suffix = Path(name).suffix.lower()
    if suffix not in KINDS:
        raise InputFileError(name, "not a head unit's recording", hint="add FIT files (.fit) or Axiamo Excel "
                             "exports (.xlsx); timing files are the gates' business")
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise InputFileError(name, f"cannot read the file: {exc.strerror or exc}") from None
    if suffix == ".fit":
        ride = read_fit(path)
        laps = np.array([lap.start for lap in ride.laps[1:]], dtype=np.float64)
        out = HeadUnitFile(name, digest, ride.times, ride.power, ride.cadence, laps, ride.power_meters)
    else:
        recording = read_axiamo(path, "file", ("SF",))
        samples = recording.samples
        if not samples:
            raise InputFileError(name, "the file has no power data")
        laps = np.array(sorted({c.wall_time for c in recording.crossings})[1:], dtype=np.float64)
        out = HeadUnitFile(name, digest, np.array([s.wall_time for s in samples], dtype=np.float64),
                           np.array([s.power for s in samples], dtype=np.float64),
                           np.array([np.nan if s.cadence is None else s.cadence for s in samples], dtype=np.float64),
                           laps, ())
    if out.times.size == 0 or bool(np.isnan(out.power).all()) or not np.nanmax(out.power) > 0:
        raise InputFileError(name, "the file has no power data (every sample is empty or zero)",
                             hint="was the power meter paired with the head unit?")
    return out
