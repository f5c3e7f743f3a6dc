"""Reading the spool: undelivered rows for the uplink, rows since a sequence number for restore and
the page's catch-up, segment results by session, the backlog. A row whose checksum fails is
counted and skipped, never returned."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from gateway.spool.schema import COLUMNS, KINDS, Row, crc
from gateway.spool.state import SpoolState

log = logging.getLogger(__name__)


class SpoolReader(SpoolState):
    def undelivered(self, after_seq: int = 0, limit: int = 1000) -> list[Row]:
        """Undelivered rows in order after ``after_seq``; a row whose CRC fails is counted, not returned."""
        cur = self._conn().execute(
            f"SELECT {COLUMNS} FROM events "
            "WHERE delivered_at IS NULL AND seq > ? ORDER BY seq LIMIT ?", (after_seq, limit))
        return self._checked(cur)

    def segment_rows(self, session_id: str) -> list[Row]:
        """Every segment result of a session, in order (through the partial index of version 2)."""
        return self._checked(self._conn().execute(
            f"SELECT {COLUMNS} FROM events "
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
                f"SELECT {COLUMNS} FROM events "
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

    def meta_prefixed(self, prefix: str) -> dict[str, str]:
        """Every meta value whose key starts with ``prefix`` (session records: ``session:``)."""
        rows = self._conn().execute("SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?",
                                    (len(prefix), prefix)).fetchall()
        return {k: v for k, v in rows}

    def meta(self, key: str) -> str | None:
        row = self._conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

