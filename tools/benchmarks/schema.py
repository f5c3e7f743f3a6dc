"""The analysts' queries of docs/hub-schema.md on a season-sized hub database: each one's plan
(EXPLAIN ANALYZE) and time, with the tables it reads through from end to end, if any.

Sizes: BENCH_SCHEMA_SESSIONS (1000 sessions of 30 riders over the past year, 5 laps of 4 segments:
600 000 segment results) and BENCH_SCHEMA_POWER_ROWS (5 000 000 samples spread over them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

SESSIONS = int(os.environ.get("BENCH_SCHEMA_SESSIONS", "1000"))
POWER_ROWS = int(os.environ.get("BENCH_SCHEMA_POWER_ROWS", "5000000"))
RIDERS = 30
DOC = Path(__file__).resolve().parents[2] / "docs" / "hub-schema.md"
BIG = {"power", "segments"}  # a sequential scan of either grows with the season
# A rider's whole-season history on a segment is a thirtieth of the season's results by design:
# PostgreSQL may rightly read the (small) segments table through; its target is time.
SEASON = {"history": 1000.0}


def _fill(conn: Any) -> None:
    """Sessions every ~9 h back from now (the docs' session one of them, in June 2026), rider 0 named
    as in the docs; segment results and power samples made by the server (generate_series)."""
    now = time.time()
    conn.execute(
        "INSERT INTO sessions (session_id, gateway_id, kind, name, course_id, started, record) "
        "SELECT CASE WHEN i = 0 THEN 'box-1-20260614-090000-a1b2c3' ELSE 'box-' || (i %% 3) || '-s' || i END, "
        "'box-' || (i %% 3), 'live', 'Session ' || i, CASE WHEN i %% 4 = 3 THEN 'other' ELSE 'demo-loop' END, "
        "CASE WHEN i = 0 THEN 1781427600 ELSE %(now)s - i * 31000.0 END, jsonb_build_object("
        "'course', jsonb_build_object('id', 'demo-loop', 'segments', jsonb_build_array("
        "jsonb_build_object('name', 'First climb', 'terrain', 'climb'), jsonb_build_object('name', 'Descent', "
        "'terrain', 'descent'), jsonb_build_object('name', 'Second climb', 'terrain', 'climb'), "
        "jsonb_build_object('name', 'Technical', 'terrain', 'technical'))), 'riders', (SELECT jsonb_agg("
        "jsonb_build_object('id', 'r' || lpad(k::text, 2, '0'), "
        "'name', CASE WHEN k = 0 THEN 'Tomáš Dvořák' ELSE 'Rider ' || k END, "
        "'ftp_w', 250 + k, 'weight_kg', 60 + k %% 15)) FROM generate_series(0, %(riders)s - 1) k)) "
        "FROM generate_series(0, %(sessions)s - 1) i", {"now": now, "riders": RIDERS, "sessions": SESSIONS})
    conn.execute(
        "INSERT INTO segments (gateway_id, seq, session_id, rider_id, name, number, lap, segment, start, \"end\", "
        "duration, power_avg, normalized_power, watts_per_kg, samples, coverage) "
        "SELECT s.gateway_id, row_number() OVER (), s.session_id, 'r' || lpad(k::text, 2, '0'), "
        "CASE WHEN k = 0 THEN 'Tomáš Dvořák' ELSE 'Rider ' || k END, lap || '.' || seg, lap, seg, "
        "s.started + (lap - 1) * 900 + (seg - 1) * 225 + k, s.started + (lap - 1) * 900 + seg * 225 + k, 225, "
        "200 + k, 210 + k, 3.5, 900, 0.95 FROM sessions s, generate_series(0, %(riders)s - 1) k, "
        "generate_series(1, 5) lap, generate_series(1, 4) seg", {"riders": RIDERS})
    per = max(1, POWER_ROWS // (SESSIONS * RIDERS))
    conn.execute(
        "INSERT INTO power (gateway_id, seq, session_id, rider_id, wall_time, power, cadence, source) "
        "SELECT s.gateway_id, row_number() OVER (), s.session_id, 'r' || lpad(k::text, 2, '0'), s.started + j * 0.25, "
        "150 + (j * 7 + k) %% 250, 85, 'ant:1' FROM sessions s, generate_series(0, %(riders)s - 1) k, "
        "generate_series(0, %(per)s - 1) j", {"riders": RIDERS, "per": per})
    conn.commit()
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE")
    conn.autocommit = False


def _scans(plan: dict[str, Any]) -> list[str]:
    out = []
    if "Relation Name" in plan:
        out.append(f"{plan['Node Type']} on {plan['Relation Name']}")
    for child in plan.get("Plans", ()):
        out += _scans(child)
    return out


def _season(conn: Any, counts: dict[str, int]) -> list[tuple[str, dict[str, object]]]:
    """What a season costs on disk (#35): bytes a row (table, TOAST and indexes), a rider-hour at
    4 Hz (14 400 samples and about 16 segment results), and a season of 30 riders x 200 sessions of
    2 h projected from them."""
    size = {t: int(conn.execute("SELECT pg_total_relation_size(%s)", (t,)).fetchone()[0]) for t in counts}
    per_row = {t: size[t] / counts[t] for t in counts}
    rider_hour = 14_400 * per_row["power"] + 16 * per_row["segments"]
    season_hours = 30 * 200 * 2
    return [("schema.power_bytes_per_row", {"value": round(per_row["power"], 1), "unit": "B"}),
            ("schema.segment_bytes_per_row", {"value": round(per_row["segments"], 1), "unit": "B"}),
            ("schema.bytes_per_rider_hour", {"value": round(rider_hour / 2**20, 2), "unit": "MiB",
                                             "rows": 14_400 + 16}),
            ("schema.season_30_riders_200_sessions_2h", {"value": round(season_hours * rider_hour / 2**30, 1),
                                                         "unit": "GiB", "rows": season_hours * (14_400 + 16)})]


def schema_queries() -> list[tuple[str, dict[str, object]]]:
    import psycopg
    from postgres import Postgres

    from gateway.hub.schema import migrate

    base = Path(tempfile.mkdtemp(prefix="trackside-bench-schema-"))
    base.chmod(0o755)
    pg = Postgres(base / "pg")
    pg.start()
    rows: list[tuple[str, dict[str, object]]] = []
    try:
        dsn = pg.create_database("season")
        with psycopg.connect(dsn, autocommit=False) as conn:
            migrate(conn)
            conn.commit()
            t0 = time.perf_counter()
            _fill(conn)
            counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("segments", "power")}
            print(f"# filled in {time.perf_counter() - t0:.0f} s: {json.dumps(counts)}")
            rows += _season(conn, counts)
            names = ["history", "lap_np", "week", "squad_terrain", "rider_power"]
            for name, query in zip(names, re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.S), strict=True):
                conn.execute(query).fetchall()  # warm, as an analyst's second run
                t1 = time.perf_counter()
                answer = conn.execute(query).fetchall()
                ms = (time.perf_counter() - t1) * 1000
                plan = conn.execute("EXPLAIN (FORMAT JSON) " + query).fetchone()[0][0]["Plan"]
                scans = _scans(plan)
                through = sorted({s.split(" on ")[1] for s in scans if s.startswith("Seq Scan") and
                                  s.split(" on ")[1] in BIG})
                print(f"# {name}: {len(answer)} rows; " + "; ".join(sorted(set(scans))))
                limit = SEASON.get(name)
                rows.append((f"schema.{name}", {
                    "value": round(ms, 1), "unit": "ms",
                    "target": f"< {limit:.0f} ms" if limit else "no seq scan of power/segments",
                    "ok": ms < limit if limit else not through, "rows": len(answer), "scans": sorted(set(scans)),
                    **counts}))
        rows += _page(dsn)
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)  # 2.8 GB of PostgreSQL's files
    return rows


def _timed(call: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    answer = call()
    return (time.perf_counter() - t0) * 1000, answer


def _page(dsn: str) -> list[tuple[str, dict[str, object]]]:
    """What the hub's page asks on that season: its session list (at every page load and every 30 s
    of each open page) and one session's results. The list counts the whole season at its first
    call (and every 5 minutes), then only the sessions whose results changed: timed at its first
    call, then after a new result in one session."""
    import psycopg

    from gateway.hub.results import PgResults

    store = PgResults(lambda: psycopg.connect(dsn))
    out: list[tuple[str, dict[str, object]]] = []
    try:
        ms, answer = _timed(store.sessions)
        out.append(("schema.page_sessions_first_call", {"value": round(ms, 1), "unit": "ms", "rows": len(answer)}))
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO segments (gateway_id, seq, session_id, rider_id, name, number, lap, segment, "
                         'start, "end", duration, samples, coverage) SELECT gateway_id, 1000000000, session_id, '
                         "rider_id, name, '9.1', 9, 1, start + 1e6, \"end\" + 1e6, duration, samples, coverage "
                         "FROM segments WHERE session_id = 'box-1-s1' LIMIT 1")
        ms, answer = _timed(store.sessions)
        out.append(("schema.page_sessions", {"value": round(ms, 1), "unit": "ms", "target": "< 100 ms",
                                             "ok": ms < 100, "rows": len(answer), "after": "a new result"}))
        store.results(["box-1-s1"])  # warm
        ms, answer = _timed(lambda: store.results(["box-1-s1"]))
        out.append(("schema.page_results", {"value": round(ms, 1), "unit": "ms", "target": "< 100 ms", "ok": ms < 100,
                                            "rows": len(answer)}))
    finally:
        store.close()
    return out


BENCHMARKS = [("schema.queries", schema_queries)]
