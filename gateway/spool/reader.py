"""Reading the spool: undelivered rows for the uplink, rows since a sequence number for restore and
the page's catch-up, segment results by session, the backlog. A row whose checksum fails is
counted and skipped, never returned."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from bisect import bisect_right
from collections.abc import Iterator, Mapping, Sequence
from itertools import repeat
from operator import itemgetter
from typing import Any, NamedTuple, TypeVar, cast

from gateway.spool.blocks import Members, unpack
from gateway.spool.schema import KINDS, Row, crc
from gateway.spool.state import SpoolState
from gateway.wire import KEY_SQL, key_of

log = logging.getLogger(__name__)

Outgoing = tuple[int, str, str, bytes, int]  # seq, topic, key, whole message, its CRC
_SEQ, _MESSAGE, _CRC = itemgetter(0), itemgetter(3), itemgetter(4)
T = TypeVar("T", bound=tuple)  # type: ignore[type-arg]


def _merged(items: list[T], cut: int | None, block_cut: int | None, limit: int) -> list[T]:
    """Rows and block samples in sequence order, up to where both sources were read completely."""
    items.sort()
    ends = [c for c in (cut, block_cut) if c is not None]
    if ends:
        end = min(ends)
        items = [t for t in items if t[0] <= end]
    return items[:limit]


class Samples(NamedTuple):
    """Power samples of one block, in order: their sequence numbers, keys (riders) and messages."""

    seqs: list[int]
    keys: list[str]
    messages: list[bytes]


class Pending(NamedTuple):
    """What the uplink sends next: rows one tuple each (crossings, results, sessions), power samples
    by block (all in ``power_topic``). Every event from the first to ``end`` is in it."""

    power_topic: str
    rows: list[Outgoing]
    samples: list[Samples]

    @property
    def size(self) -> int:
        return len(self.rows) + sum(len(s.seqs) for s in self.samples)

    @property
    def first(self) -> int:
        return min([r[0] for r in self.rows[:1]] + [s.seqs[0] for s in self.samples[:1]])

    @property
    def end(self) -> int:
        return max([r[0] for r in self.rows[-1:]] + [s.seqs[-1] for s in self.samples[-1:]])

    def flat(self, limit: int | None = None) -> list[Outgoing]:
        """One tuple per message, in sequence order (the careful path, and ``outgoing``)."""
        items = list(self.rows)
        for s in self.samples:  # the samples' CRC is their block's: 0 here
            items += zip(s.seqs, repeat(self.power_topic), s.keys, s.messages, repeat(0))
        items.sort(key=_SEQ)
        return items if limit is None else items[:limit]


class SpoolReader(SpoolState):
    def undelivered(self, after_seq: int = 0, limit: int = 1000) -> list[Row]:
        """Undelivered rows in order after ``after_seq``; a row whose CRC fails is counted, not returned."""
        return self._rows_after(max(after_seq, self._delivered_through), limit, KINDS, None)

    def outgoing(self, after_seq: int, limit: int, topics: Mapping[str, str]) -> list[Outgoing]:
        """What the uplink sends next, one tuple per message: (seq, topic, key, message, CRC) of the
        undelivered rows after ``after_seq``, at most ``limit``, with ``topics`` naming each kind's topic.

        The key keeps a rider's events in order within a partition; session records are keyed by
        session (their topic is compacted).
        """
        return self.pending(after_seq, limit, topics).flat(limit)

    def pending(self, after_seq: int, limit: int, topics: Mapping[str, str]) -> Pending:
        """What the uplink sends next, as ``outgoing`` but about ``limit`` messages (a block is cut
        only at a row's limit) and the power samples as their blocks' lists: the uplink offers a
        backlog of an hour, 1.44 M samples, without a tuple made per sample."""
        after = max(after_seq, self._delivered_through)
        with self._snapshot() as conn:
            rows = conn.execute(
                "SELECT seq, CASE kind WHEN 'power' THEN ?1 WHEN 'crossing' THEN ?2 WHEN 'segment' THEN ?3 "
                f"ELSE ?4 END, {KEY_SQL}, "
                f"{self._whole}, crc FROM event_rows WHERE seq > ?5 ORDER BY seq LIMIT ?6",
                (topics["power"], topics["crossing"], topics["segment"], topics["session"], after, limit)).fetchall()
            cut = rows[-1][0] if len(rows) == limit else None
            rows = self._good(rows)
            blocks, block_cut = self._blocks(after, limit, None)
        ends = [c for c in (cut, block_cut) if c is not None]
        end = min(ends) if ends else None
        if end is not None and rows and rows[-1][0] > end:
            rows = rows[:bisect_right(rows, end, key=_SEQ)]
        samples = []
        for m, _session, _recv, start in blocks:
            stop = len(m.seqs) if end is None else bisect_right(m.seqs, end, start)
            if stop > start:
                riders = m.riders[start:stop]
                keys = cast(list[str], riders) if None not in riders else [key_of("power", r, None) for r in riders]
                samples.append(Samples(m.seqs[start:stop], keys, m.messages[start:stop]))
        return Pending(topics["power"], rows, samples)

    def _good(self, rows: list[Outgoing]) -> list[Outgoing]:
        try:  # every checksum at C speed, the rows as they came: the common case
            if list(map(crc, map(_MESSAGE, rows))) == list(map(_CRC, rows)):
                return rows
        except TypeError:  # a NULL or text where a message was: damage, found below
            pass
        good = [r for r in rows if isinstance(r[3], bytes) and crc(r[3]) == r[4]]
        for r in rows:
            if not isinstance(r[3], bytes) or crc(r[3]) != r[4]:
                self._count_corrupt(r[0])
        return good

    def _blocks(self, after: int, limit: int, session_id: str | None
                ) -> tuple[list[tuple[Members, str | None, float, int]], int | None]:
        """Blocks of power samples after ``after`` in order, as (samples, session, receive time, index
        of the first sample after ``after``), holding at least ``limit`` samples when there are; and
        the last sequence number they cover when more may follow (None when none do)."""
        where = "last_seq > ?" + (" AND session_id = ?" if session_id is not None else "")
        params: list[Any] = [after] + ([session_id] if session_id is not None else [])
        out: list[tuple[Members, str | None, float, int]] = []
        count = 0
        # Stepped one block at a time: a block of a backlog holds thousands of samples, and the ones
        # after the limit are not read. The index and the samples are read as bytes whatever their
        # stored type: one flipped bit in a record's header makes a BLOB text, which Python's sqlite3
        # cannot even hand back, and the whole read would fail instead of the one block.
        for last, first, n, session, recv, idx, data, check in self._conn().execute(
                f"SELECT last_seq, first_seq, n, session_id, recv_time, CAST(idx AS BLOB), CAST(data AS BLOB), "
                f"crc FROM blocks "
                f"WHERE {where} ORDER BY last_seq", params):
            members = unpack(idx, data, check)
            if members is None:
                self._count_corrupt(last, n)
                continue
            start = 0 if first > after else bisect_right(members.seqs, after)
            out.append((members, session, recv, start))
            count += len(members.seqs) - start
            if count >= limit:
                return out, last
        return out, None

    def set_aside_rows(self) -> list[Row]:
        """Rows the broker refused (kept, counted in the backlog, offered again when the uplink starts)."""
        rows = self._checked(self._conn().execute(
            f"SELECT {self._columns} FROM event_rows WHERE seq IN (SELECT seq FROM set_aside) ORDER BY seq"))
        for (seq,) in self._conn().execute(
                "SELECT seq FROM set_aside WHERE seq NOT IN (SELECT seq FROM event_rows) ORDER BY seq").fetchall():
            rows += [r for r in self._rows_after(seq - 1, 1, ("power",), None) if r.seq == seq]
        return sorted(rows)

    def set_aside_count(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM set_aside").fetchone()[0])

    def delivered_through(self) -> int:
        return self._delivered_through

    def segment_rows(self, session_id: str) -> list[Row]:
        """Every segment result of a session, in order (through the partial index of version 2)."""
        return self._checked(self._conn().execute(
            f"SELECT {self._columns} FROM event_rows "
            "WHERE kind = 'segment' AND session_id = ? ORDER BY seq", (session_id,)))

    def segment_sessions(self) -> list[tuple[str, int, float | None, float | None]]:
        """(session, results, first, last) of every session with results, oldest first."""
        return self._conn().execute(
            "SELECT session_id, COUNT(*), MIN(wall_time), MAX(wall_time) FROM event_rows WHERE kind = 'segment' "
            "GROUP BY session_id ORDER BY MIN(seq)").fetchall()

    def since(self, after_seq: int, *, kinds: Sequence[str] = KINDS, session_id: str | None = None,
              batch: int = 5000) -> Iterator[Row]:
        """Every row after ``after_seq`` of the given kinds (and session), in order, in batches."""
        last = after_seq
        while True:
            rows = self._rows_after(last, batch, kinds, session_id)
            if not rows:
                return
            yield from rows
            last = rows[-1].seq

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """One read transaction for the rows and the blocks: a commit landing between the two reads
        would otherwise show its block without its rows, and the uplink would pass them by."""
        conn = self._conn()
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def _rows_after(self, after: int, limit: int, kinds: Sequence[str], session_id: str | None) -> list[Row]:
        with self._snapshot():
            return self._rows_after_in(after, limit, kinds, session_id)

    def _rows_after_in(self, after: int, limit: int, kinds: Sequence[str], session_id: str | None) -> list[Row]:
        """Up to ``limit`` rows after ``after`` of ``kinds`` (and ``session_id``), rows and block samples
        merged in sequence order. Power samples stored before schema 7 are rows too."""
        marks = ",".join("?" * len(kinds))
        where = f"seq > ? AND kind IN ({marks})" + (" AND session_id = ?" if session_id is not None else "")
        params: list[Any] = [after, *kinds] + ([session_id] if session_id is not None else [])
        raw = self._conn().execute(f"SELECT {self._columns} FROM event_rows WHERE {where} ORDER BY seq "
                                   f"LIMIT {int(limit)}", params).fetchall()
        cut = raw[-1][0] if len(raw) == limit else None
        rows = self._good_rows(raw)
        if "power" not in kinds:
            return rows
        blocks, block_cut = self._blocks(after, limit, session_id)
        make = tuple.__new__
        for m, session, recv, start in blocks:
            rows += [make(Row, (seq, "power", rider, session, wall, recv, message, crc(message)))
                     for seq, rider, wall, message
                     in zip(m.seqs[start:], m.riders[start:], m.walls[start:], m.messages[start:], strict=True)]
        return _merged(rows, cut, block_cut, limit)

    def _checked(self, cur: sqlite3.Cursor) -> list[Row]:
        return self._good_rows(cur.fetchall())

    def _good_rows(self, rows: list[Any]) -> list[Row]:
        """Rows whose whole message passes its checksum (a damaged one is counted, not returned)."""
        make = tuple.__new__
        # A damaged file can hand back NULL or text where the message was: counted, never sent.
        good = [make(Row, r) for r in rows if isinstance(r[6], bytes) and crc(r[6]) == r[7]]
        if len(good) < len(rows):
            for r in rows:
                if not isinstance(r[6], bytes) or crc(r[6]) != r[7]:
                    self._count_corrupt(r[0])
        return good

    def _count_corrupt(self, seq: int, n: int = 1) -> None:
        self.counters.corrupt_rows += n
        if n == 1:
            log.error("spool %s: row %d fails its checksum; skipped", self.path, seq)
        else:
            log.error("spool %s: the block of %d power samples ending at %d fails its checksum; skipped",
                      self.path, n, seq)

    def backlog(self) -> tuple[int, float | None]:
        """(undelivered rows, receive time of the oldest one).

        The count is kept as rows come and go (counted once at open), so the status every second
        costs one lookup, not a scan of a spool that grows all session with Kafka off.
        """
        row = self._conn().execute(
            "SELECT MIN(t) FROM (SELECT (SELECT recv_time FROM event_rows WHERE seq > ?1 ORDER BY seq LIMIT 1) AS t "
            "UNION ALL SELECT (SELECT recv_time FROM blocks WHERE last_seq > ?1 ORDER BY last_seq LIMIT 1) "
            "UNION ALL SELECT recv_time FROM event_rows WHERE seq IN (SELECT seq FROM set_aside) "
            "UNION ALL SELECT b.recv_time FROM blocks b, set_aside a WHERE a.seq BETWEEN b.first_seq AND b.last_seq)",
            (self._delivered_through,)).fetchone()
        return self._undelivered, row[0] if row else None

    def last_seq(self) -> int:
        return self._next_seq - 1

    def meta_prefixed(self, prefix: str) -> dict[str, str]:
        """Every meta value whose key starts with ``prefix`` (session records: ``session:``)."""
        rows = self._conn().execute("SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?",
                                    (len(prefix), prefix)).fetchall()
        return {k: v for k, v in rows}

    def meta(self, key: str) -> str | None:
        row = self._conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

