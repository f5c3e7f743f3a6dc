"""The Axiamo Excel export of the seed system: sheet Segments (timing) and sheet PowerData (power).

One rider per file. ``Segments`` has columns ``Number``, ``StartTime``, ``Duration``; each segment's
start and end become gate crossings, walking the course's gates in order from the start/finish.
``PowerData`` has a frame index column, ``WallTime``, ``InstantPower``, ``Cadence`` and
``Torque`` (the last two optional). Times are unix seconds, Excel date-times (UTC) or ISO text.
The whole file is read and checked before anything is returned: nothing is half-ingested.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.errors import InputFileError
from gateway.model import PowerSample
from gateway.readers.recording import Recording, crossings_from_boundaries, duration_of, plausible_time, power_of

SEGMENT_COLUMNS = ("Number", "StartTime", "Duration")
POWER_COLUMNS = ("WallTime", "InstantPower")


def _sheets(path: str) -> dict[str, Any]:
    import pandas as pd

    try:
        return pd.read_excel(path, sheet_name=None, engine="openpyxl")
    except FileNotFoundError:
        raise InputFileError(path, "no such file") from None
    except Exception as exc:  # openpyxl raises many kinds for a file that is not a workbook
        raise InputFileError(path, f"not an Excel workbook (.xlsx) ({type(exc).__name__}: {exc})",
                             hint="export the session from Axiamo as Excel") from None


def _require(path: str, sheets: dict[str, Any], sheet: str, columns: tuple[str, ...]) -> Any:
    if sheet not in sheets:
        raise InputFileError(path, f"no sheet '{sheet}' (found: {', '.join(sheets) or 'none'})",
                             hint="an Axiamo export has the sheets Segments and PowerData")
    frame = sheets[sheet]
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputFileError(path, f"sheet '{sheet}' has no column {', '.join(repr(m) for m in missing)} "
                             f"(found: {', '.join(frame.columns)})")
    return frame


def _cell(path: str, sheet: str, row: int, column: str, value: object, parse: Any, expected: str) -> float:
    try:
        return float(parse(value))
    except (ValueError, TypeError, OverflowError):
        # Row numbers as Excel shows them: the header is row 1.
        raise InputFileError(path, f"cannot read {value!r} as {expected}",
                             location=f"sheet {sheet}, row {row + 2}, column {column}") from None


def _optional(value: object) -> float | None:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if v != v else v


def read_axiamo(path: str | Path, rider: str, gates: list[str]) -> Recording:
    name = str(path)
    sheets = _sheets(name)
    segments = _require(name, sheets, "Segments", SEGMENT_COLUMNS)
    power = _require(name, sheets, "PowerData", POWER_COLUMNS)
    source = f"replay:{Path(name).name}"
    samples = []
    cadence = power["Cadence"] if "Cadence" in power.columns else None
    torque = power["Torque"] if "Torque" in power.columns else None
    for i, (wall, watts) in enumerate(zip(power["WallTime"], power["InstantPower"], strict=True)):
        t = _cell(name, "PowerData", i, "WallTime", wall, plausible_time, "a time")
        p = _cell(name, "PowerData", i, "InstantPower", watts, power_of, "a power in watts (0 to 10000)")
        samples.append(PowerSample(source, rider, t, p, _optional(cadence.iloc[i]) if cadence is not None else None,
                                   _optional(torque.iloc[i]) if torque is not None else None))
    boundaries: list[float] = []
    for i, (start, duration) in enumerate(zip(segments["StartTime"], segments["Duration"], strict=True)):
        t0 = _cell(name, "Segments", i, "StartTime", start, plausible_time, "a time")
        d = _cell(name, "Segments", i, "Duration", duration, duration_of, "a duration in seconds (under 24 h)")
        if not boundaries:
            boundaries.append(t0)
        elif abs(t0 - boundaries[-1]) > 1.0:
            # A gap between segments: the rider left the course; restart from the start/finish.
            raise InputFileError(name, f"segment starts at {t0:.1f} but the previous one ended at "
                                 f"{boundaries[-1]:.1f}", location=f"sheet Segments, row {i + 2}",
                                 hint="segments must follow each other; split the file per outing")
        boundaries.append(t0 + d)
    if not samples and not boundaries:
        raise InputFileError(name, "the sheets Segments and PowerData are both empty")
    crossings = crossings_from_boundaries(source, rider, gates, boundaries)
    samples.sort(key=lambda s: s.wall_time)
    return Recording(name, "axiamo", rider, samples, crossings)
