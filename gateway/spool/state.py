"""What every part of the spool shares: the file, the policy, the counters, and a connection per thread
(SQLite connections are not shared between threads; writes are serialised by one lock)."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from gateway.errors import SpoolError
from gateway.spool.schema import read_columns, whole_sql
from gateway.wire import Encoder


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
    # Events stored, by kind (live and replays alike): the operator's metrics.
    by_kind: Counter[str] = field(default_factory=Counter)


@dataclass
class Policy:
    max_bytes: int = 1024 * 1024 * 1024
    retention_s: float = 72 * 3600.0
    full_policy: str = "reject"
    synchronous: str = "NORMAL"


@dataclass
class SpoolState:
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
        self._seq_reserved = 0  # numbers up to here may have been given (meta seq_reserved)
        self._encoder = Encoder(self.gateway_id)  # made again with the spool's identity once it is open
        self.spool_id: str | None = None
        # How readers rebuild whole messages (spool.schema.whole_sql); set again once the spool is
        # open and knows from which row on this gateway numbered them.
        self._whole = whole_sql(None, 0)
        self._columns = read_columns(self._whole)
        self._undelivered = 0
        self._delivered_through = 0  # every row up to this sequence number is in Kafka (but set-aside ones)
        self._opened = False
        self._compat: list[str] = []  # a reader's stand-ins for what an older file lacks (schema.compatible)
        # Set (to the reason) while the disk is too full to take new events safely: what is stored
        # can still be read, sent and pruned.
        self.intake_paused: str | None = None

    def _reading_from(self, gateway: str | None, since: int, spool: str | None) -> None:
        self._whole = whole_sql(gateway, since, spool=spool)
        self._columns = read_columns(self._whole)

    # -- connections ---------------------------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (recovery writes salvaged rows through it)."""
        return self._conn()

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
        for statement in self._compat:
            conn.execute(statement)
        conn.execute(f"PRAGMA synchronous={self.policy.synchronous}")
        conn.execute("PRAGMA busy_timeout=30000")
        # A small page cache per connection: several threads hold one, and the box has little RAM.
        conn.execute("PRAGMA cache_size=-1024")
        with self._conn_lock:
            self._connections.append(conn)
        return conn

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

    def _count(self, low: int, high: int) -> int:
        """Events with a sequence number in (``low``, ``high``]: rows, and samples in blocks (the
        blocks the range cuts through are counted from their index)."""
        conn = self._conn()
        return int(conn.execute(
            "SELECT (SELECT COUNT(*) FROM event_rows WHERE seq > ?1 AND seq <= ?2)"
            " + (SELECT COALESCE(SUM(n), 0) FROM blocks WHERE first_seq > ?1 AND last_seq <= ?2)"
            " + (SELECT COUNT(*) FROM blocks b, json_each(b.idx, '$.seq') s WHERE b.last_seq > ?1"
            "    AND b.first_seq <= ?2 AND (b.first_seq <= ?1 OR b.last_seq > ?2) AND s.value > ?1 AND s.value <= ?2)",
            (low, high)).fetchone()[0])

    def _top(self) -> int:
        """The highest sequence number stored."""
        return int(self._conn().execute(
            "SELECT MAX(COALESCE((SELECT MAX(seq) FROM event_rows), 0), "
            "COALESCE((SELECT MAX(last_seq) FROM blocks), 0))").fetchone()[0])

    # -- writing -------------------------------------------------------------------------------

    def used_bytes(self) -> int:
        conn = self._conn()
        pages = conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int(pages * conn.execute("PRAGMA page_size").fetchone()[0])
