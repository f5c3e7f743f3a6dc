"""`trackside-gateway export`: a session's segment results, one row per rider and segment, with z-scores."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

from gateway.engine.normalize import annotate
from gateway.errors import GatewayError
from gateway.results import session_results, sessions
from gateway.spool import Spool

# The chart views' data keys first, then every segment field.
LEAD = ["session_id", "rider_id", "name", "number", "lap", "segment", "time_absolute", "power_absolute",
        "watts_per_kilo", "time_zscore", "power_zscore", "time_modified_zscore", "power_modified_zscore"]


def rows_of(spool: Spool, session: str) -> list[dict[str, Any]]:
    results = session_results(spool, session)
    rows = annotate(results, results)
    for row in rows:
        row["flags"] = ",".join(row["flags"])
        row.pop("simulation_id", None)
    return rows


def export(state_dir: Path, session: str | None, fmt: str, output: Path | None) -> int:
    path = state_dir / "spool.sqlite"
    if not path.exists():
        raise GatewayError("no spool here", where=str(state_dir), hint="give the gateway's state directory")
    spool = Spool(path, "export").open()
    try:
        known = sessions(spool)
        if session == "list":
            for s in known:
                print(f"{s['session']}\t{s['results']} results")
            return 0
        if not known:
            raise GatewayError("no segment results in this spool yet", where=str(path))
        chosen = session or known[-1]["session"]
        if chosen not in {s["session"] for s in known}:
            raise GatewayError(f"no session {chosen!r} (try --session list)", where=str(path))
        rows = rows_of(spool, chosen)
    finally:
        spool.close()
    columns = LEAD + [k for k in rows[0] if k not in LEAD] if rows else LEAD
    if fmt == "xlsx":
        import openpyxl

        target = output or Path(f"{chosen}.xlsx")
        wb = openpyxl.Workbook()
        ws = wb.active
        ws.title = "Results"
        ws.append(columns)
        for row in rows:
            ws.append([row.get(c) for c in columns])
        wb.save(target)
        print(f"{len(rows)} results of {chosen} written to {target}", file=sys.stderr)
        return 0
    out = output.open("w", newline="", encoding="utf-8") if output else sys.stdout
    try:
        if fmt == "json":
            json.dump({"session": chosen, "results": [{c: r.get(c) for c in columns} for r in rows]}, out, indent=2)
            out.write("\n")
        else:
            writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    finally:
        if output:
            out.close()
    return 0
