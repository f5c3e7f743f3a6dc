"""The MyFreelap CSV export: transponder lap times and splits, turned into gate crossings.

Format (see tests/data/README.md): semicolon-separated, UTF-8 with BOM, cp1252 or latin-1; a
preamble with the session label and a ``Date`` row; a header row beginning ``N;ID;TEMPS``; then
per row the row number, the transponder (e.g. ``BD-2525``), the lap time (``mm:ss.cc`` or
``ss.cc``, optional ``+``, optional `` (n)``, comma or dot as decimal mark), an unused column and
the split columns (``L1``, ``L2``, ...: the times between the course's gates). A row with a time
but no splits, followed by split rows, starts a new block (its time is the start marker).

The export has no time of day, so crossings are laid out from the session date: every
transponder's block 1 starts at 10:00 UTC of that day, and each further block 5 minutes after the
longest previous block ended. Within a block, every time is the timing system's own.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gateway.errors import InputFileError
from gateway.model import GateCrossing
from gateway.readers.recording import CONTIGUOUS_S, Recording, duration_of

BLOCK_GAP_S = 300.0
DAY_START_S = 10 * 3600.0
ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")
_DATE = re.compile(r"(\d{1,2})[./](\d{1,2})[./](\d{4})|(\d{4})-(\d{2})-(\d{2})")


@dataclass
class Lap:
    time: float
    splits: list[float]


@dataclass
class Block:
    marker: float | None = None
    laps: list[Lap] = field(default_factory=list)


def _decode(path: str) -> str:
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputFileError(path, "no such file") from None
    except OSError as exc:
        raise InputFileError(path, f"cannot read the file: {exc.strerror or exc}") from None
    for encoding in ENCODINGS:
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise InputFileError(path, "the text encoding is not UTF-8, cp1252 or latin-1")  # pragma: no cover


def _session_date(path: str, lines: list[str]) -> dt.date | None:
    for number, line in enumerate(lines, start=1):
        cells = [c.strip() for c in line.split(";")]
        if cells and cells[0].lower() in ("date", "datum"):
            match = _DATE.search(";".join(cells[1:]))
            if match:
                d, m, y, iy, im, id_ = match.groups()
                try:
                    return dt.date(int(iy), int(im), int(id_)) if iy else dt.date(int(y), int(m), int(d))
                except ValueError as exc:
                    raise InputFileError(path, f"the session date {match.group(0)!r} is not a date ({exc})",
                                         location=f"line {number}") from None
    return None


def parse_freelap(path: str | Path) -> tuple[dt.date | None, dict[str, list[Block]], str]:
    """(session date, blocks per transponder, session label) of a MyFreelap CSV export."""
    name = str(path)
    lines = _decode(name).splitlines()
    header = next((i for i, line in enumerate(lines) if line.replace(" ", "").upper().startswith("N;ID;TEMPS")), None)
    if header is None:
        raise InputFileError(name, "no header row 'N;ID;TEMPS' found: not a MyFreelap CSV export")
    label = next((line.split(";")[0].strip() for line in lines[:header] if line.strip(" ;")), "")
    columns = [c.strip() for c in lines[header].split(";")]
    blocks: dict[str, list[Block]] = defaultdict(list)
    for number, line in enumerate(lines[header + 1:], start=header + 2):
        cells = [c.strip() for c in line.split(";")]
        if not any(cells):
            continue
        if len(cells) < 3 or not cells[1]:
            raise InputFileError(name, f"expected N;ID;TEMPS;...; got {line!r}", location=f"line {number}")
        transponder = cells[1]
        try:
            lap_time = duration_of(cells[2])
        except ValueError:
            raise InputFileError(name, f"cannot read {cells[2]!r} as a lap time (mm:ss.cc or ss.cc, under 24 h)",
                                 location=f"line {number}, column {columns[2] if len(columns) > 2 else 'TEMPS'}"
                                 ) from None
        splits = []
        for k, cell in enumerate(cells[4:], start=4):
            if cell:
                try:
                    splits.append(duration_of(cell))
                except ValueError:
                    column = columns[k] if k < len(columns) else f"column {k + 1}"
                    raise InputFileError(name, f"cannot read {cell!r} as a split time (under 24 h)",
                                         location=f"line {number}, column {column}") from None
        own = blocks[transponder]
        if not splits:
            own.append(Block(marker=lap_time))  # a time without splits starts a block
        else:
            if not own:
                own.append(Block())
            own[-1].laps.append(Lap(lap_time, splits))
    if not blocks:
        raise InputFileError(name, "the export has a header but no laps")
    return _session_date(name, lines[:header]), dict(blocks), label


def read_freelap(path: str | Path, gates: Sequence[str]) -> Recording:
    """The export's crossings laid on ``gates``; ``build`` lays them on another course.

    A lap has as many segments as splits, plus one when the lap time is longer than the splits
    (the last stretch back to the start/finish has no split of its own).
    """
    name = str(path)
    date, blocks, _ = parse_freelap(name)
    day = dt.datetime.combine(date or dt.date(1970, 1, 2), dt.time(), dt.UTC).timestamp() + DAY_START_S
    source = f"replay:{Path(name).name}"
    laps = [lap for own in blocks.values() for block in own for lap in block.laps]
    per_lap = max((len(lap.splits) + (1 if lap.time - sum(lap.splits) > CONTIGUOUS_S else 0) for lap in laps),
                  default=None)

    def build(course: Sequence[str]) -> list[GateCrossing]:
        crossings: list[GateCrossing] = []
        n_blocks = max(len(b) for b in blocks.values())
        start = day
        for k in range(n_blocks):
            longest = 0.0
            for transponder, own in blocks.items():
                if k >= len(own):
                    continue
                t = start
                crossings.append(GateCrossing(source, transponder, course[0], t))
                for lap in own[k].laps:
                    lap_start = t
                    if len(lap.splits) >= len(course) - 1 and len(course) > 1:
                        # Splits are the times between successive gates; the lap closes at start/finish.
                        for i, split in enumerate(lap.splits[: len(course) - 1], start=1):
                            t += split
                            crossings.append(GateCrossing(source, transponder, course[i], t))
                    t = lap_start + lap.time
                    crossings.append(GateCrossing(source, transponder, course[0], t))
                longest = max(longest, t - start)
            start += longest + BLOCK_GAP_S
        crossings.sort(key=lambda c: c.wall_time)
        return crossings

    return Recording(name, "freelap", None, [], build(gates), per_lap=per_lap,
                     lap_shapes={1: per_lap} if per_lap else {}, build=build)
