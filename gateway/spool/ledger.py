"""The spool's ledger: the sequence numbers given, the delivery watermark ("every event up to N is in
Kafka, but those set aside"), and the count of undelivered events, kept as events come and go so the
status every second costs one lookup, not a scan of a spool that grows all session with Kafka off.

Numbers are reserved ``SEQ_RESERVE`` at a time (meta ``seq_reserved``), so a spool whose newest rows
are lost to damage never gives a number twice: consumers deduplicate by event id.
"""

from __future__ import annotations

import sqlite3

from gateway.spool.file import SpoolFile, disk_full
from gateway.spool.schema import transaction

# One small write every 25 s at 100 riders, where SQLite's AUTOINCREMENT rewrote a page at every commit.
SEQ_RESERVE = 10_000


class Ledger:
    def __init__(self, file: SpoolFile) -> None:
        self.file = file
        self.next_seq = 1
        self.seq_reserved = 0  # numbers up to here may have been given
        self.delivered = 0  # every event up to this sequence number is in Kafka (but set-aside ones)
        self.undelivered = 0

    def load(self) -> None:
        """At open: where numbering goes on, the watermark, the undelivered count (one scan)."""
        meta = self.file.meta
        self.delivered = int(meta("delivered_through") or 0)
        # A number once given is never given again, even when the newest rows are gone (delivered and
        # pruned, dropped for room: seq_floor; lost to damage: salvage sets seq_floor from the old
        # file's reservation).
        top = self.top()
        self.next_seq = max(top, self.delivered, int(meta("seq_floor") or 0)) + 1
        self.seq_reserved = int(meta("seq_reserved") or 0)
        self.undelivered = self.count(self.delivered, top) + self.set_aside_count()

    def load_readonly(self, version: int) -> None:
        self.next_seq = self.top() + 1
        if version >= 3:
            self.delivered = int(self.file.meta("delivered_through") or 0)

    def last_seq(self) -> int:
        return self.next_seq - 1

    def delivered_through(self) -> int:
        return self.delivered

    def reserve(self, count: int) -> int | None:
        """The new reservation to store with a commit of ``count`` events, if one is due."""
        top = self.next_seq + count - 1
        return top + SEQ_RESERVE if top > self.seq_reserved else None

    def given(self, count: int, reserve: int | None) -> None:
        """``count`` numbers were given and committed (with ``reserve``, if one was due)."""
        self.next_seq += count
        self.seq_reserved = reserve or self.seq_reserved
        self.undelivered += count

    def count(self, low: int, high: int) -> int:
        """Events with a sequence number in (``low``, ``high``]: rows, and samples in blocks (the
        blocks the range cuts through are counted from their index)."""
        return int(self.file.conn().execute(
            "SELECT (SELECT COUNT(*) FROM event_rows WHERE seq > ?1 AND seq <= ?2)"
            " + (SELECT COALESCE(SUM(n), 0) FROM blocks WHERE first_seq > ?1 AND last_seq <= ?2)"
            " + (SELECT COUNT(*) FROM blocks b, json_each(b.idx, '$.seq') s WHERE b.last_seq > ?1"
            "    AND b.first_seq <= ?2 AND (b.first_seq <= ?1 OR b.last_seq > ?2) AND s.value > ?1 AND s.value <= ?2)",
            (low, high)).fetchone()[0])

    def top(self) -> int:
        """The highest sequence number stored."""
        return int(self.file.conn().execute(
            "SELECT MAX(COALESCE((SELECT MAX(seq) FROM event_rows), 0), "
            "COALESCE((SELECT MAX(last_seq) FROM blocks), 0))").fetchone()[0])

    def set_aside_count(self) -> int:
        return int(self.file.conn().execute("SELECT COUNT(*) FROM set_aside").fetchone()[0])

    def mark_delivered_through(self, seq: int) -> bool:
        """Record that every event up to ``seq`` is in Kafka (but those set aside); False when the disk
        is full (the caller keeps the watermark and tries again: the events are sent again, never lost).

        One small row rewritten per call, whatever the number of events it covers: the SD card's share
        of a delivery is a few bytes a second, not a rewrite of every delivered row's page.
        """
        low = self.delivered
        if seq <= low:
            return True
        with self.file.write_lock:
            try:
                with transaction(self.file.conn()) as conn:
                    conn.execute("INSERT OR REPLACE INTO meta VALUES ('delivered_through', ?)", (str(seq),))
                    marked = self.count(low, seq) - conn.execute(
                        "SELECT COUNT(*) FROM set_aside WHERE seq > ? AND seq <= ?", (low, seq)).fetchone()[0]
            except sqlite3.OperationalError as exc:
                if not disk_full(exc):
                    raise
                self.file.counters.full(exc)
                return False
            self.delivered = seq
            self.undelivered -= marked
        return True

    def backlog(self) -> tuple[int, float | None]:
        """(undelivered events, receive time of the oldest one)."""
        row = self.file.conn().execute(
            "SELECT MIN(t) FROM (SELECT (SELECT recv_time FROM event_rows WHERE seq > ?1 ORDER BY seq LIMIT 1) AS t "
            "UNION ALL SELECT (SELECT recv_time FROM blocks WHERE last_seq > ?1 ORDER BY last_seq LIMIT 1) "
            "UNION ALL SELECT recv_time FROM event_rows WHERE seq IN (SELECT seq FROM set_aside) "
            "UNION ALL SELECT b.recv_time FROM blocks b, set_aside a WHERE a.seq BETWEEN b.first_seq AND b.last_seq)",
            (self.delivered,)).fetchone()
        return self.undelivered, row[0] if row else None
