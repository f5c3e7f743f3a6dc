"""`trackside-gateway export`: a session's segment results, one row per rider and segment, with z-scores."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from gateway.errors import GatewayError
from gateway.model import SegmentResult
from gateway.results.rows import annotate
from gateway.results.store import ResultsStore

# For people opening it in Excel: one column per quantity, units in the names, times as dates.
COLUMNS = ["session_id", "session", "rider_id", "rider", "number", "lap", "segment", "segment_name", "start",
           "end", "start_iso", "end_iso", "duration_s", "duration", "power_avg_w", "cadence_avg_rpm",
           "normalized_power_w", "np_window", "intensity_factor", "tss", "w_per_kg", "power_heard_pct", "samples",
           "time_z", "power_z", "time_modified_z", "power_modified_z", "power_partial", "flags", "ftp_w_used",
           "weight_kg_used", "note"]
TIMES = ("start", "end", "start_iso", "end_iso")
# In CSV, start and end as the box's local time in the form a spreadsheet reads as a date; *_iso
# with the offset (ISO 8601) for programs.
LOCAL = ("start", "end")
DIGITS = {"duration_s": 2, "power_avg_w": 1, "cadence_avg_rpm": 1, "normalized_power_w": 1, "intensity_factor": 3,
          "tss": 1, "w_per_kg": 2, "power_heard_pct": 1, "time_z": 3, "power_z": 3, "time_modified_z": 3,
          "power_modified_z": 3}


def _rounded(value: Any, digits: int) -> Any:
    return None if value is None else round(float(value), digits)


def clock(seconds: float | None) -> str:
    """A duration as m:ss.s (h:mm:ss.s from an hour), as a coach writes lap times."""
    if seconds is None:
        return ""
    minutes, rest = divmod(float(seconds), 60.0)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{rest:04.1f}" if hours else f"{minutes}:{rest:04.1f}"


def when(t: float | None) -> dt.datetime | None:
    """A unix time as the box's local date and time, with its offset."""
    return None if t is None else dt.datetime.fromtimestamp(float(t)).astimezone()


def table(targets: list[SegmentResult], pool: list[SegmentResult], min_coverage: float,
          store: ResultsStore | None = None) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and rows of an export: each target scored against ``pool`` (power from results
    heard for ``min_coverage`` of their seconds); with ``store``, the session's and the segments'
    names, the FTP and weight each session used (its record) and the coach's notes."""
    scored = annotate(targets, pool, min_coverage)
    records = {s: (store.record(s) or {}) if store is not None else {} for s in {r.session_id for r in targets}}
    notes: dict[tuple[str, str, str], str] = {}
    for session in records if store is not None else ():
        assert store is not None
        notes.update({(session, n["rider_id"], n["number"]): n["text"] for n in store.notes(session)})
    rows = []
    for r in scored:
        record = records[r["session_id"]]
        used: dict[str, Any] = next((p for p in record.get("riders") or () if str(p.get("id")) == r["rider_id"]), {})
        course = record.get("course") or {}
        names = [s.get("name") if isinstance(s, dict) else s for s in course.get("segments") or ()]
        row = {"session_id": r["session_id"], "session": record.get("name") or r["session_id"],
               "rider_id": r["rider_id"], "rider": r["name"], "number": str(r["number"]), "lap": r["lap"],
               "segment": r["segment"],
               "segment_name": names[r["segment"] - 1] if r["segment"] and r["segment"] <= len(names) else "",
               "start": when(r["start"]), "end": when(r["end"]), "start_iso": when(r["start"]),
               "end_iso": when(r["end"]), "duration_s": r["duration"],
               "duration": clock(r["duration"]), "power_avg_w": r["power_avg"], "cadence_avg_rpm": r["cadence_avg"],
               "normalized_power_w": r["normalized_power"], "np_window": r["np_window"],
               "intensity_factor": r["intensity_factor"], "tss": r["tss"], "w_per_kg": r["watts_per_kg"],
               "power_heard_pct": 100 * r["coverage"], "samples": r["samples"], "time_z": r["time_zscore"],
               "power_z": r["power_zscore"], "time_modified_z": r["time_modified_zscore"],
               "power_modified_z": r["power_modified_zscore"], "power_partial": r["power_partial"],
               "flags": list(r["flags"]), "ftp_w_used": used.get("ftp_w"), "weight_kg_used": used.get("weight_kg"),
               "note": notes.get((r["session_id"], r["rider_id"], r["number"]), "")}
        rows.append({k: _rounded(v, DIGITS[k]) if k in DIGITS else v for k, v in row.items()})
    return list(COLUMNS), rows


