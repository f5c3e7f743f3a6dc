"""FIT activity files (Garmin, Wahoo, ...) through fitdecode: power records, laps, the device's summary."""

from __future__ import annotations

import datetime as dt
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gateway.errors import InputFileError

CYCLING_SPORTS = {"cycling", "e_biking"}
BIKE_POWER = 11  # the ANT+ device type of a power meter
MAX_SPAN_S = 7 * 86400.0
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
    note: str | None = None  # which session of a multi-session file this is
    # ANT+ device numbers of the power meters the head unit had paired (its device_info messages):
    # the evidence that ties a file to a rider's meter.
    power_meters: tuple[int, ...] = ()

    @property
    def ftp_w(self) -> float | None:
        return self.device.ftp_w


def _value(msg: Any, name: str) -> object:
    return msg.get_value(name, fallback=None)


def _stamp(value: object) -> float | None:
    """Unix seconds of a FIT date_time field (fitdecode gives datetimes)."""
    return value.timestamp() if isinstance(value, dt.datetime) else None


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class _RawLap:
    start: float
    end: float
    timer: float | None


def _lap(frame: object) -> _RawLap | None:
    start, stamp = _value(frame, "start_time"), _value(frame, "timestamp")
    if start is None or stamp is None:
        return None
    t0 = _stamp(start)
    if t0 is None:
        return None
    # The lap message can be written long after the lap ended (saved later): the elapsed time
    # is the lap's real extent, the timestamp only a fallback.
    elapsed = _num(_value(frame, "total_elapsed_time"))
    end = t0 + elapsed if elapsed else (_stamp(stamp) or t0)
    return _RawLap(t0, end, _num(_value(frame, "total_timer_time")))


def _timer(raw: _RawLap, times: NDArray[np.float64]) -> float:
    """The lap's timer time; a head unit that writes 0 there (Sigma ROX) gets the elapsed time, or
    the span of its records, never a 0-s lap."""
    if raw.timer:
        return raw.timer
    if raw.end > raw.start:
        return raw.end - raw.start
    inside = times[(times >= raw.start) & (times <= raw.end)]
    return float(inside[-1] - inside[0] + 1.0) if inside.size else 0.0


@dataclass(frozen=True)
class _Session:
    sport: str | None
    start: float | None
    end: float | None
    frame: object


def _session(frame: object) -> _Session:
    sport = _value(frame, "sport")
    start = _value(frame, "start_time")
    t0 = _stamp(start)
    elapsed = _num(_value(frame, "total_elapsed_time"))
    stamp = _value(frame, "timestamp")
    end = t0 + elapsed if t0 is not None and elapsed else _stamp(stamp)
    return _Session(str(sport) if sport is not None else None, t0, end, frame)


@dataclass
class _Frames:
    """What a FIT file's messages hold, as read: records, laps, sessions, the rider's weight and FTP."""

    rows: list[tuple[float, float, float]] = field(default_factory=list)
    laps: list[_RawLap] = field(default_factory=list)
    sessions: list[_Session] = field(default_factory=list)
    weight: float | None = None
    ftp_zone: float | None = None
    power_meters: set[int] = field(default_factory=set)

    def take(self, frame: Any) -> None:
        if frame.name == "record":
            ts = _stamp(_value(frame, "timestamp"))
            if ts is not None:
                watts, rpm = _num(_value(frame, "power")), _num(_value(frame, "cadence"))
                self.rows.append((ts, np.nan if watts is None else watts, np.nan if rpm is None else rpm))
        elif frame.name == "lap":
            lap = _lap(frame)
            if lap is not None:
                self.laps.append(lap)
        elif frame.name == "session":
            self.sessions.append(_session(frame))
        elif frame.name == "user_profile":
            self.weight = _num(_value(frame, "weight")) or self.weight
        elif frame.name == "zones_target":
            self.ftp_zone = _num(_value(frame, "functional_threshold_power")) or self.ftp_zone
        elif frame.name == "device_info":
            number = _num(_value(frame, "ant_device_number"))
            kind = _value(frame, "antplus_device_type")
            if number and (kind == "bike_power" or _value(frame, "device_type") == BIKE_POWER):
                self.power_meters.add(int(number))


