"""Writing one batch of decoded messages in one PostgreSQL transaction, idempotently.

Power samples are most of the stream: they go in with a binary COPY (a plain INSERT per row would
not keep up) into a table with one index. Duplicates (a box resends what was in flight at a crash;
Kafka redelivers a batch after a hub was killed) are dropped before the COPY without a unique
index: a box sends each rider's events in sequence order, so an event whose sequence number is not
above the highest already written for its box and rider (``power_hwm``, read under a row lock and
updated in the same transaction) was written before. Crossings, results and session records are
few; their primary keys skip repeats. Segment results are written last, under a transaction lock,
so their ``hub_seq`` (the page's SSE id) rises in commit order even with several hubs writing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg import Connection, sql
from psycopg.types.json import Jsonb

SEGMENT_LOCK = 7412
POWER_COLUMNS = ("gateway_id", "seq", "session_id", "rider_id", "wall_time", "power", "cadence", "torque", "source",
                 "implausible")  # the plain COPY of the benchmark writes these
CROSSING_COLUMNS = ("gateway_id", "seq", "session_id", "rider_id", "wall_time", "transponder", "gate", "source",
                    "lap", "receiver_time")
SEGMENT_COLUMNS = ("gateway_id", "seq", "session_id", "rider_id", "name", "number", "lap", "segment", "start", "end",
                   "duration", "start_gate", "end_gate", "power_avg", "cadence_avg", "normalized_power",
                   "intensity_factor", "tss", "watts_per_kg", "samples", "coverage", "flags", "np_window",
                   "withdrawn")


@dataclass
class Batch:
    """Rows ready for the tables, from one poll of the consumer."""

    power: list[tuple[Any, ...]] = field(default_factory=list)
    crossings: list[tuple[Any, ...]] = field(default_factory=list)
    segments: list[tuple[Any, ...]] = field(default_factory=list)
    sessions: dict[str, tuple[str, int, dict[str, Any]]] = field(default_factory=dict)  # id -> (gateway, seq, record)
    seen_sessions: dict[str, str] = field(default_factory=dict)  # every session id in the batch -> its gateway
    dead: list[tuple[str, int, int, bytes | None, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.power) + len(self.crossings) + len(self.segments) + len(self.sessions) + len(self.dead)


@dataclass
class Written:
    power: int = 0
    crossings: int = 0
    segments: int = 0
    duplicates: int = 0
    dead: int = 0


def write(conn: Connection[Any], batch: Batch) -> Written:
    """Write ``batch`` in one transaction; raises psycopg errors (the caller retries, offsets uncommitted)."""
    out = Written()
    with conn.transaction():
        if batch.seen_sessions:
            conn.cursor().executemany(
                "INSERT INTO sessions (session_id, gateway_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                sorted(batch.seen_sessions.items()))
        for session_id, (gateway, seq, record) in batch.sessions.items():
            _session(conn, session_id, gateway, seq, record)
        if batch.power:
            out.power = _power(conn, batch.power)
            out.duplicates += len(batch.power) - out.power
        if batch.crossings:
            out.crossings = _insert(conn, "crossings", CROSSING_COLUMNS, batch.crossings)
            out.duplicates += len(batch.crossings) - out.crossings
        if batch.dead:
            _dead_letters(conn, batch.dead)
            out.dead += len(batch.dead)
        if batch.segments:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SEGMENT_LOCK,))
            out.segments = _insert(conn, "segments", SEGMENT_COLUMNS, batch.segments)
            out.duplicates += len(batch.segments) - out.segments
            if out.segments:
                conn.execute("NOTIFY trackside_segments")
    return out


def _session(conn: Connection[Any], session_id: str, gateway: str, seq: int, record: dict[str, Any]) -> None:
    course = record.get("course") or {}
    conn.execute(
        "INSERT INTO sessions AS s (session_id, gateway_id, record, record_seq, kind, name, course_id, started, ended) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (session_id) DO UPDATE SET record = excluded.record, record_seq = excluded.record_seq, "
        "kind = excluded.kind, name = excluded.name, course_id = excluded.course_id, started = excluded.started, "
        "ended = excluded.ended, updated = now() "
        "WHERE s.record_seq IS NULL OR s.record_seq < excluded.record_seq",
        (session_id, gateway, Jsonb(record), seq, record.get("kind"), record.get("name"), course.get("id"),
         record.get("started"), record.get("ended")))


POWER_TYPES = ["text", "int8", "text", "text", "float8", "float8", "float8", "float8", "text", "bool"]


def _power(conn: Connection[Any], rows: Sequence[tuple[Any, ...]]) -> int:
    """Insert the power rows not written before; returns how many were new."""
    keys = sorted({(r[0], r[3] or "") for r in rows})
    # One writer at a time per box and rider (two hubs overlap only for a moment in a rebalance).
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(g || '/' || k)) FROM "
                 "(SELECT g, k FROM unnest(%s::text[], %s::text[]) AS x(g, k) ORDER BY g, k) ordered",
                 ([g for g, _ in keys], [k for _, k in keys]))
    high = dict(((g, k), seq) for g, k, seq in conn.execute(
        "SELECT gateway_id, rider, seq FROM power_hwm WHERE (gateway_id, rider) IN "
        "(SELECT * FROM unnest(%s::text[], %s::text[]))", ([g for g, _ in keys], [k for _, k in keys])))
    fresh = []
    for row in rows:  # in Kafka's order: a rider's events in the order its box sent them
        key = (row[0], row[3] or "")
        if row[1] > high.get(key, -1):
            high[key] = row[1]
            fresh.append(row)
    if fresh:
        columns = sql.SQL(", ").join(map(sql.Identifier, POWER_COLUMNS))
        with conn.cursor().copy(sql.SQL("COPY power ({}) FROM STDIN (FORMAT BINARY)").format(columns)) as copy:
            copy.set_types(POWER_TYPES)
            for row in fresh:
                copy.write_row(row)
        conn.cursor().executemany(
            "INSERT INTO power_hwm (gateway_id, rider, seq) VALUES (%s, %s, %s) ON CONFLICT (gateway_id, rider) "
            "DO UPDATE SET seq = greatest(power_hwm.seq, excluded.seq)", [(g, k, q) for (g, k), q in high.items()])
    return len(fresh)


def _dead_letters(conn: Connection[Any], dead: Sequence[tuple[str, int, int, bytes | None, str]]) -> None:
    if dead:
        conn.cursor().executemany('INSERT INTO dead_letters (topic, partition, "offset", raw, reason) VALUES '
                                  "(%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING", dead)


def _insert(conn: Connection[Any], table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]],
            staged: bool = False) -> int:
    """Insert ``rows`` skipping those already there; returns how many were new."""
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    if not staged:
        marks = sql.SQL(", ").join(sql.Placeholder() * len(columns))
        cur = conn.cursor()
        cur.executemany(sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING").format(
            sql.Identifier(table), names, marks), rows)
        return max(cur.rowcount, 0)
    conn.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
                 .format(sql.Identifier(f"staging_{table}"), sql.Identifier(table)))
    with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(f"staging_{table}"),
                                                                      names)) as copy:
        for row in rows:
            copy.write_row(row)
    cur = conn.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT DO NOTHING").format(
        sql.Identifier(table), names, names, sql.Identifier(f"staging_{table}")))
    return max(cur.rowcount, 0)
