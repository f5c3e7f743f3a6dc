"""The hub's tables for analysts (#33): every table and column described in the database, the view
``results`` with dates and names, and the queries of docs/hub-schema.md running on a real PostgreSQL
server with the hub's schema."""

from __future__ import annotations

import json
import re
import time

import psycopg
from harness import ROOT

from gateway.hub.schema import migrate
from gateway.hub.schema_docs import COMMENTS

SESSION = "box-1-20260614-090000-a1b2c3"
DOC = ROOT / "docs" / "hub-schema.md"


def _fill(conn: psycopg.Connection) -> None:
    """A session of one rider on the demo loop: three laps of two segments, a sample a second; once
    in the week of 8 June 2026 and once yesterday."""
    record = {"name": "Hill repeats", "course": {"id": "demo-loop", "segments": [
        {"name": "First climb", "terrain": "climb"}, {"name": "Descent", "terrain": "descent"}]},
        "riders": [{"id": "r01", "name": "Tomáš Dvořák", "ftp_w": 300, "weight_kg": 68}]}
    for session, t0 in ((SESSION, 1781427600.0), ("box-1-yesterday", time.time() - 86400)):
        conn.execute("INSERT INTO sessions (session_id, gateway_id, kind, name, course_id, started, record) "
                     "VALUES (%s, 'box-1', 'live', 'Hill repeats', 'demo-loop', %s, %s)",
                     (session, t0, json.dumps(record)))
        t, seq = t0, 0
        for lap in (1, 2, 3):
            for segment, (seconds, watts) in enumerate(((240, 300.0), (90, 150.0)), start=1):
                seq += 1
                conn.execute(
                    "INSERT INTO segments (gateway_id, seq, session_id, rider_id, name, number, lap, segment, start, "
                    '"end", duration, power_avg, normalized_power, watts_per_kg, samples, coverage) '
                    "VALUES ('box-1', %s, %s, 'r01', 'Tomáš Dvořák', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 1.0)",
                    (seq + (0 if session == SESSION else 100), session, f"{lap}.{segment}", lap, segment, t,
                     t + seconds, seconds, watts, watts, watts / 68, seconds))
                with conn.cursor().copy("COPY power (gateway_id, seq, session_id, rider_id, wall_time, power) "
                                        "FROM STDIN") as copy:
                    for k in range(seconds):
                        copy.write_row(("box-1", seq * 1000 + k, session, "r01", t + k, watts + (k % 7)))
                t += seconds


def test_every_table_and_column_is_described_and_the_documented_queries_run(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        migrate(conn)
        described = dict(conn.execute(
            "SELECT c.table_name || '.' || c.column_name, col_description((c.table_schema || '.' || c.table_name)"
            "::regclass, c.ordinal_position) FROM information_schema.columns c JOIN information_schema.tables t "
            "USING (table_schema, table_name) WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'"
        ).fetchall())
        assert described and all(described.values()), [k for k, v in described.items() if not v]
        assert {k.split(".")[0] for k in described} == set(COMMENTS)
        assert conn.execute("SELECT obj_description('results'::regclass)").fetchone()[0]
        _fill(conn)
        queries = re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.S)
        assert len(queries) == 4
        answers = [conn.execute(q).fetchall() for q in queries]
    history, laps, week, squad = answers
    assert len(history) == 6 and history[0][0] == "Hill repeats"  # lap 1-3 of segment 1, two sessions
    assert [lap for lap, _ in laps] == [1, 2, 3] and all(200 < float(np_w) < 320 for _, np_w in laps)
    assert len(week) == 6 and week[0][2] == "Tomáš Dvořák" and week[0][4] == "First climb"
    assert squad == [(squad[0][0], 3, squad[0][2], squad[0][3])] and squad[0][0] == "Tomáš Dvořák"
