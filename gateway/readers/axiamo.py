"""The Axiamo Excel export of the seed system: sheet Segments (timing) and sheet PowerData (power).

One rider per file. ``Segments`` has columns ``Number`` ("lap.segment"), ``StartTime``,
``Duration``; the file's numbers are the truth: segment k of a lap runs from gate k-1 to gate k of
the course, and the laps keep their numbers (see ``segment_numbers`` and
``recording.crossings_from_segments``).
``PowerData`` has a frame index column, ``WallTime``, ``InstantPower``, ``Cadence`` and
``Torque`` (the last two optional). Times are unix seconds, Excel date-times (UTC) or ISO text.
The whole file is read and checked before anything is returned: nothing is half-ingested.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from operator import attrgetter
from pathlib import Path
from typing import Any

from gateway.errors import InputFileError
from gateway.model import GateCrossing, PowerSample
from gateway.readers.recording import (
    CONTIGUOUS_S,
    MAX_POWER_W,
    FileSegment,
    Recording,
    crossings_from_segments,
    duration_of,
    plausible_time,
    power_of,
)

SEGMENT_COLUMNS = ("Number", "StartTime", "Duration")
POWER_COLUMNS = ("WallTime", "InstantPower")


class _Sheet:
    """A sheet as calamine read it: the header row's names and the rows below it."""

    def __init__(self, rows: list[list[Any]]) -> None:
        header = rows[0] if rows else []
        self.columns = [str(c).strip() for c in header]
        self._rows = rows[1:]
        self._data: dict[str, list[Any]] | None = None

    def column(self, name: str) -> list[Any]:
        if self._data is None:
            width = len(self.columns)
            # A row with nothing in it is not a sample (pandas skipped them too). calamine's rows
            # are as wide as the sheet's used range; pad any shorter one all the same.
            body = [r if len(r) >= width else [*r, *[""] * (width - len(r))]
                    for r in self._rows if r.count("") != len(r)]
            columns = zip(*body, strict=False) if body else ([] for _ in self.columns)
            self._data = {c: list(values) for c, values in zip(self.columns, columns, strict=False)}
        return self._data[name]

    def matrix(self) -> Any | None:
        """Every cell below the header as one array of floats; None when any is not a plain number
        (text, a date, an empty cell), for the cell-by-cell reading to say which."""
        import numpy as np

        try:
            cells = np.array(self._rows, dtype=float)
        except (ValueError, TypeError):
            return None
        return cells if cells.ndim == 2 and cells.shape[1] >= len(self.columns) else None


def _sheets(path: str) -> dict[str, _Sheet]:
    from python_calamine import CalamineWorkbook

    try:
        # calamine (Rust) straight to Python values: pandas' per-cell conversion cost more than the
        # reading itself.
        book = CalamineWorkbook.from_path(path)
        return {name: _Sheet(book.get_sheet_by_name(name).to_python()) for name in book.sheet_names}
    except FileNotFoundError:
        raise InputFileError(path, "no such file") from None
    except Exception as exc:  # the reader raises many kinds for a file that is not a workbook
        raise InputFileError(path, f"not an Excel workbook (.xlsx) ({type(exc).__name__}: {exc})",
                             hint="export the session from Axiamo as Excel") from None


def _require(path: str, sheets: dict[str, _Sheet], sheet: str, columns: tuple[str, ...]) -> _Sheet:
    if sheet not in sheets:
        raise InputFileError(path, f"no sheet '{sheet}' (found: {', '.join(sheets) or 'none'})",
                             hint="an Axiamo export has the sheets Segments and PowerData")
    found = sheets[sheet]
    missing = [c for c in columns if c not in found.columns]
    if missing:
        raise InputFileError(path, f"sheet '{sheet}' has no column {', '.join(repr(m) for m in missing)} "
                             f"(found: {', '.join(found.columns)})")
    return found


def _cell(path: str, sheet: str, row: int, column: str, value: object, parse: Any, expected: str) -> float:
    try:
        return float(parse(value))
    except (ValueError, TypeError, OverflowError):
        # Row numbers as Excel shows them: the header is row 1.
        raise InputFileError(path, f"cannot read {value!r} as {expected}",
                             location=f"sheet {sheet}, row {row + 2}, column {column}") from None


def _optional(value: object) -> float | None:
    try:
        v = float(value) if isinstance(value, numbers.Real | str) else math.nan
    except (TypeError, ValueError):
        return None
    return None if v != v else v


