"""The spool's records and schema, shared by the store, its reader and writer, and recovery.

Each row carries its Kafka message (gateway.wire) without its identity, the body alone, and a CRC-32 of the whole
message, which readers rebuild from the row's columns; a damaged row is recognised and skipped
instead of sent. The schema is versioned (``PRAGMA user_version``), each
version reached by one migration in one transaction.
"""

from __future__ import annotations

import contextlib
import sqlite3
import zlib
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import orjson

from gateway.wire.identity import EVENT_ID_OPENING, SCHEMA, event_id_prefixed_sql, identity_sql

SCHEMA_VERSION = 10
# Where sqlite_sequence is held (schema 5): out of reach of any sequence number the spool will give.
SEQUENCE_PARKED = 1 << 62
KINDS = ("power", "crossing", "segment", "session")

# Each entry brings the schema from version N-1 to N, in one transaction.
MIGRATIONS: dict[int, str] = {
    1: """
        CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            rider_id TEXT,
            session_id TEXT,
            wall_time REAL,
            recv_time REAL NOT NULL,
            payload TEXT NOT NULL,
            crc INTEGER NOT NULL,
            delivered_at REAL
        );
        CREATE INDEX IF NOT EXISTS events_undelivered ON events(seq) WHERE delivered_at IS NULL;
        CREATE INDEX IF NOT EXISTS events_delivered ON events(delivered_at) WHERE delivered_at IS NOT NULL;
    """,
    # Segment results are few among many power samples: the page, export and restore read them by
    # session without scanning the samples.
    2: """
        CREATE INDEX IF NOT EXISTS events_segments ON events(session_id, seq) WHERE kind = 'segment';
    """,
    # Deliveries become one watermark ("every row up to N is in Kafka") instead of a mark per row:
    # marking rewrote every delivered row's page and two indexes, about half of what the box wrote to
    # its SD card. Rows the broker refuses are listed in set_aside so the watermark can pass them.
    # Rows delivered above the first undelivered one are sent again once (at least once).
    3: """
        DROP INDEX IF EXISTS events_undelivered;
        DROP INDEX IF EXISTS events_delivered;
        CREATE TABLE IF NOT EXISTS set_aside (seq INTEGER PRIMARY KEY, reason TEXT NOT NULL, at REAL NOT NULL);
        INSERT OR REPLACE INTO meta VALUES ('delivered_through', CAST(COALESCE(
            (SELECT MIN(seq) - 1 FROM events WHERE delivered_at IS NULL), (SELECT MAX(seq) FROM events), 0) AS TEXT));
    """,
    # New rows store their message folded (gateway.wire.Encoder: without the identity the columns
    # hold); rows stored whole before are read as they are. No change to the tables: the version
    # keeps an older gateway, which would send folded messages as they are, from opening the spool.
    4: """
        SELECT 1;
    """,
    # SQLite rewrites its sqlite_sequence page at every commit that adds a row above the number kept
    # there: a page of the SD card per commit, five commits a second at 100 riders. The spool numbers
    # its rows itself, so that number is parked out of reach once; the spool keeps its own floor
    # (meta seq_floor, written when the newest rows may go: dropped for room, salvaged) and a
    # reservation ahead of the numbers given (meta seq_reserved, for a file whose tail is damaged).
    5: f"""
        INSERT OR REPLACE INTO meta VALUES ('seq_floor', CAST(COALESCE(
            (SELECT MAX(seq) FROM sqlite_sequence WHERE name = 'events'), 0) AS TEXT));
        DELETE FROM sqlite_sequence WHERE name = 'events';
        INSERT INTO sqlite_sequence (name, seq) VALUES ('events', {SEQUENCE_PARKED});
    """,
    # New rows store only the body of their message (gateway.wire.Encoder.for_spool), not even the event
    # id: the gateway that numbered a row is the one named here from its first sequence number on
    # (a box renamed mid-spool keeps its older rows' identity). Rows stored before read as before.
    6: """
        CREATE TABLE IF NOT EXISTS gateways (first_seq INTEGER PRIMARY KEY, gateway_id TEXT NOT NULL);
    """,
    # Power samples are stored a commit at a time (gateway.spool.blocks); the rows are the other
    # kinds. ``events`` becomes a view of both, one line per event, for anyone reading the file
    # with sqlite3 (a power sample's message is in its block, compressed: NULL here).
    7: """
        ALTER TABLE events RENAME TO event_rows;
        CREATE TABLE IF NOT EXISTS blocks (
            last_seq INTEGER PRIMARY KEY,
            first_seq INTEGER NOT NULL,
            n INTEGER NOT NULL,
            session_id TEXT,
            recv_time REAL NOT NULL,
            idx TEXT NOT NULL,
            data BLOB NOT NULL,
            crc INTEGER NOT NULL
        );
        CREATE VIEW IF NOT EXISTS events AS
            SELECT seq, kind, rider_id, session_id, wall_time, recv_time, payload, crc FROM event_rows
            UNION ALL
            SELECT CAST(s.value AS INTEGER), 'power', json_extract(b.idx, '$.rider[' || s.key || ']'),
                   b.session_id, json_extract(b.idx, '$.wall[' || s.key || ']'), b.recv_time, NULL, NULL
            FROM blocks b, json_each(b.idx, '$.seq') s;
    """,
    # New blocks are Zstandard frames (gateway.spool.blocks); zlib blocks read as before. No change
    # to the tables: the version keeps a gateway of schema 7, which reads zlib only, from taking the
    # new blocks for damage.
    8: """
        SELECT 1;
    """,
    # Each spool has an identity of its own (meta spool_id, created with the file), carried in every
    # event's identity: a box whose spool starts over under the same gateway id numbers from 1
    # again, and its events must be a new stream at the hub, not repeats of the old one's. A row
    # of ``gateways`` names the spool that numbered rows from its sequence number on (NULL: rows
    # numbered before, which keep the identity of wire schema 2 they were sent with).
    9: """
        ALTER TABLE gateways ADD COLUMN spool_id TEXT;
    """,
    # Wire schema 4 (power samples carry their radio identity): the identity of an event says the
    # wire schema it was numbered under, so a row of ``gateways`` names that too, and rows numbered
    # before keep the 3 they were sent with.
    10: """
        ALTER TABLE gateways ADD COLUMN wire INTEGER NOT NULL DEFAULT 3;
    """,
}


