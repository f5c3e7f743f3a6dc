"""Reading the spool: undelivered rows for the uplink, rows since a sequence number for restore and
the page's catch-up, segment results by session, the backlog. A row whose checksum fails is
counted and skipped, never returned."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any

from gateway.spool.schema import KINDS, Row, crc
from gateway.spool.state import SpoolState

log = logging.getLogger(__name__)

Outgoing = tuple[int, str, str, bytes, int]  # seq, topic, key, whole message, its CRC
_MESSAGE, _CRC = itemgetter(3), itemgetter(4)


class SpoolReader(SpoolState):
    def undelivered(self, after_seq: int = 0, limit: int = 1000) -> list[Row]:
        """Undelivered rows in order after ``after_seq``; a row whose CRC fails is counted, not returned."""
        cur = self._conn().execute(
            f"SELECT {self._columns} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (max(after_seq, self._delivered_through), limit))
        return self._checked(cur)

    def outgoing(self, after_seq: int, limit: int, topics: Mapping[str, str]) -> list[Outgoing]:
        """What the uplink sends next: (seq, topic, key, message, CRC) of the undelivered rows after
        ``after_seq``, with ``topics`` naming each kind's topic.

        The key keeps a rider's events in order within a partition; session records are keyed by
        session (their topic is compacted). Leaner than ``undelivered`` (no Row per message): the
        uplink reads every event once more, and a backlog of an hour is 1.44 M of them.
        """
        rows = self._conn().execute(
            "SELECT seq, CASE kind WHEN 'power' THEN ?1 WHEN 'crossing' THEN ?2 WHEN 'segment' THEN ?3 ELSE ?4 END, "
            f"COALESCE(CASE kind WHEN 'session' THEN session_id ELSE rider_id END, 'unknown'), {self._whole}, crc "
            "FROM events WHERE seq > ?5 ORDER BY seq LIMIT ?6",
            (topics["power"], topics["crossing"], topics["segment"], topics["session"],
             max(after_seq, self._delivered_through), limit)).fetchall()
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

    def set_aside_rows(self) -> list[Row]:
        """Rows the broker refused (kept, counted in the backlog, offered again when the uplink starts)."""
        return self._checked(self._conn().execute(
            f"SELECT {self._columns} FROM events WHERE seq IN (SELECT seq FROM set_aside) ORDER BY seq"))

    def set_aside_count(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM set_aside").fetchone()[0])

    def delivered_through(self) -> int:
        return self._delivered_through

    def segment_rows(self, session_id: str) -> list[Row]:
        """Every segment result of a session, in order (through the partial index of version 2)."""
        return self._checked(self._conn().execute(
            f"SELECT {self._columns} FROM events "
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
                f"SELECT {self._columns} FROM events "
                f"WHERE {where} ORDER BY seq LIMIT {int(batch)}", params)
            rows = self._checked(cur)
            if not rows:
                return
            yield from rows
            last = rows[-1].seq

    def _checked(self, cur: sqlite3.Cursor) -> list[Row]:
        """Rows whose whole message passes its checksum (a damaged one is counted, not returned)."""
        rows = cur.fetchall()
        make = tuple.__new__
        # A damaged file can hand back NULL or text where the message was: counted, never sent.
        good = [make(Row, r) for r in rows if isinstance(r[6], bytes) and crc(r[6]) == r[7]]
        if len(good) < len(rows):
            for r in rows:
                if not isinstance(r[6], bytes) or crc(r[6]) != r[7]:
                    self._count_corrupt(r[0])
        return good

    def _count_corrupt(self, seq: int) -> None:
        self.counters.corrupt_rows += 1
        log.error("spool %s: row %d fails its checksum; skipped", self.path, seq)

    def backlog(self) -> tuple[int, float | None]:
        """(undelivered rows, receive time of the oldest one).

        The count is kept as rows come and go (counted once at open), so the status every second
        costs one lookup, not a scan of a spool that grows all session with Kafka off.
        """
        row = self._conn().execute(
            "SELECT MIN(t) FROM (SELECT (SELECT recv_time FROM events WHERE seq > ? ORDER BY seq LIMIT 1) AS t "
            "UNION ALL SELECT recv_time FROM events WHERE seq IN (SELECT seq FROM set_aside))",
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

