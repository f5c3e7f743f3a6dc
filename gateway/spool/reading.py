"""How the spool's readers (the outbox, the queries) read events back: rows with their whole Kafka
message rebuilt by SQLite, power samples from their blocks, each checked against its CRC. This is
the one checksum filter: a damaged row or block is counted and logged here, never returned.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from operator import itemgetter
from typing import Any, TypeVar

from gateway.spool.blocks import Members, unpack
from gateway.spool.file import SpoolFile
from gateway.spool.schema import Row, crc, message_sql, read_columns
from gateway.wire import SCHEMA

log = logging.getLogger(__name__)

_MESSAGE, _CRC = itemgetter(3), itemgetter(4)
T = TypeVar("T", bound=tuple)  # type: ignore[type-arg]
Block = tuple[Members, str | None, float, int]  # samples, session, receive time, index of the first one wanted


def _merged(items: list[T], cut: int | None, block_cut: int | None, limit: int) -> list[T]:
    """Rows and block samples in sequence order, up to where both sources were read completely."""
    items.sort()
    ends = [c for c in (cut, block_cut) if c is not None]
    if ends:
        end = min(ends)
        items = [t for t in items if t[0] <= end]
    return items[:limit]


class Reading:
    def __init__(self, file: SpoolFile) -> None:
        self.file = file
        self.read_from(None, 0, None, SCHEMA)

    def read_from(self, gateway: str | None, since: int, spool: str | None, wire: int) -> None:
        """How whole messages are rebuilt (``schema.message_sql``): rows from ``since`` on were numbered
        by ``gateway`` in spool ``spool`` under wire schema ``wire``."""
        self.message = message_sql(gateway, since, spool=spool, wire=wire)
        self.columns = read_columns(self.message)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """One read transaction for the rows and the blocks: a commit landing between the two reads
        would otherwise show its block without its rows, and the uplink would pass them by."""
        conn = self.file.conn()
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    # -- the checksum filter -------------------------------------------------------------------

    def good(self, rows: list[Any], message: int, check: int) -> list[Any]:
        """The rows whose bytes at index ``message`` pass the CRC at index ``check``; the others are
        counted and logged. A damaged file can hand back NULL or text where the message was."""
        try:  # every checksum at C speed, the rows as they came: the common case
            if list(map(crc, map(itemgetter(message), rows))) == list(map(itemgetter(check), rows)):
                return rows
        except TypeError:  # a NULL or text where a message was: damage, found below
            pass
        good = []
        for r in rows:
            if isinstance(r[message], bytes) and crc(r[message]) == r[check]:
                good.append(r)
            else:
                self.corrupt(r[0])
        return good

    def corrupt(self, seq: int, n: int = 1) -> None:
        self.file.counters.corrupt_rows += n
        if n == 1:
            log.error("spool %s: row %d fails its checksum; skipped", self.file.path, seq)
        else:
            log.error("spool %s: the block of %d power samples ending at %d fails its checksum; skipped",
                      self.file.path, n, seq)

    def rows(self, cur: sqlite3.Cursor | list[Any]) -> list[Row]:
        """Checked ``Row`` records from a cursor (or fetched rows) over ``columns``."""
        make = tuple.__new__
        fetched = cur if isinstance(cur, list) else cur.fetchall()
        return [make(Row, r) for r in self.good(fetched, 6, 7)]

    # -- rows and blocks -----------------------------------------------------------------------

    def blocks(self, after: int, limit: int, session_id: str | None) -> tuple[list[Block], int | None]:
        """Blocks of power samples after ``after`` in order, holding at least ``limit`` samples when
        there are; and the last sequence number they cover when more may follow (None when none do)."""
        where = "last_seq > ?" + (" AND session_id = ?" if session_id is not None else "")
        params: list[Any] = [after] + ([session_id] if session_id is not None else [])
        out: list[Block] = []
        count = 0
        # Stepped one block at a time: a block of a backlog holds thousands of samples, and the ones
        # after the limit are not read. The index and the samples are read as bytes whatever their
        # stored type: one flipped bit in a record's header makes a BLOB text, which Python's sqlite3
        # cannot even hand back, and the whole read would fail instead of the one block.
        for last, first, n, session, recv, idx, data, check in self.file.conn().execute(
                "SELECT last_seq, first_seq, n, session_id, recv_time, CAST(idx AS BLOB), CAST(data AS BLOB), "
                f"crc FROM blocks WHERE {where} ORDER BY last_seq", params):
            members = unpack(idx, data, check)
            if members is None:
                self.corrupt(last, n)
                continue
            start = 0 if first > after else bisect_right(members.seqs, after)
            out.append((members, session, recv, start))
            count += len(members.seqs) - start
            if count >= limit:
                return out, last
        return out, None

    def rows_after(self, after: int, limit: int, kinds: Sequence[str], session_id: str | None) -> list[Row]:
        """Up to ``limit`` events after ``after`` of ``kinds`` (and ``session_id``), rows and block
        samples merged in sequence order, in one snapshot. Samples stored before schema 7 are rows."""
        with self.snapshot():
            marks = ",".join("?" * len(kinds))
            where = f"seq > ? AND kind IN ({marks})" + (" AND session_id = ?" if session_id is not None else "")
            params: list[Any] = [after, *kinds] + ([session_id] if session_id is not None else [])
            raw = self.file.conn().execute(f"SELECT {self.columns} FROM event_rows WHERE {where} ORDER BY seq "
                                           f"LIMIT {int(limit)}", params).fetchall()
            cut = raw[-1][0] if len(raw) == limit else None
            rows = self.rows(raw)
            if "power" not in kinds:
                return rows
            blocks, block_cut = self.blocks(after, limit, session_id)
        make = tuple.__new__
        for m, session, recv, start in blocks:
            rows += [make(Row, (seq, "power", rider, session, wall, recv, message, crc(message)))
                     for seq, rider, wall, message
                     in zip(m.seqs[start:], m.riders[start:], m.walls[start:], m.messages[start:], strict=True)]
        return _merged(rows, cut, block_cut, limit)
