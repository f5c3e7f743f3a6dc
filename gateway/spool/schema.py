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

SCHEMA_VERSION = 3
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
}


class NewEvent(NamedTuple):
    """An event on its way in: the spool gives it its sequence number and identity fields."""

    kind: str
    rider_id: str | None
    session_id: str | None
    wall_time: float | None
    body: dict[str, Any]


class Row(NamedTuple):
    """A stored event; ``payload`` is the Kafka message, JSON as bytes."""

    seq: int
    kind: str
    rider_id: str | None
    session_id: str | None
    wall_time: float | None
    recv_time: float
    payload: bytes
    crc: int  # CRC-32 of payload: the row is its own INSERT parameters

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
