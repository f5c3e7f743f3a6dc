"""Start-up integrity check of the spool; a corrupt file is moved aside and its readable rows salvaged.

Never a crash loop: whatever the state of the file, the gateway starts with a healthy spool, and
the log says what was found, where the damaged file went and how many rows were saved or lost.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

from gateway.spool.blocks import BLOCK_COLUMNS, unpack
from gateway.spool.file import SpoolFile
from gateway.spool.schema import COLUMNS, SEQUENCE_PARKED, crc, message_sql, transaction

log = logging.getLogger(__name__)

SIDE_FILES = ("-wal", "-shm")


# Only these mean the file itself is damaged; anything else (no permission, locked, I/O) is a
# problem around a file that may be perfectly healthy, and salvaging it would orphan its backlog.
# SQLITE_TOOBIG too: a damaged record header can claim a value larger than SQLite's limit, and the
# check then stops with "string or blob too big" (seen with random bytes over one page: the box
# refused to start instead of salvaging).
CORRUPTION_CODES = {11, 18, 26}  # SQLITE_CORRUPT, SQLITE_TOOBIG, SQLITE_NOTADB


def check_openable(path: Path) -> None:
    """Raise SpoolError (file untouched) when the spool exists but this process cannot use it."""
    import os

    from gateway.errors import SpoolError

    for target in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if target.exists() and not os.access(target, os.R_OK | os.W_OK):
            st = target.stat()
            raise SpoolError(f"cannot open the spool: no permission to read and write {target.name} (owner uid "
                             f"{st.st_uid}, mode {st.st_mode & 0o777:o}; this process runs as uid {os.getuid()})",
                             where=str(path), hint="give the file to the gateway's user (chown), or run the "
                                                    "gateway as that user; the file was left as it is")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise SpoolError("cannot write in the spool's directory", where=str(path.parent),
                         hint="give the directory to the gateway's user")


def _disk_full(path: Path) -> bool:
    import shutil

    return shutil.disk_usage(path.parent).free < 64 * 1024


def integrity_problem(path: Path) -> str | None:
    """None if ``path`` is a sound SQLite database (or absent), else what is wrong with it.

    Raises SpoolError for a file that cannot be checked (locked, unreadable): that is not corruption.
    """
    from gateway.errors import SpoolError

    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            result = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        code = getattr(exc, "sqlite_errorcode", None)
        if code in CORRUPTION_CODES:
            return str(exc)
        if code is not None and code & 0xFF == 10 and _disk_full(path):
            # SQLITE_IOERR creating the read-only check's shared-memory file on a full disk: the
            # file may be fine, and the daemon starts degraded; the check runs at the next start.
            log.warning("spool %s: the disk is full: integrity check skipped", path)
            return None
        locked = code is not None and code & 0xFF in (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED
        raise SpoolError(f"cannot open the spool: {exc}", where=str(path),
                         hint=("is another program using it? " if locked else "") + "the file was left as it is"
                         ) from None
    if result == ["ok"]:
        return None
    lines = [line for r in result for line in str(r).splitlines() if not line.startswith("***")]
    return lines[0] + (f" (and {len(lines) - 1} more problems)" if len(lines) > 1 else "")


def quarantine(path: Path) -> Path:
    """Move the database and its WAL side files aside under one new name; return that name."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    path.rename(target)
    for suffix in SIDE_FILES:
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(target.with_name(target.name + suffix))
    return target


_COLUMNS = COLUMNS + ", delivered_at"


def _probe(src: sqlite3.Connection, table: str, message: str, lo: int, hi: int) -> list[tuple[object, ...]]:
    out = []
    for seq in range(lo, hi + 1):
        try:
            out += src.execute(f"SELECT {_COLUMNS}, {message} FROM {table} WHERE seq = ?", (seq,)).fetchall()
        except sqlite3.DatabaseError:
            continue
    return out