def _read_frames(name: str) -> _Frames:
    """Every message of the file, or InputFileError saying what is wrong with it."""
    import fitdecode

    frames = _Frames()
    try:
        # A checksum that does not match is a corrupt file: an error, not a library warning.
        with warnings.catch_warnings(record=True) as caught, \
                fitdecode.FitReader(name, check_crc=fitdecode.CrcCheck.RAISE) as reader:
            warnings.simplefilter("always")
            for frame in reader:
                if isinstance(frame, fitdecode.FitDataMessage):
                    frames.take(frame)
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
    return frames


def read_fit(path: str | Path, session: int | None = None) -> Ride:
    """Read a FIT activity; raise InputFileError naming the file and the problem.

    A file with several sessions (a triathlon) yields its cycling session; with several cycling
    sessions, ``session`` (1-based) picks one and the default is the first (``Ride.note`` says so).
    """
    name = str(path)
    frames = _read_frames(name)
    rows, raw_laps, ftp_zone = frames.rows, frames.laps, frames.ftp_zone
    chosen, note = _choose(name, frames.sessions, session)
    if chosen is not None and chosen.start is not None and chosen.end is not None and len(frames.sessions) > 1:
        # Only this session's records and laps: a triathlon's swim and run are not part of the ride.
        lo, hi = chosen.start, chosen.end
        rows = [r for r in rows if lo <= r[0] <= hi]
        raw_laps = [lap for lap in raw_laps if lo <= lap.start < hi]
    if not rows:
        raise InputFileError(name, "the file has no records (no samples over time)")
    data = np.array(sorted(rows), dtype=np.float64)
    times: NDArray[np.float64] = data[:, 0]
    power: NDArray[np.float64] = data[:, 1]
    cadence: NDArray[np.float64] = data[:, 2]
    if np.isnan(power).all():
        raise InputFileError(name, "the file has no power data", hint="was a power meter paired?")
    if times[-1] - times[0] > MAX_SPAN_S:
        raise InputFileError(name, f"the records span {(times[-1] - times[0]) / 86400:.0f} days: a clock jumped "
                             "in the file", hint="a ride spans hours, not days")
    laps = [Lap(lap.start, lap.end, _timer(lap, times)) for lap in raw_laps]
    frame = chosen.frame if chosen is not None else None
    start = chosen.start if chosen is not None and chosen.start is not None else float(times[0])
    end = float(times[-1]) + 1.0
    timer = _num(_value(frame, "total_timer_time")) if frame is not None else None
    device = DeviceSummary(ftp_w=ftp_zone)
    if frame is not None:
        device = DeviceSummary(
            normalized_power=_num(_value(frame, "normalized_power")),
            intensity_factor=_num(_value(frame, "intensity_factor")),
            tss=_num(_value(frame, "training_stress_score")),
            ftp_w=_num(_value(frame, "threshold_power")) or ftp_zone,
            avg_power=_num(_value(frame, "avg_power")),
        )
    return Ride(name, chosen.sport if chosen is not None else None, float(start), end,
                timer if timer else end - start, times, power, cadence, laps, device, frames.weight, note,
                tuple(sorted(frames.power_meters)))


def _choose(name: str, sessions: list[_Session], wanted: int | None) -> tuple[_Session | None, str | None]:
    """The cycling session to read, and a note when the choice was not obvious."""
    if not sessions:
        if wanted not in (None, 1):
            raise InputFileError(name, f"the file has no session message, so no session {wanted}")
        return None, None
    cycling = [s for s in sessions if s.sport is None or s.sport in CYCLING_SPORTS]
    if not cycling:
        sports = ", ".join(sorted({s.sport or "unknown" for s in sessions}))
        raise InputFileError(name, f"this is a {sports} activity, not a ride",
                             hint="power metrics here are for cycling files")
    if wanted is not None and not 1 <= wanted <= len(cycling):
        raise InputFileError(name, f"the file has {len(cycling)} cycling session(s), not a session {wanted}",
                             hint=f"use --session 1 to {len(cycling)}")
    chosen = cycling[(wanted or 1) - 1]
    note = None
    if len(sessions) > 1:
        others = ", ".join(s.sport or "unknown" for s in sessions)
        note = (f"{len(sessions)} sessions in the file ({others}): cycling session {(wanted or 1)} of "
                f"{len(cycling)} used" + (" (--session N picks another)" if len(cycling) > 1 else ""))
    return chosen, note
