"""Writing the spool: appending batches (bounded: delivered rows go first, then the policy), recording
deliveries, pruning by age, settings. A full spool or a full disk is never a crash: the policy
decides, the counters tell."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence

from gateway.errors import SpoolError
from gateway.spool.schema import NewEvent, Row, crc, ranges, transaction
from gateway.spool.state import SpoolState

log = logging.getLogger(__name__)


class SpoolWriter(SpoolState):
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
                self.counters.by_kind.update(ev.kind for ev in events)
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
                        [(at, lo, hi) for lo, hi in ranges(seqs)]).rowcount
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