def export(store: ResultsStore, where: str, session: str | None, how: tuple[str, float], output: Path | None) -> int:
    """Write one session's results (the latest by default); ``session`` "list" lists them instead.
    ``how``: the format and ``metrics.min_coverage``."""
    fmt, min_coverage = how
    known = store.sessions()
    if session == "list":
        for s in known:
            print(f"{s['session']}\t{s['results']} results")
        return 0
    with_results = [s["session"] for s in known if s["results"]]
    if not session and not with_results:
        raise GatewayError("no segment results here yet", where=where)
    chosen = session or with_results[-1]
    if chosen not in {s["session"] for s in known}:
        raise GatewayError(f"no session {chosen!r} (try --session list)", where=where)
    results = store.results([chosen])
    columns, rows = table(results, results, min_coverage, store)
    target = output or (Path(f"{chosen}.xlsx") if fmt == "xlsx" else None)
    if target is None:
        write(sys.stdout, fmt, chosen, columns, rows)
        return 0
    with atomic_output(target, binary=fmt == "xlsx") as out:
        write(out, fmt, chosen, columns, rows)
    print(f"{len(rows)} results of {chosen} written to {target}", file=sys.stderr)
    return 0


def write(out: IO[Any], fmt: str, chosen: str, columns: list[str], rows: list[dict[str, Any]]) -> None:
    if fmt == "xlsx":
        _xlsx(out, columns, rows)
    elif fmt == "json":
        json.dump({"session": chosen, "results": [{c: (r[c].isoformat(timespec="milliseconds") if c in TIMES and r[c]
                                                       else r[c]) for c in columns} for r in rows]},
                  out, indent=2, ensure_ascii=False)
        out.write("\n")
    else:
        # A byte-order mark: Excel then reads UTF-8 ("Kälin", not "KÃ¤lin"). The lap.segment number as
        # a formula giving text: "1.10" is lap 1, segment 10, never the number 1.1.
        out.write("\ufeff")
        writer = csv.writer(out)
        writer.writerow(columns)
        for r in rows:
            writer.writerow([_csv_cell(c, r[c]) for c in columns])


def _csv_cell(column: str, value: Any) -> Any:
    if value is None:
        return ""
    if column in LOCAL:
        return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}"
    if column in TIMES:
        return value.isoformat(timespec="milliseconds")
    if column == "number":
        return f'="{value}"'
    if column == "flags":
        return ";".join(value)
    return value


def _xlsx_cell(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in LOCAL:
        return value.replace(tzinfo=None)  # a date cell: Excel keeps no offset
    if column in TIMES:
        return value.isoformat(timespec="milliseconds")
    return ";".join(value) if column == "flags" else value


def _xlsx(out: IO[Any], columns: list[str], rows: list[dict[str, Any]]) -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Results"
    ws.append(columns)
    for r in rows:
        # Excel keeps no offset: the box's local time, as the coach saw it on the course.
        ws.append([_xlsx_cell(c, r[c]) for c in columns])
    for i, column in enumerate(columns, start=1):
        letter = openpyxl.utils.get_column_letter(i)
        ws.column_dimensions[letter].width = max(10, min(40, len(column) + 2))
        if column in TIMES:
            ws.column_dimensions[letter].width = 30 if column not in LOCAL else 22
        if column in LOCAL:
            for cell in ws[letter][1:]:
                cell.number_format = "yyyy-mm-dd hh:mm:ss"
        elif column == "number":
            for cell in ws[letter][1:]:
                cell.number_format = "@"  # text
    ws.freeze_panes = "A2"
    # Built in memory, then written: a zip half-written to a full disk would complain at exit.
    buffer = io.BytesIO()
    wb.save(buffer)
    out.write(buffer.getvalue())


def _umask() -> int:
    mask = os.umask(0o022)  # read by setting it, then put back at once
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(target: Path, *, binary: bool = False) -> Iterator[IO[Any]]:
    """Write ``target`` whole or not at all: into a temporary file beside it, renamed at the end.

    A full disk, a missing directory or a directory given as the file is one GatewayError, and no
    truncated file is left behind. A device or pipe (``/dev/stdout``) is written directly.
    """
    mode = "wb" if binary else "w"
    try:
        if target.exists() and not target.is_file():
            if target.is_dir():
                raise GatewayError("is a directory: give a file name", where=str(target))
            with (target.open("wb") if binary else target.open("w", newline="", encoding="utf-8")) as direct:
                yield direct
            return
        if not target.parent.is_dir():
            raise GatewayError("no such directory", where=str(target.parent), hint="create it first")
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            # mkstemp makes 0600; an export or a report is the coach's to share: the umask decides.
            os.fchmod(fd, 0o666 & ~_umask())
            with os.fdopen(fd, mode, -1, *(("utf-8", None, "") if not binary else ())) as out:
                yield out
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise GatewayError(f"cannot write the export: {exc.strerror or exc}", where=str(target),
                           hint="nothing was written; free some space or choose another place") from None
