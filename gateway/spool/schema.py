"""The spool's records and schema, shared by the store, its reader and writer, and recovery.

Each row carries the complete Kafka message (gateway.wire) and a CRC-32 of it, so a damaged row is
recognised and skipped instead of sent. The schema is versioned (``PRAGMA user_version``), each
version reached by one migration in one transaction.
"""

from __future__ import annotations

import contextlib
import sqlite3
import zlib
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import orjson

SCHEMA_VERSION = 2
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

    @property
    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = orjson.loads(self.payload)
        return message


def crc(payload: bytes) -> int:
    return zlib.crc32(payload)


def ranges(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted runs of consecutive numbers: deliveries come back mostly contiguous."""
    out: list[tuple[int, int]] = []
    for seq in sorted(seqs):
        if out and seq == out[-1][1] + 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out


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