def _gateways(src: sqlite3.Connection) -> list[tuple[int, str, str | None, int]]:
    try:
        return src.execute("SELECT first_seq, gateway_id, spool_id, wire FROM gateways").fetchall()
    except sqlite3.DatabaseError:
        pass
    # A spool older than the columns (spool_id: schema 9, wire: 10): a table with them shadows it.
    for spool_id in ("spool_id", "NULL AS spool_id"):
        try:
            src.execute("DROP TABLE IF EXISTS temp.gateways")
            src.execute(f"CREATE TEMP TABLE gateways AS SELECT first_seq, gateway_id, {spool_id}, 3 AS wire "
                        "FROM main.gateways")
            return src.execute("SELECT first_seq, gateway_id, spool_id, wire FROM gateways").fetchall()
        except sqlite3.DatabaseError:
            continue
    # Older still, or the table is damaged: an empty one stands in.
    src.execute("DROP TABLE IF EXISTS temp.gateways")
    src.execute("CREATE TEMP TABLE gateways (first_seq INTEGER PRIMARY KEY, gateway_id TEXT NOT NULL, "
                "spool_id TEXT, wire INTEGER)")
    return []


def _spool_identity(src: sqlite3.Connection) -> list[tuple[str, str]]:
    """The damaged file's own identity, kept by the new file: its numbers go on, so its stream does."""
    try:
        return [(str(k), str(v)) for k, v in src.execute("SELECT key, value FROM meta WHERE key = 'spool_id'")]
    except sqlite3.DatabaseError:
        return []  # lost with the damage: the new file gets an identity of its own, a new stream


def salvage(corrupt: Path, dst: sqlite3.Connection, budget_s: float = 120.0) -> tuple[int, int]:
    """Copy every readable, checksum-valid row of ``corrupt`` into ``spool``; (saved, lost).

    Walks the table in sequence order; where a damaged page makes a read fail, it steps past the
    damage (1, 2, 4, ... sequence numbers) and reads on. ``lost`` counts the sequence numbers
    between the first and last saved rows that could not be saved. A time budget (enforced inside
    SQLite too) bounds the work whatever the damage.
    """

    deadline = time.monotonic() + budget_s
    try:
        src = sqlite3.connect(f"file:{corrupt}?mode=ro", uri=True, timeout=10)
    except sqlite3.DatabaseError:
        return 0, 0
    src.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    # Rows of schema 6 name no gateway: the table that does comes first (without it, they cannot be
    # rebuilt, so their checksums fail and they are counted lost).
    try:
        named = _gateways(src)
    except sqlite3.DatabaseError:  # not even that: nothing to salvage
        src.close()
        return 0, 0
    with transaction(dst):
        dst.executemany("INSERT OR REPLACE INTO gateways (first_seq, gateway_id, spool_id, wire) VALUES (?, ?, ?, ?)",
                        named)
        dst.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", _spool_identity(src))
    try:
        table = "event_rows" if _has_table(src, "event_rows") else "events"  # renamed in schema 7
        blocks = _salvage_blocks(src, dst, deadline) if _has_table(src, "blocks") else (0, None, None)
        rows = _salvage_rows(src, dst, table, deadline)
        saved = blocks[0] + rows[0]
        firsts = [f for f in (blocks[1], rows[1]) if f is not None]
        lasts = [f for f in (blocks[2], rows[2]) if f is not None]
        given = max(_numbers_given(src), *lasts, 0)
        with transaction(dst):
            dst.execute("INSERT OR REPLACE INTO meta VALUES ('seq_floor', ?)", (str(given),))
    finally:
        src.close()
    lost = (max(lasts) - min(firsts) + 1 - saved) if firsts and lasts else 0
    return saved, lost


