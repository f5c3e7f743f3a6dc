"""FIT activity files (Garmin, Wahoo, ...) through fitdecode: power records, laps, the device's summary."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from gateway.errors import InputFileError

CYCLING_SPORTS = {"cycling", "e_biking"}
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lap:
    start: float
    end: float
    timer_time: float


@dataclass(frozen=True)
class DeviceSummary:
    """What the head unit itself computed and stored in the session message (None if absent)."""

    normalized_power: float | None = None
    intensity_factor: float | None = None
    tss: float | None = None
    ftp_w: float | None = None
    avg_power: float | None = None


@dataclass(frozen=True)
class Ride:
    path: str
    sport: str | None
    start: float
    end: float
    timer_time: float
    times: NDArray[np.float64]
    power: NDArray[np.float64]
    cadence: NDArray[np.float64]
    laps: list[Lap] = field(default_factory=list)
    device: DeviceSummary = field(default_factory=DeviceSummary)
    weight_kg: float | None = None

    @property
    def ftp_w(self) -> float | None:
        return self.device.ftp_w


def _value(msg: object, name: str) -> object:
    return msg.get_value(name, fallback=None)  # type: ignore[attr-defined]


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _lap(frame: object) -> Lap | None:
    start, stamp = _value(frame, "start_time"), _value(frame, "timestamp")
    if start is None or stamp is None:
        return None
    t0 = start.timestamp()  # type: ignore[attr-defined]
    # The lap message can be written long after the lap ended (saved later): the elapsed time
    # is the lap's real extent, the timestamp only a fallback.
    elapsed = _num(_value(frame, "total_elapsed_time"))
    end = t0 + elapsed if elapsed is not None else stamp.timestamp()  # type: ignore[attr-defined]
    timer = _num(_value(frame, "total_timer_time"))
    return Lap(t0, end, timer if timer is not None else end - t0)


def read_fit(path: str | Path) -> Ride:
    """Read a FIT activity; raise InputFileError naming the file and the problem."""
    import fitdecode

    name = str(path)
    rows: list[tuple[float, float, float]] = []
    laps: list[Lap] = []
    session = None
    weight = None
    ftp_zone = None
    try:
        # A checksum that does not match is a corrupt file: an error, not a library warning.
        with warnings.catch_warnings(record=True) as caught, \
                fitdecode.FitReader(name, check_crc=fitdecode.CrcCheck.RAISE) as reader:
            warnings.simplefilter("always")
            for frame in reader:
                if not isinstance(frame, fitdecode.FitDataMessage):
                    continue
                if frame.name == "record":
                    ts = _value(frame, "timestamp")
                    if ts is None:
                        continue
                    power, cadence = _num(_value(frame, "power")), _num(_value(frame, "cadence"))
                    rows.append((ts.timestamp(), np.nan if power is None else power,  # type: ignore[attr-defined]
                                 np.nan if cadence is None else cadence))
                elif frame.name == "lap":
                    lap = _lap(frame)
                    if lap is not None:
                        laps.append(lap)
                elif frame.name == "session" and session is None:
                    session = frame
                elif frame.name == "user_profile":
                    weight = _num(_value(frame, "weight")) or weight
                elif frame.name == "zones_target":
                    ftp_zone = _num(_value(frame, "functional_threshold_power")) or ftp_zone
    except FileNotFoundError:
        raise InputFileError(name, "no such file") from None
    except IsADirectoryError:
        raise InputFileError(name, "is a directory, not a FIT file") from None
    except fitdecode.FitHeaderError as exc:
        raise InputFileError(name, f"not a FIT file or its header is corrupt ({exc})",
                             hint="check that this is the .fit file the head unit wrote") from None
    except fitdecode.FitEOFError as exc:
        raise InputFileError(name, f"the file is truncated: it ends in the middle of a record ({exc})",
                             hint="copy it again from the head unit; the transfer was cut short") from None
    except fitdecode.FitCRCError as exc:
        raise InputFileError(name, f"the file is corrupt: checksum mismatch ({exc})") from None
    except fitdecode.FitError as exc:
        raise InputFileError(name, f"the file cannot be decoded as FIT ({exc})") from None
    except OSError as exc:
        raise InputFileError(name, f"cannot read the file: {exc.strerror or exc}") from None

    for warning in caught:
        log.warning("%s: %s", name, str(warning.message).splitlines()[0])
    sport = str(_value(session, "sport")) if session is not None and _value(session, "sport") else None
    if sport is not None and sport not in CYCLING_SPORTS:
        raise InputFileError(name, f"this is a {sport} activity, not a ride",
                             hint="power metrics here are for cycling files")
    if not rows:
        raise InputFileError(name, "the file has no records (no samples over time)")
    data = np.array(sorted(rows), dtype=np.float64)
    times, power, cadence = data[:, 0], data[:, 1], data[:, 2]
    if np.isnan(power).all():
        raise InputFileError(name, "the file has no power data", hint="was a power meter paired?")
    if session is not None and _value(session, "start_time") is not None:
        start = _value(session, "start_time").timestamp()  # type: ignore[union-attr]
    else:
        start = float(times[0])
    end = float(times[-1]) + 1.0
    timer = _num(_value(session, "total_timer_time")) if session is not None else None
    device = DeviceSummary()
    if session is not None:
        device = DeviceSummary(
            normalized_power=_num(_value(session, "normalized_power")),
            intensity_factor=_num(_value(session, "intensity_factor")),
            tss=_num(_value(session, "training_stress_score")),
            ftp_w=_num(_value(session, "threshold_power")) or ftp_zone,
            avg_power=_num(_value(session, "avg_power")),
        )
    elif ftp_zone:
        device = DeviceSummary(ftp_w=ftp_zone)
    return Ride(name, sport, float(start), end, timer if timer is not None else end - start,
                times, power, cadence, laps, device, weight)
