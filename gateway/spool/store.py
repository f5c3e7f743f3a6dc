"""The durable on-box event store: SQLite in WAL mode, the source of truth for everything accepted.

Every accepted event (power sample, gate crossing, segment result) is one row, appended in small
batched transactions before anything downstream sees it. Rows carry the complete Kafka message
(JSON, with ``event_id`` = ``<gateway_id>:<seq>``) and its CRC-32, so the forwarder sends them as
they are and a damaged row is recognised and skipped instead of sent.

Durability (``synchronous``), as SQLite documents it for WAL mode:

- ``NORMAL`` (default): a commit survives the process being killed (kill -9, a crash, the OOM
  killer): nothing accepted is lost. A power cut or kernel crash can roll back the last commits
  since the last WAL checkpoint sync, i.e. up to a few batch intervals. One fsync per checkpoint:
  kind to an SD card.
- ``FULL``: every commit is fsynced: a power cut loses nothing the storage really wrote, at one
  fsync per batch (with the default 50 ms batches, up to 20 syncs/s while events flow).

Bounded disk: when the rows in use exceed ``max_bytes``, delivered rows go first (whatever their
age), then the configured policy applies to undelivered ones: ``reject`` new events, or
``drop_oldest`` undelivered ones. Both are counted and reported; neither is ever a crash. A full
disk (SQLITE_FULL) is handled the same way.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from gateway.errors import SpoolError
from gateway.wire import Encoder

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
KINDS = ("power", "crossing", "segment")

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
        return orjson.loads(self.payload)


@dataclass
class SpoolCounters:
    appended: int = 0
    rejected: int = 0
    dropped: int = 0
    pruned: int = 0
    corrupt_rows: int = 0
    disk_full: int = 0
    last_error: str | None = None
    full_since: float | None = None


@dataclass
class Policy:
    max_bytes: int = 1024 * 1024 * 1024
    retention_s: float = 72 * 3600.0
    full_policy: str = "reject"
    synchronous: str = "NORMAL"


def crc(payload: bytes) -> int:
    return zlib.crc32(payload)


def _ranges(seqs: Sequence[int]) -> list[tuple[int, int]]:
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


@dataclass
class Spool:
    """One SQLite file; safe to use from several threads (a connection per thread, one writer lock)."""

    path: Path
    gateway_id: str
    policy: Policy = field(default_factory=Policy)
    counters: SpoolCounters = field(default_factory=SpoolCounters)
    readonly: bool = False  # for `export` and other readers: never migrates, salvages or writes

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._conn_lock = threading.Lock()
        self._next_seq = 1
        self._encoder = Encoder(self.gateway_id)
        self._undelivered = 0
        self._opened = False
        # Set (to the reason) while the disk is too full to take new events safely: what is stored
        # can still be read, sent and pruned.
        self.intake_paused: str | None = None

    # -- connections ---------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if not self._opened:
                raise SpoolError("the spool is not open", where=str(self.path))
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30.0, isolation_level=None,
                                   check_same_thread=False)
        else:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.policy.synchronous}")
        conn.execute("PRAGMA busy_timeout=30000")
        # A small page cache per connection: several threads hold one, and the box has little RAM.
        conn.execute("PRAGMA cache_size=-1024")
        with self._conn_lock:
            self._connections.append(conn)
        return conn

    def open(self) -> Spool:
        """Create or open the file: integrity check (salvaging a corrupt file), migrations."""
        from gateway.spool.recovery import check_or_salvage, salvage

        if self.readonly:
            return self._open_readonly()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        corrupt = check_or_salvage(self)
        self._opened = True
        conn = self._conn()
        self._migrate(conn)
        if corrupt is not None:
            saved, lost = salvage(corrupt, self)
            self.counters.corrupt_rows += lost
            log.error("spool %s: salvaged %d rows from %s; %d rows in its range could not be read",
                      self.path, saved, corrupt.name, lost)
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        top = conn.execute("SELECT MAX(seq) FROM events").fetchone()[0] or 0
        self._next_seq = max(top, row[0] if row else 0) + 1
        self._undelivered = conn.execute("SELECT COUNT(*) FROM events WHERE delivered_at IS NULL").fetchone()[0]
        self.set_meta("gateway_id", self.gateway_id, replace=False)
        return self

    def _open_readonly(self) -> Spool:
        if not self.path.is_file():
            raise SpoolError("no spool here", where=str(self.path), hint="give the gateway's state directory")
        self._opened = True
        try:
            conn = self._conn()
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            top = conn.execute("SELECT MAX(seq) FROM events").fetchone()[0] or 0
        except sqlite3.DatabaseError as exc:
            self.close()
            raise SpoolError(f"cannot read the spool: {exc}", where=str(self.path)) from None
        self._check_version(version)
        self._next_seq = top + 1
        return self

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise SpoolError(f"the spool has schema version {version}, newer than this gateway's "
                             f"{SCHEMA_VERSION}", where=str(self.path),
                             hint="upgrade the gateway, or move the file aside to start a new spool")

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        self._check_version(version)
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with transaction(conn):
                for statement in MIGRATIONS[target].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={target}")
            log.info("spool %s: schema migrated to version %d", self.path, target)

    def release_thread(self) -> None:
        """Close the calling thread's connection: a thread that ends (a finished replay's ingest) must
        not leave its file descriptors and page cache behind."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            return
        self._local.conn = None
        with self._conn_lock:
            if conn in self._connections:
                self._connections.remove(conn)
        with contextlib.suppress(sqlite3.Error):
            conn.close()

    def close(self) -> None:
        with self._conn_lock:
            for conn in self._connections:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._connections.clear()
        self._local = threading.local()
        self._opened = False

    # -- writing -------------------------------------------------------------------------------

    def append(self, events: Sequence[NewEvent], now: float | None = None) -> list[Row]:
        """Store ``events`` in one transaction; returns the rows stored (all, or none if rejected).

        Never raises for a full spool or a full disk: the policy decides, the counters tell.
        """
        if not events:
            return []
        now = time.time() if now is None else now
        with self._write_lock:
            if self.intake_paused is not None:
                return self._reject(events, self.intake_paused)
            if self.used_bytes() >= self.policy.max_bytes and not self._make_room(len(events)):
                return self._reject(events, "the spool is full")
            for attempt in range(2):
                rows = self._rows(events, now)
                try:
                    self._insert(rows)
                except sqlite3.OperationalError as exc:
                    if "full" not in str(exc).lower():
                        raise SpoolError(f"cannot write: {exc}", where=str(self.path)) from None
                    self.counters.disk_full += 1
                    self.counters.last_error = f"disk full: {exc}"
                    if attempt == 0 and self._make_room(len(events)):
                        continue
                    return self._reject(events, f"no space left ({exc})")
                self._next_seq += len(rows)
                self._undelivered += len(rows)
                self.counters.appended += len(rows)
                self.counters.full_since = None
                return rows
        return []  # pragma: no cover - the loop always returns

    def _rows(self, events: Sequence[NewEvent], now: float) -> list[Row]:
        """Rows with their Kafka message (gateway.wire), sequence numbers from the next free one."""
        encode = self._encoder.encode
        seq = self._next_seq
        rows = []
        for ev in events:
            rows.append(Row(seq, ev.kind, ev.rider_id, ev.session_id, ev.wall_time, now,
                            encode(seq, ev.session_id, ev.body)))
            seq += 1
        return rows

    def _insert(self, rows: list[Row]) -> None:
        with transaction(self._conn()) as conn:
            conn.executemany(
                "INSERT INTO events (seq, kind, rider_id, session_id, wall_time, recv_time, payload, crc) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(r.seq, r.kind, r.rider_id, r.session_id, r.wall_time, r.recv_time, r.payload, crc(r.payload))
                 for r in rows],
            )

    def _reject(self, events: Sequence[NewEvent], why: str) -> list[Row]:
        self.counters.rejected += len(events)
        if self.counters.full_since is None:
            self.counters.full_since = time.time()
            log.error("spool %s: %s: rejecting new events (policy %s); %d rejected so far",
                      self.path, why, self.policy.full_policy, self.counters.rejected)
        return []

    def _make_room(self, wanted: int) -> bool:
        """Free space for ``wanted`` rows: delivered rows first, then the policy. True if room was made."""
        try:
            return self._delete_for_room(wanted)
        except sqlite3.OperationalError as exc:  # even a delete needs WAL space on a full disk
            self.counters.last_error = f"disk full: {exc}"
            return False

    def _delete_for_room(self, wanted: int) -> bool:
        conn = self._conn()
        freed = conn.execute(
            "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE delivered_at IS NOT NULL "
            "ORDER BY seq LIMIT ?)", (max(wanted * 4, 1000),)).rowcount
        self.counters.pruned += freed
        if freed:
            return True
        if self.policy.full_policy != "drop_oldest":
            return False
        dropped = conn.execute(
            "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE delivered_at IS NULL "
            "ORDER BY seq LIMIT ?)", (max(wanted * 2, 500),)).rowcount
        self._undelivered -= dropped
        if dropped:
            if self.counters.dropped == 0 or self.counters.full_since is None:
                log.error("spool %s: full of undelivered events: dropping the oldest (policy drop_oldest)",
                          self.path)
            self.counters.dropped += dropped
            self.counters.full_since = self.counters.full_since or time.time()
        return dropped > 0

    def mark_delivered(self, seqs: Sequence[int], at: float | None = None) -> bool:
        """Record deliveries; False when the disk is full (the caller keeps them and tries again)."""
        if not seqs:
            return True
        at = time.time() if at is None else at
        with self._write_lock:
            try:
                with transaction(self._conn()) as conn:
                    marked = conn.executemany(
                        "UPDATE events SET delivered_at = ? WHERE seq BETWEEN ? AND ? AND delivered_at IS NULL",
                        [(at, lo, hi) for lo, hi in _ranges(seqs)]).rowcount
            except sqlite3.OperationalError as exc:
                if "full" not in str(exc).lower():
                    raise
                # The rows stay undelivered and are sent again: at least once, never lost.
                self.counters.disk_full += 1
                self.counters.last_error = f"disk full: {exc}"
                return False
            self._undelivered -= marked
        return True

    def prune(self, now: float | None = None) -> int:
        """Delete delivered rows older than the retention period; returns how many."""
        now = time.time() if now is None else now
        with self._write_lock:
            n = self._conn().execute("DELETE FROM events WHERE delivered_at IS NOT NULL AND delivered_at < ?",
                                     (now - self.policy.retention_s,)).rowcount
        self.counters.pruned += n
        return n

    # -- reading -------------------------------------------------------------------------------

    def undelivered(self, after_seq: int = 0, limit: int = 1000) -> list[Row]:
        """Undelivered rows in order after ``after_seq``; a row whose CRC fails is counted, not returned."""
        cur = self._conn().execute(
            "SELECT seq, kind, rider_id, session_id, wall_time, recv_time, payload, crc FROM events "
            "WHERE delivered_at IS NULL AND seq > ? ORDER BY seq LIMIT ?", (after_seq, limit))
        return self._checked(cur)

    def segment_rows(self, session_id: str) -> list[Row]:
        """Every segment result of a session, in order (through the partial index of version 2)."""
        return self._checked(self._conn().execute(
            "SELECT seq, kind, rider_id, session_id, wall_time, recv_time, payload, crc FROM events "
            "WHERE kind = 'segment' AND session_id = ? ORDER BY seq", (session_id,)))

    def segment_sessions(self) -> list[tuple[str, int, float | None, float | None]]:
        """(session, results, first, last) of every session with results, oldest first."""
        return self._conn().execute(
            "SELECT session_id, COUNT(*), MIN(wall_time), MAX(wall_time) FROM events WHERE kind = 'segment' "
            "GROUP BY session_id ORDER BY MIN(seq)").fetchall()

    def since(self, after_seq: int, *, kinds: Sequence[str] = KINDS, session_id: str | None = None,
              batch: int = 5000) -> Iterator[Row]:
        """Every row after ``after_seq`` of the given kinds (and session), in order, in batches."""
        conn = self._conn()
        marks = ",".join("?" * len(kinds))
        where = f"seq > ? AND kind IN ({marks})" + (" AND session_id = ?" if session_id is not None else "")
        last = after_seq
        while True:
            params: list[Any] = [last, *kinds] + ([session_id] if session_id is not None else [])
            cur = conn.execute(
                "SELECT seq, kind, rider_id, session_id, wall_time, recv_time, payload, crc FROM events "
                f"WHERE {where} ORDER BY seq LIMIT {int(batch)}", params)
            rows = self._checked(cur)
            if not rows:
                return
            yield from rows
            last = rows[-1].seq

    def _checked(self, cur: sqlite3.Cursor) -> list[Row]:
        out = []
        for seq, kind, rider, session, wall, recv, payload, stored_crc in cur:
            if not isinstance(payload, bytes) or crc(payload) != stored_crc:
                self.counters.corrupt_rows += 1
                log.error("spool %s: row %d fails its checksum; skipped", self.path, seq)
                continue
            out.append(Row(seq, kind, rider, session, wall, recv, payload))
        return out

    def backlog(self) -> tuple[int, float | None]:
        """(undelivered rows, receive time of the oldest one).

        The count is kept as rows come and go (counted once at open), so the status every second
        costs one index lookup, not a scan of a spool that grows all session with Kafka off.
        """
        row = self._conn().execute(
            "SELECT recv_time FROM events WHERE delivered_at IS NULL ORDER BY seq LIMIT 1").fetchone()
        return self._undelivered, row[0] if row else None

    def last_seq(self) -> int:
        return self._next_seq - 1

    def used_bytes(self) -> int:
        conn = self._conn()
        pages = conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int(pages * conn.execute("PRAGMA page_size").fetchone()[0])

    def meta(self, key: str) -> str | None:
        row = self._conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str, *, replace: bool = True) -> bool:
        """Store a setting; False (counted, not raised) when the disk is full."""
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        with self._write_lock:
            try:
                self._conn().execute(f"{verb} INTO meta VALUES (?, ?)", (key, value))
            except sqlite3.OperationalError as exc:
                if "full" not in str(exc).lower():
                    raise SpoolError(f"cannot write: {exc}", where=str(self.path)) from None
                self.counters.disk_full += 1
                self.counters.last_error = f"disk full: {exc}"
                return False
        return True

    def status(self) -> dict[str, Any]:
        rows, oldest = self.backlog()
        c = self.counters
        return {
            "path": str(self.path), "last_seq": self.last_seq(), "backlog_rows": rows,
            "backlog_oldest": oldest, "used_bytes": self.used_bytes(), "max_bytes": self.policy.max_bytes,
            "policy": self.policy.full_policy, "full": c.full_since is not None, "full_since": c.full_since,
            "appended": c.appended, "rejected": c.rejected, "dropped": c.dropped, "pruned": c.pruned,
            "corrupt_rows": c.corrupt_rows, "disk_full": c.disk_full, "last_error": c.last_error,
        }