def _salvage_rows(src: sqlite3.Connection, dst: sqlite3.Connection, table: str, deadline: float
                  ) -> tuple[int, int | None, int | None]:
    """Copy every readable, checksum-valid row; (rows saved, first and last sequence number)."""
    message = message_sql(None, 0, table)
    saved, first, last_good = 0, None, None
    last, skip = -(2**63), 1
    gap_start: int | None = None
    while time.monotonic() < deadline:
        try:
            rows = src.execute(f"SELECT {_COLUMNS}, {message} FROM {table} WHERE seq > ? ORDER BY seq LIMIT 500",
                               (last,)).fetchall()
        except sqlite3.DatabaseError:
            if last == -(2**63):
                break  # not even the start of the table can be read
            gap_start = last if gap_start is None else gap_start
            last, skip = last + skip, skip * 2
            if skip > 2**32:
                break
            continue
        if gap_start is not None:
            # The skip may have jumped over readable rows beyond the damage: look them up one by one.
            rows = _probe(src, table, message, gap_start + 1, min(last, gap_start + 100_000)) + rows
            gap_start = None
        if not rows:
            break
        # The checksum is of the whole message (the last column); the row is copied as stored.
        good = [r[:9] for r in rows if isinstance(r[0], int) and isinstance(r[9], bytes) and crc(r[9]) == r[7]]
        if good:
            with transaction(dst):
                dst.executemany(f"INSERT OR IGNORE INTO event_rows ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                good)
            saved += len(good)
            first = good[0][0] if first is None else min(first, good[0][0])
            last_good = max(last_good or good[-1][0], good[-1][0])
            last, skip = good[-1][0], 1
        else:
            last = rows[-1][0] if isinstance(rows[-1][0], int) else last + len(rows)
    return saved, first, last_good


def _has_table(src: sqlite3.Connection, name: str) -> bool:
    try:
        found = src.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
        return found is not None
    except sqlite3.DatabaseError:
        return False


def _salvage_blocks(src: sqlite3.Connection, dst: sqlite3.Connection, deadline: float
                    ) -> tuple[int, int | None, int | None]:
    """Copy every readable, checksum-valid block; (samples saved, first and last sequence number).

    The blocks' keys are read first (the table's tree without the samples' pages), then each block
    on its own, so damage costs the blocks it touches, not the ones after it."""
    try:
        keys = [k for (k,) in src.execute("SELECT last_seq FROM blocks ORDER BY last_seq").fetchall()]
    except sqlite3.DatabaseError:
        return 0, None, None  # not even the table's tree: its rows' walk above is all there is
    saved, first, last_good = 0, None, None
    for key in keys:
        if time.monotonic() >= deadline:
            break
        try:
            block = src.execute(f"SELECT {BLOCK_COLUMNS} FROM blocks WHERE last_seq = ?", (key,)).fetchone()
        except sqlite3.DatabaseError:
            continue
        if block is None or unpack(block[5], block[6], block[7]) is None:
            continue
        with transaction(dst):
            dst.execute(f"INSERT OR IGNORE INTO blocks ({BLOCK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", block)
        saved += block[2]
        first = block[1] if first is None else first
        last_good = block[0]
    return saved, first, last_good


def _numbers_given(src: sqlite3.Connection) -> int:
    """The highest sequence number the damaged file says it gave (its newest rows may be unreadable,
    and they may be in Kafka already: the new spool must not give their numbers again)."""
    best = 0
    for sql in ("SELECT seq FROM sqlite_sequence WHERE name = 'events'",
                "SELECT value FROM meta WHERE key IN ('seq_reserved', 'seq_floor', 'delivered_through')"):
        try:
            values = [int(v) for (v,) in src.execute(sql).fetchall()]
        except (sqlite3.DatabaseError, ValueError, TypeError):
            continue
        best = max([best, *(v for v in values if v < SEQUENCE_PARKED)])
    return best


def check_or_salvage(spool: SpoolFile) -> Path | None:
    """Quarantine a corrupt spool file before it is opened; returns where it went (or None)."""
    check_openable(spool.path)
    problem = integrity_problem(spool.path)
    if problem is None:
        return None
    moved = quarantine(spool.path)
    log.error("spool %s failed its integrity check (%s): moved to %s; starting a fresh spool and "
              "salvaging its readable rows", spool.path, problem, moved)
    spool.counters.last_error = f"corrupt spool moved to {moved.name}: {problem}"
    return moved
