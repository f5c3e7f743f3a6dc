"""Writing one batch of decoded messages in one PostgreSQL transaction, idempotently.

Power samples are most of the stream: they go in with a binary COPY (a plain INSERT per row would
not keep up) into a table with one index. Duplicates (a box resends what was in flight at a crash;
Kafka redelivers a batch after a hub was killed) are dropped before the COPY without a unique
index: a box's spool sends each rider's events in sequence order, so an event whose sequence
number is above the highest already written for its box, spool and rider (``power_hwm``, read under
a row lock and updated in the same transaction) is new; one at or below it was either written
before or set aside by the box and offered again at its next start, and is looked up through the
(session, time) index. Crossings, results and session records are few; their primary keys skip
repeats. Segment results are written last, under a transaction lock, so their ``hub_seq`` (the
page's SSE id) rises in commit order even with several hubs writing.

Every row ends with its spool's id (``spool_id``; '' for messages of wire schema 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg import Connection, sql
from psycopg.types.json import Jsonb

SEGMENT_LOCK = 7412
POWER_COLUMNS = ("gateway_id", "seq", "session_id", "rider_id", "wall_time", "power", "cadence", "torque", "source",
                 "implausible", "raw", "spool_id")  # the plain COPY of the benchmark writes these; spool last
CROSSING_COLUMNS = ("gateway_id", "seq", "session_id", "rider_id", "wall_time", "transponder", "gate", "source",
                    "lap", "receiver_time", "spool_id")
SEGMENT_COLUMNS = ("gateway_id", "seq", "session_id", "rider_id", "name", "number", "lap", "segment", "start", "end",
                   "duration", "start_gate", "end_gate", "power_avg", "cadence_avg", "normalized_power",
                   "intensity_factor", "tss", "watts_per_kg", "samples", "coverage", "flags", "np_window",
                   "withdrawn", "spool_id")


@dataclass
class Batch:
    """Rows ready for the tables, from one poll of the consumer."""

    power: list[tuple[Any, ...]] = field(default_factory=list)
    crossings: list[tuple[Any, ...]] = field(default_factory=list)
    segments: list[tuple[Any, ...]] = field(default_factory=list)
    # (session, gateway, spool) -> (seq, record, where it came from: topic, partition, offset); a
    # record of the same session from another box is kept apart, to be refused
    sessions: dict[tuple[str, str, str], tuple[int, dict[str, Any], tuple[str, int, int]]] = field(
        default_factory=dict)
    seen_sessions: dict[str, tuple[str, str]] = field(default_factory=dict)  # every session id -> (gateway, spool)
    # (gateway, spool) -> [events, first wall time, last wall time]: what the hub saw of each spool
    spools: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    dead: list[tuple[str, int, int, bytes | None, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.power) + len(self.crossings) + len(self.segments) + len(self.sessions) + len(self.dead)

    def halves(self) -> tuple[Batch, Batch]:
        """The batch in two, each list cut at its middle: the first half is written first, so a
        rider's events keep their order. Records, spools and dead letters go with the first half."""
        def cut(rows: list[tuple[Any, ...]]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
            return rows[:len(rows) // 2], rows[len(rows) // 2:]

        (p1, p2), (c1, c2), (s1, s2) = cut(self.power), cut(self.crossings), cut(self.segments)
        first = Batch(p1, c1, s1, self.sessions, dict(self.seen_sessions), self.spools, self.dead)
        return first, Batch(p2, c2, s2, {}, dict(self.seen_sessions), {}, [])


@dataclass
class Written:
    power: int = 0
    crossings: int = 0
    segments: int = 0
    duplicates: int = 0
    dead: int = 0

    def add(self, other: Written) -> Written:
        """``other``'s counts added to these; returns self."""
        for name in ("power", "crossings", "segments", "duplicates", "dead"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self


def write(conn: Connection[Any], batch: Batch) -> Written:
    """Write ``batch`` in one transaction; raises psycopg errors (the caller retries, offsets uncommitted)."""
    out = Written()
    with conn.transaction():
        if batch.seen_sessions:
            conn.cursor().executemany(
                "INSERT INTO sessions (session_id, gateway_id, spool_id) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                sorted((k, g, s) for k, (g, s) in batch.seen_sessions.items()))
        for (session_id, gateway, spool), (seq, record, place) in batch.sessions.items():
            refused = _session(conn, session_id, gateway, spool, seq, record)
            if refused is not None:
                batch.dead.append((*place, None, refused))
        if batch.spools:
            _spools(conn, batch.spools)
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


def _session(conn: Connection[Any], session_id: str, gateway: str, spool: str, seq: int,
             record: dict[str, Any]) -> str | None:
    """Store a session's record; why not (for the dead letters) when the session is another box's.

    A record replaces the stored one only when it comes from the same box and spool, and is newer
    (a box that upgraded mid-session moves its session from spool '' to its own)."""
    course = record.get("course") or {}
    row = conn.execute(
        "INSERT INTO sessions AS s (session_id, gateway_id, spool_id, record, record_seq, kind, name, course_id, "
        "started, ended) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (session_id) DO UPDATE SET record = excluded.record, record_seq = excluded.record_seq, "
        "spool_id = excluded.spool_id, kind = excluded.kind, name = excluded.name, course_id = excluded.course_id, "
        "started = excluded.started, ended = excluded.ended, updated = now() "
        "WHERE s.gateway_id = excluded.gateway_id AND (s.spool_id = '' OR s.spool_id = excluded.spool_id) "
        "AND (s.record_seq IS NULL OR s.spool_id <> excluded.spool_id OR s.record_seq < excluded.record_seq) "
        "RETURNING 1",
        (session_id, gateway, spool, Jsonb(record), seq, record.get("kind"), record.get("name"), course.get("id"),
         record.get("started"), record.get("ended"))).fetchone()
    if row is not None:
        return None
    owner = conn.execute("SELECT gateway_id, spool_id FROM sessions WHERE session_id = %s", (session_id,)).fetchone()
    if owner is not None and (owner[0] != gateway or owner[1] not in ("", spool)):
        return (f"session {session_id!r} belongs to gateway {owner[0]!r} (spool {owner[1] or '-'}); a record from "
                f"{gateway!r} (spool {spool or '-'}) never replaces it")
    return None  # an older record of the same session: the newer one stays


def _spools(conn: Connection[Any], seen: dict[tuple[str, str], list[float]]) -> None:
    conn.cursor().executemany(
        "INSERT INTO spools AS p (gateway_id, spool_id, events, first_wall, last_wall) VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT (gateway_id, spool_id) DO UPDATE SET last_seen = now(), events = p.events + excluded.events, "
        "first_wall = least(p.first_wall, excluded.first_wall), last_wall = greatest(p.last_wall, excluded.last_wall)",
        [(g, s, int(n), lo, hi) for (g, s), (n, lo, hi) in sorted(seen.items())])


POWER_TYPES = ["text", "int8", "text", "text", "float8", "float8", "float8", "float8", "text", "bool", "text", "text"]


def _power(conn: Connection[Any], rows: Sequence[tuple[Any, ...]]) -> int:
    """Insert the power rows not written before; returns how many were new."""
    keys = sorted({(r[0], r[-1], r[3] or "") for r in rows})
    gateways, spools, riders = ([k[i] for k in keys] for i in range(3))
    # One writer at a time per box, spool and rider (two hubs overlap only for a moment in a
    # rebalance): a row lock on its high-water mark. Row locks are kept in the rows, not in
    # PostgreSQL's shared lock table, so a batch of 20 000 riders takes them all (an advisory lock
    # each ran out of shared memory, and the batch was retried forever).
    conn.execute("INSERT INTO power_hwm (gateway_id, spool_id, rider, seq) SELECT g, s, k, -1 FROM "
                 "unnest(%s::text[], %s::text[], %s::text[]) AS x(g, s, k) ORDER BY g, s, k ON CONFLICT DO NOTHING",
                 (gateways, spools, riders))
    high = {(g, s, k): q for g, s, k, q in conn.execute(
        "SELECT gateway_id, spool_id, rider, seq FROM power_hwm WHERE (gateway_id, spool_id, rider) IN "
        "(SELECT * FROM unnest(%s::text[], %s::text[], %s::text[])) ORDER BY gateway_id, spool_id, rider FOR UPDATE",
        (gateways, spools, riders))}
    mark = dict(high)
    fresh, doubt = [], []
    for row in rows:  # in Kafka's order: a rider's events in the order its box sent them
        key = (row[0], row[-1], row[3] or "")
        if row[1] > high[key]:
            high[key] = row[1]
            fresh.append(row)
        elif row[1] <= mark[key]:
            doubt.append(row)  # at or below what was written before this batch
    if doubt:
        fresh += _not_written(conn, doubt)
    if fresh:
        columns = sql.SQL(", ").join(map(sql.Identifier, POWER_COLUMNS))
        with conn.cursor().copy(sql.SQL("COPY power ({}) FROM STDIN (FORMAT BINARY)").format(columns)) as copy:
            copy.set_types(POWER_TYPES)
            for row in fresh:
                copy.write_row(row)
        changed = [(key, q) for key, q in high.items() if q > mark[key]]
        if changed:
            conn.execute("UPDATE power_hwm h SET seq = d.q FROM unnest(%s::text[], %s::text[], %s::text[], "
                         "%s::int8[]) AS d(g, s, k, q) WHERE h.gateway_id = d.g AND h.spool_id = d.s AND h.rider = d.k",
                         ([k[0] for k, _ in changed], [k[1] for k, _ in changed], [k[2] for k, _ in changed],
                          [q for _, q in changed]))
    return len(fresh)


def _not_written(conn: Connection[Any], rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Of ``rows`` at or below their mark, the ones not in the table (each once): a sample the box
    set aside and offered again after later ones. Found through the (session, rider, time) index
    (a sample of no rider through its NULL entries): rare, but for a whole batch Kafka redelivers
    after a hub was killed."""
    found: set[tuple[Any, ...]] = set()
    for paired in (True, False):
        part = [r for r in rows if (r[3] is not None) == paired]
        if not part:
            continue
        rider = "p.rider_id = d.r" if paired else "p.rider_id IS NULL"
        found.update(conn.execute(
            "SELECT p.gateway_id, p.spool_id, p.seq FROM unnest(%s::text[], %s::text[], %s::int8[], %s::text[], "
            f"%s::text[], %s::float8[]) AS d(g, s, q, sess, r, t) JOIN power p ON p.session_id = d.sess AND {rider} "
            "AND p.wall_time = d.t AND p.gateway_id = d.g AND p.spool_id = d.s AND p.seq = d.q",
            ([r[0] for r in part], [r[-1] for r in part], [r[1] for r in part], [r[2] for r in part],
             [r[3] for r in part], [r[4] for r in part])).fetchall())
    out = []
    for row in rows:
        key = (row[0], row[-1], row[1])
        if key not in found:
            found.add(key)  # a repeat within the batch goes in once
            out.append(row)
    return out


def _dead_letters(conn: Connection[Any], dead: Sequence[tuple[str, int, int, bytes | None, str]]) -> None:
    if dead:
        conn.cursor().executemany('INSERT INTO dead_letters (topic, partition, "offset", raw, reason) VALUES '
                                  "(%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING", dead)


def _insert(conn: Connection[Any], table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> int:
    """Insert ``rows`` skipping those already there; returns how many were new."""
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    marks = sql.SQL(", ").join(sql.Placeholder() * len(columns))
    cur = conn.cursor()
    cur.executemany(sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING").format(
        sql.Identifier(table), names, marks), rows)
    return max(cur.rowcount, 0)
