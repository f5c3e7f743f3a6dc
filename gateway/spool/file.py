"""The spool's file: its connections (one per thread: SQLite connections are not shared between
threads), its schema and migrations, how a full disk is recognised, and its settings table (``meta``).

Every other part of the spool reads and writes through a ``SpoolFile``; writes are serialised by
its one ``write_lock``.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sqlite3
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway.errors import SpoolError
from gateway.spool.schema import MIGRATIONS, SCHEMA_VERSION, compatible, transaction

log = logging.getLogger(__name__)

ROOM_BYTES = 1024 * 1024  # free space that takes a few commits: below it a disk is still "full"
SQLITE_FULL = 13


def disk_full(exc: sqlite3.Error) -> bool:
    """The one test for a full disk (or a file at SQLite's size limit): SQLITE_FULL, by its code."""
    return (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF == SQLITE_FULL


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

    def full(self, exc: sqlite3.Error) -> None:
        self.disk_full += 1
        self.last_error = f"disk full: {exc}"


@dataclass
class Policy:
    max_bytes: int = 1024 * 1024 * 1024
    retention_s: float = 72 * 3600.0
    full_policy: str = "reject"
    synchronous: str = "NORMAL"


IDLE_KEPT = 4  # connections kept for threads that come and go


class SpoolFile:
    """One SQLite file; safe to use from several threads."""

    def __init__(self, path: Path, policy: Policy, counters: SpoolCounters, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.policy = policy
        self.counters = counters
        self.readonly = readonly  # for `export` and other readers: never migrates, salvages or writes
        self.write_lock = threading.Lock()
        self.opened = False
        self.compat: list[str] = []  # a reader's stand-ins for what an older file lacks (schema.compatible)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._idle: list[sqlite3.Connection] = []  # released by threads that come and go (the page's)
        self._conn_lock = threading.Lock()

    # -- connections ---------------------------------------------------------------------------

    def conn(self) -> sqlite3.Connection:
        """This thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if not self.opened:
                raise SpoolError("the spool is not open", where=str(self.path))
            with self._conn_lock:
                conn = self._idle.pop() if self._idle else None
            self._local.conn = conn = conn or self._connect()
        return conn

    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30.0, isolation_level=None,
                                   check_same_thread=False)
        else:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
        for statement in self.compat:
            conn.execute(statement)
        conn.execute(f"PRAGMA synchronous={self.policy.synchronous}")
        conn.execute("PRAGMA busy_timeout=30000")
        # A small page cache per connection: several threads hold one, and the box has little RAM.
        # 256 KB: a reader's cache is emptied at each of the writer's commits anyway (WAL), and the
        # writer's inserts were as fast as with 1 MB (tools/bench spool: 260 287 against 258 578
        # ev/s); 1 MB each held 3 MB more of the box's memory (tools/bench daemon, 5 minutes in).
        conn.execute("PRAGMA cache_size=-256")
        with self._conn_lock:
            self._connections.append(conn)
        return conn

    def release_thread(self) -> None:
        """Give up the calling thread's connection: a thread that ends (a finished replay's ingest) or
        a request that is answered must not keep a connection. A few are kept idle for the next
        thread to take: the page's requests run on any of the web server's 80 threads, and a
        connection each (112 KB of SQLite's before any page is cached) grew the box by 8 MB."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            return
        self._local.conn = None
        with self._conn_lock:
            if conn in self._connections and not conn.in_transaction and len(self._idle) < IDLE_KEPT:
                self._idle.append(conn)
                return
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
            self._idle.clear()
        self._local = threading.local()
        self.opened = False

    # -- schema --------------------------------------------------------------------------------

    def version(self) -> int:
        return int(self.conn().execute("PRAGMA user_version").fetchone()[0])

    def check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise SpoolError(f"the spool has schema version {version}, newer than this gateway's "
                             f"{SCHEMA_VERSION}", where=str(self.path),
                             hint="upgrade the gateway, or move the file aside to start a new spool")

    def migrate(self) -> None:
        conn = self.conn()
        version = self.version()
        self.check_version(version)
        if version == 0:  # a new file: made at this schema in one step, said in one line (not eight)
            with transaction(conn):
                for target in range(1, SCHEMA_VERSION + 1):
                    _apply(conn, target)
            log.info("spool %s: created (schema %d)", self.path, SCHEMA_VERSION)
            return
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with transaction(conn):
                _apply(conn, target)
            log.info("spool %s: schema migrated to version %d", self.path, target)

    def open_readonly(self) -> int:
        """Open for reading only; returns the file's schema version (older ones are read as they are)."""
        if not self.path.is_file():
            raise SpoolError("no spool here", where=str(self.path), hint="give the gateway's state directory")
        self.opened = True
        try:
            version = self.version()
            self.compat = compatible(version)
            for statement in self.compat:
                self.conn().execute(statement)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise SpoolError(f"cannot read the spool: {exc}", where=str(self.path)) from None
        self.check_version(version)
        return version

    # -- size ----------------------------------------------------------------------------------

    def used_bytes(self) -> int:
        conn = self.conn()
        pages = conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int(pages * conn.execute("PRAGMA page_size").fetchone()[0])

    def room_again(self) -> bool:
        """Below its cap, on a disk with room for a commit's worth: "full" no longer holds (before, the
        status said full until the next write, long after the disk was freed)."""
        try:
            free = shutil.disk_usage(self.path.parent).free
        except OSError:
            return False
        return self.used_bytes() < self.policy.max_bytes and free > ROOM_BYTES

    # -- settings (the meta table) -------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self.conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def meta_prefixed(self, prefix: str) -> dict[str, str]:
        """Every value whose key starts with ``prefix``."""
        rows = self.conn().execute("SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?",
                                   (len(prefix), prefix)).fetchall()
        return {k: v for k, v in rows}

    def save_meta(self, items: Mapping[str, str]) -> None:
        """Store settings in one transaction, or raise ``SpoolError`` saying why, with nothing stored:
        for what a coach is told is done (a session started or ended, a note), which must survive a
        restart or be refused."""
        with self.write_lock:
            try:
                with transaction(self.conn()) as conn:
                    conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(items.items()))
            except sqlite3.Error as exc:
                full = disk_full(exc)
                if full:
                    self.counters.full(exc)
                raise SpoolError(f"{'the disk is full: ' if full else ''}nothing was saved ({exc})",
                                 where=str(self.path), hint="free space on the box's disk, then try again") from None

    def set_meta(self, key: str, value: str, *, replace: bool = True) -> bool:
        """Store a setting; False (counted, not raised) when the disk is full."""
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        with self.write_lock:
            try:
                self.conn().execute(f"{verb} INTO meta VALUES (?, ?)", (key, value))
            except sqlite3.OperationalError as exc:
                if not disk_full(exc):
                    raise SpoolError(f"cannot write: {exc}", where=str(self.path)) from None
                self.counters.full(exc)
                return False
        return True


def _apply(conn: sqlite3.Connection, target: int) -> None:
    for statement in MIGRATIONS[target].split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version={target}")
