"""The spool's records and schema, shared by the store, its reader and writer, and recovery.

Each row carries the complete Kafka message (gateway.wire) and a CRC-32 of it, so a damaged row is
recognised and skipped instead of sent. The schema is versioned (``PRAGMA user_version``), each
version reached by one migration in one transaction.
"""

from __future__ import annotations

import contextlib
import sqlite3
import zlib
from collections.abc import Iterator
from typing import Any, NamedTuple

import orjson

from gateway.wire import SCHEMA

SCHEMA_VERSION = 5
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
}


class NewEvent(NamedTuple):
    """An event on its way in: the spool gives it its sequence number and identity fields."""

    kind: str
    rider_id: str | None
    session_id: str | None
    wall_time: float | None
    body: dict[str, Any]


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


def _whole_message() -> str:
    """SQL for a row's whole Kafka message; ``?1`` is ``<gateway id>:`` as bytes, the spool's own.

    Rows store the message folded (``gateway.wire.Encoder.fold``: the event id, then the body);
    SQLite puts the identity back as it reads, which costs the uplink less than doing it in Python.
    The gateway comes from the stored event id itself (a gateway id has no ':'), so rows stored
    before the box was renamed keep theirs; ``?1`` only spares looking for the ':' in the common
    case. Rows stored whole (schema 3 and older) are returned as they are.
    """
    colon = ("(CASE WHEN substr(payload, 14, length(?1)) = ?1 THEN length(?1) "
             "ELSE instr(CAST(substr(payload, 14, 80) AS TEXT), ':') END)")  # the gateway's length + 1
    rest = f"({colon} + length(seq) + 15)"  # 1-based: the byte after '{{"event_id":"<gateway>:<seq>"'
    head = (f"substr(payload, 1, {rest} - 1) || ',\"gateway_id\":\"' || CAST(substr(payload, 14, {colon} - 1) AS TEXT)"
            " || '\",\"seq\":' || seq || "
            f"',\"schema\":{SCHEMA},\"session_id\":' || json_quote(session_id) || ',\"simulation_id\":' || "
            "json_quote(session_id)")
    return (f"CAST(CASE WHEN CAST(substr(payload, {rest}, 14) AS TEXT) = ',\"gateway_id\":' THEN payload "
            f"ELSE {head} || substr(payload, {rest}) END AS BLOB)")


WHOLE = _whole_message()
# What readers select: the stored columns with the whole message for ``payload``; ``?1`` is
# WHOLE's, so a query's own parameters come after it. The CRC is of the whole message, so damage
# to the stored bytes or to the columns the identity is rebuilt from is caught.
READ_COLUMNS = f"seq, kind, rider_id, session_id, wall_time, recv_time, {WHOLE}, crc"
