"""`trackside-gateway export`: a session's segment results, one row per rider and segment, with z-scores."""

from __future__ import annotations

import contextlib
import csv
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

# The chart views' data keys first, then every segment field.
LEAD = ["session_id", "rider_id", "name", "number", "lap", "segment", "time_absolute", "power_absolute",
        "watts_per_kilo", "time_zscore", "power_zscore", "time_modified_zscore", "power_modified_zscore"]


def table(targets: list[SegmentResult], pool: list[SegmentResult], min_coverage: float,
          store: ResultsStore | None = None) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and rows of an export: each target scored against ``pool`` (power from results
    heard for ``min_coverage`` of their seconds); with ``store``, the FTP and weight each session
    used (its record) and the coach's notes."""
    rows = annotate(targets, pool, min_coverage)
    used: dict[tuple[str, str], tuple[Any, Any]] = {}
    notes: dict[tuple[str, str, str], str] = {}
    for session in {r.session_id for r in targets} if store is not None else ():
        assert store is not None
        record = store.record(session) or {}
        for r in record.get("riders") or ():
            used[(session, str(r.get("id")))] = (r.get("ftp_w"), r.get("weight_kg"))
        notes.update({(session, n["rider_id"], n["number"]): n["text"] for n in store.notes(session)})
    for row in rows:
        row["flags"] = ",".join(row["flags"])
        if store is not None:
            row["ftp_w_used"], row["weight_kg_used"] = used.get((row["session_id"], row["rider_id"]), (None, None))
            row["note"] = notes.get((row["session_id"], row["rider_id"], row["number"]), "")
    return (LEAD + [k for k in rows[0] if k not in LEAD] if rows else LEAD), rows


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
        import openpyxl

        wb = openpyxl.Workbook()
        ws = wb.active
        ws.title = "Results"
        ws.append(columns)
        for row in rows:
            ws.append([row.get(c) for c in columns])
        # Built in memory, then written: a zip half-written to a full disk would complain at exit.
        buffer = io.BytesIO()
        wb.save(buffer)
        out.write(buffer.getvalue())
    elif fmt == "json":
        json.dump({"session": chosen, "results": [{c: r.get(c) for c in columns} for r in rows]}, out, indent=2)
        out.write("\n")
    else:
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


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