def segment_numbers(path: str, values: Sequence[object]) -> list[tuple[int, int]]:
    """(lap, segment) of each row of the ``Number`` column, "lap.segment".

    Text is read exactly ("1.10" is lap 1, segment 10; "1,10" too). A number is what Excel made of
    the text: it drops trailing zeros, so 1.1 can be segment 1 or segment 10. The row before decides:
    within a lap, segment numbers rise, so 1.1 after 1.9 is segment 10 (and 1.2 after 1.19 is 20),
    while 1.1 after anything of lap 0 or at a lap's start is segment 1. Write the column as text to
    leave no doubt.
    """
    out: list[tuple[int, int]] = []
    for i, value in enumerate(values):
        where = f"sheet Segments, row {i + 2}, column Number"
        try:
            if isinstance(value, str):
                lap_text, _, seg_text = value.strip().replace(",", ".").partition(".")
                lap, seg = int(lap_text), int(seg_text)
            elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                lap_text, _, digits = f"{float(value):.6f}".rstrip("0").partition(".")
                lap, seg = int(lap_text), int(digits or "x")
                prev_lap, prev_seg = out[-1] if out else (lap, 0)
                for scale in (1, 10, 100):
                    if prev_lap != lap or seg * scale > prev_seg:
                        seg *= scale
                        break
            else:
                raise ValueError
        except ValueError:
            raise InputFileError(path, f"cannot read {value!r} as a segment number lap.segment (e.g. 1.3)",
                                 location=where) from None
        if lap < 0 or seg < 1:
            raise InputFileError(path, f"{value!r} is not a segment number: laps count from 0, segments from 1",
                                 location=where)
        if out and (lap, seg) <= out[-1]:
            raise InputFileError(path, f"segment {lap}.{seg} comes after {out[-1][0]}.{out[-1][1]}: the rows "
                                 "must follow the ride in order", location=where)
        out.append((lap, seg))
    return out


def _numeric_power(power: _Sheet, source: str, rider: str) -> list[PowerSample] | None:
    """The PowerData sheet in one pass when its columns are plain numbers, all plausible; None
    otherwise, and the row-by-row reading finds the first bad cell and says where it is."""
    import numpy as np

    cells = power.matrix()
    at = {name: i for i, name in enumerate(power.columns)}

    def numbers(column: str) -> Any:
        return cells[:, at[column]] if cells is not None else np.array(power.column(column), dtype=float)

    try:
        t, p = numbers("WallTime"), numbers("InstantPower")
    except (ValueError, TypeError):  # text, dates or empty cells: read cell by cell
        return None
    if not (np.isfinite(t).all() and np.isfinite(p).all() and ((t >= 631_152_000.0) & (t <= 4_102_444_800.0)).all()
            and ((p >= 0) & (p <= MAX_POWER_W)).all()):
        return None

    def optional(column: str) -> list[float | None]:
        if column not in at:
            return [None] * len(t)
        try:
            values = numbers(column)
        except (ValueError, TypeError):
            return [_optional(v) for v in power.column(column)]
        return [None if v != v else v for v in values.tolist()]

    make = tuple.__new__  # the named tuple's own constructor costs twice as much, once per sample
    return [make(PowerSample, (source, rider, a, b, c, d, None))
            for a, b, c, d in zip(t.tolist(), p.tolist(), optional("Cadence"), optional("Torque"), strict=True)]


def _cell_by_cell(name: str, power: _Sheet, source: str, rider: str) -> list[PowerSample]:
    cadence = power.column("Cadence") if "Cadence" in power.columns else None
    torque = power.column("Torque") if "Torque" in power.columns else None
    samples = []
    for i, (wall, watts) in enumerate(zip(power.column("WallTime"), power.column("InstantPower"), strict=True)):
        t = _cell(name, "PowerData", i, "WallTime", wall, plausible_time, "a time")
        p = _cell(name, "PowerData", i, "InstantPower", watts, power_of, "a power in watts (0 to 10000)")
        samples.append(PowerSample(source, rider, t, p, _optional(cadence[i]) if cadence is not None else None,
                                   _optional(torque[i]) if torque is not None else None))
    return samples


def read_axiamo(path: str | Path, rider: str, gates: Sequence[str]) -> Recording:
    """One rider's file; its crossings are laid on ``gates``, and ``build`` lays them on another course."""
    name = str(path)
    sheets = _sheets(name)
    segments = _require(name, sheets, "Segments", SEGMENT_COLUMNS)
    power = _require(name, sheets, "PowerData", POWER_COLUMNS)
    source = f"replay:{Path(name).name}"
    samples = _numeric_power(power, source, rider)
    if samples is None:  # some cell is no plain number: read cell by cell to say which
        samples = _cell_by_cell(name, power, source, rider)
    numbers = segment_numbers(name, segments.column("Number"))
    timed: list[FileSegment] = []
    for i, ((lap, seg), start, duration) in enumerate(zip(numbers, segments.column("StartTime"),
                                                          segments.column("Duration"), strict=True)):
        t0 = _cell(name, "Segments", i, "StartTime", start, plausible_time, "a time")
        d = _cell(name, "Segments", i, "Duration", duration, duration_of, "a duration in seconds (under 24 h)")
        if timed and t0 < timed[-1].end - CONTIGUOUS_S:
            raise InputFileError(name, f"segment {lap}.{seg} starts at {t0:.1f}, before {timed[-1].lap}."
                                 f"{timed[-1].segment} ended ({timed[-1].end:.1f})",
                                 location=f"sheet Segments, row {i + 2}", hint="segments cannot overlap")
        timed.append(FileSegment(lap, seg, t0, t0 + d))
    if not samples and not timed:
        raise InputFileError(name, "the sheets Segments and PowerData are both empty")
    samples.sort(key=attrgetter("wall_time"))
    shapes: dict[int, int] = {}
    for row in timed:
        shapes[row.lap] = max(shapes.get(row.lap, 0), row.segment)

    def build(course_gates: Sequence[str]) -> list[GateCrossing]:
        return crossings_from_segments(source, rider, course_gates, timed)

    return Recording(name, "axiamo", rider, samples, build(gates), per_lap=max(shapes.values(), default=None),
                     lap_shapes=shapes, build=build)