def compatible(version: int) -> list[str]:
    """Statements that let a read-only connection read a file of an older ``version`` as if it were
    of this one (temporary stand-ins: the file itself is never changed)."""
    out = []
    if version < 3:
        out.append("CREATE TEMP TABLE IF NOT EXISTS set_aside (seq INTEGER PRIMARY KEY, reason TEXT, at REAL)")
    if version < 6:
        out.append("CREATE TEMP TABLE IF NOT EXISTS gateways (first_seq INTEGER PRIMARY KEY, gateway_id TEXT, "
                   "spool_id TEXT, wire INTEGER)")
    elif version < 9:  # shadows the file's table (temp comes first), with the columns it lacks
        out.append("CREATE TEMP TABLE IF NOT EXISTS gateways AS SELECT first_seq, gateway_id, NULL AS spool_id, "
                   "3 AS wire FROM main.gateways")
    elif version < 10:
        out.append("CREATE TEMP TABLE IF NOT EXISTS gateways AS SELECT first_seq, gateway_id, spool_id, 3 AS wire "
                   "FROM main.gateways")
    if version < 7:
        out += ["CREATE TEMP VIEW IF NOT EXISTS event_rows AS SELECT seq, kind, rider_id, session_id, wall_time, "
                "recv_time, payload, crc FROM main.events",
                "CREATE TEMP TABLE IF NOT EXISTS blocks (last_seq INTEGER PRIMARY KEY, first_seq INTEGER, n INTEGER, "
                "session_id TEXT, recv_time REAL, idx TEXT, data BLOB, crc INTEGER)"]
    return out


class NewEvent(NamedTuple):
    """An event on its way in: the spool gives it its sequence number and identity fields."""

    kind: str
    rider_id: str | None
    session_id: str | None
    wall_time: float | None
    body: dict[str, Any]


class NewRun(NamedTuple):
    """A run of one meter's power samples on its way in (a replay at full speed hands them over in
    long runs): stored as one stretch of a block, numbered consecutively, its messages built in one
    go (``wire.Encoder.power_run``). ``columns`` are ``wire.POWER_FIELDS``' values, one list each."""

    rider_id: str | None
    session_id: str | None
    name: str | None
    source: str
    columns: tuple[Sequence[float | None], ...]


class Row(NamedTuple):
    """A stored event; ``payload`` is the whole Kafka message, JSON as bytes."""

    seq: int
    kind: str
    rider_id: str | None
    session_id: str | None
    wall_time: float | None
    recv_time: float
    payload: bytes
    crc: int  # CRC-32 of the whole message

    @property
    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = orjson.loads(self.payload)
        return message


crc = zlib.crc32  # of a row's payload (called once per row written and read: no wrapper)


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT; on error roll back, unless SQLite already did (e.g. on SQLITE_FULL)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise



COLUMNS = "seq, kind, rider_id, session_id, wall_time, recv_time, payload, crc"


def message_sql(gateway: str | None, since: int, table: str = "event_rows", spool: str | None = None,
                wire: int = SCHEMA) -> str:
    """SQL for a row's whole Kafka message (a BLOB), as the spool of ``gateway`` reads it.

    Rows store their message without its identity (``gateway.wire.Encoder.for_spool``: the body
    alone); SQLite puts the identity back as it reads, which costs the uplink less than doing it in
    Python. Rows from ``since`` on were numbered by ``gateway`` in spool ``spool`` under wire schema
    ``wire`` (the common case: no lookup; ``spool`` None: rows of wire schema 2); older ones by the
    gateway, spool and wire schema the ``gateways`` table names for them; rows stored before schema
    6 begin with their event id (a body never has one).
    """
    row = (f"(SELECT g.{{}} FROM gateways g WHERE g.first_seq <= {table}.seq "
           "ORDER BY g.first_seq DESC LIMIT 1)")
    lookup, spool_lookup, wire_lookup = row.format("gateway_id"), row.format("spool_id"), row.format("wire")
    prefix = f"{gateway or ''}:".encode()
    body = "(CASE WHEN length(payload) > 2 THEN ',' || substr(payload, 2) ELSE '}' END)"
    stored_before = f"substr(payload, 1, 13) = X'{EVENT_ID_OPENING.hex()}'"
    others = (f"WHEN {stored_before} THEN {event_id_prefixed_sql(prefix)} "
              f"WHEN {spool_lookup} IS NULL THEN {identity_sql(body, False, lookups=(lookup, '', ''))} "
              f"ELSE {identity_sql(body, True, lookups=(lookup, spool_lookup, wire_lookup))}")
    if gateway is None:
        return f"CAST(CASE {others} END AS BLOB)"
    mine = identity_sql(body, spool is not None, gateway=gateway, spool_id=spool, wire=wire)
    return f"CAST(CASE WHEN seq >= {int(since)} THEN {mine} {others} END AS BLOB)"


def read_columns(whole: str) -> str:
    """What readers select: the stored columns with the whole message for ``payload``. The CRC is of
    the whole message, so damage to the stored bytes or to the columns the identity is rebuilt from
    is caught."""
    return f"seq, kind, rider_id, session_id, wall_time, recv_time, {whole}, crc"
