"""Builders for the replay tests: Axiamo workbooks and MyFreelap CSV exports made from data."""

from __future__ import annotations

from pathlib import Path

import openpyxl

WORKBOOK = Path(__file__).resolve().parent / "data" / "freelap" / "swiss-cycling-mtb-2026-03-02-export.xlsx"


def axiamo(path: Path, segments: list[tuple[object, object, object]], power: list[tuple[object, ...]],
           sheets: tuple[str, str] = ("Segments", "PowerData"),
           power_header: tuple[str, ...] = ("Frame", "WallTime", "InstantPower", "Cadence", "Torque")) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = sheets[0]
    ws.append(["Number", "StartTime", "Duration"])
    for row in segments:
        ws.append(list(row))
    pd = wb.create_sheet(sheets[1])
    pd.append(list(power_header))
    for i, row in enumerate(power):
        pd.append([i, *row])
    wb.save(path)
    return path


def real_freelap_laps() -> dict[str, list[list[tuple[float, float, float]]]]:
    """transponder -> blocks -> (lap, climb, descent) from the real Swiss Cycling workbook."""
    wb = openpyxl.load_workbook(WORKBOOK, read_only=True, data_only=True)
    out: dict[str, list[list[tuple[float, float, float]]]] = {}
    for sheet in wb.sheetnames[1:]:
        blocks: list[list[tuple[float, float, float]]] = []
        for row in wb[sheet].iter_rows(values_only=True):
            if isinstance(row[0], str) and row[0].startswith("Block"):
                blocks.append([])
            elif isinstance(row[0], int):
                blocks[-1].append((float(row[1]), float(row[2]), float(row[3])))
        out[sheet] = blocks
    wb.close()
    return out


def _fmt(seconds: float, style: int) -> str:
    if style == 0:
        return f"{seconds:.2f}".replace(".", ",")
    if style == 1:
        return f"{int(seconds // 60)}:{seconds % 60:05.2f}".replace(".", ",")
    return f"+{seconds:.2f} (2)"


def freelap_csv(path: Path, laps: dict[str, list[list[tuple[float, float, float]]]], encoding: str = "utf-8-sig",
                marker: float = 4.67) -> Path:
    """A MyFreelap export: preamble, header N;ID;TEMPS;;L1;L2, a marker row starting each block."""
    lines = ["Entraînement - 02/03/2026 n3", "Date;02/03/2026", "", "N;ID;TEMPS;;L1;L2"]
    n = 1
    for transponder, blocks in laps.items():
        for block in blocks:
            lines.append(f"{n};{transponder};{_fmt(marker, 0)};;;")
            n += 1
            for k, (lap, climb, descent) in enumerate(block):
                lines.append(f"{n};{transponder};{_fmt(lap, k % 3)};;{_fmt(climb, 0)};{_fmt(descent, 0)}")
                n += 1
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    return path


EXPORT_T0 = 1_781_427_600.0  # a June 2026 morning


def axiamo_export(path: Path, numbers: list[object], durations: list[float] | None = None,
                  gaps: dict[int, float] | None = None) -> Path:
    """An Axiamo export: one row per number, segments back to back (``gaps`` adds seconds before a row)."""
    durations = durations or [60.0 + 7 * (i % 5) for i in range(len(numbers))]
    rows, t = [], EXPORT_T0
    for i, (number, d) in enumerate(zip(numbers, durations, strict=True)):
        t += (gaps or {}).get(i, 0.0)
        rows.append((number, t, d))
        t += d
    power = [(EXPORT_T0 + k, 200 + (k % 40), 85, None) for k in range(int(t - EXPORT_T0) + 5)]
    return axiamo(path, rows, power)
