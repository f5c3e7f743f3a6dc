"""Writing the spool: appending batches (bounded: delivered rows go first, then the policy), recording
deliveries, pruning by age, settings. A full spool or a full disk is never a crash: the policy
decides, the counters tell."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any

from gateway.errors import SpoolError
from gateway.spool.blocks import BLOCK_COLUMNS, Block, pack
from gateway.spool.schema import COLUMNS, NewEvent, NewRun, Row, crc, transaction
from gateway.spool.state import SpoolState

log = logging.getLogger(__name__)

# Sequence numbers are reserved this many at a time (meta seq_reserved), for a spool whose newest
# rows are lost to damage: one small write every 25 s at 100 riders, where SQLite's AUTOINCREMENT
# rewrote a page at every commit.
SEQ_RESERVE = 10_000
_KIND = itemgetter(0)
# A block is deleted only whole, so never while it holds a sample the broker refused.
_NO_SET_ASIDE = "NOT EXISTS (SELECT 1 FROM set_aside a WHERE a.seq BETWEEN blocks.first_seq AND blocks.last_seq)"


class SpoolWriter(SpoolState):
    def append(self, events: Sequence[NewEvent], now: float | None = None, runs: Sequence[NewRun] = ()) -> list[Row]:
        """Store ``events`` and ``runs`` in one transaction; returns the rows stored (all, or none if
        rejected): one per event, then one per run, its first sample's (the run's others follow it in
        sequence).

        Never raises for a full spool or a full disk: the policy decides, the counters tell.
        """
        if not events and not runs:
            return []
        now = time.time() if now is None else now
        in_runs = sum(len(run.columns[0]) for run in runs)
        count = len(events) + in_runs
        with self._write_lock:
            if self.intake_paused is not None:
                return self._reject(count, self.intake_paused)
            if self.used_bytes() >= self.policy.max_bytes and not self._make_room(count):
                return self._reject(count, "the spool is full")
            top = self._next_seq + count - 1
            reserve = top + SEQ_RESERVE if top > self._seq_reserved else None
            for attempt in range(2):
                rows, params, blocks = self._rows(events, runs, now)
                try:
                    self._insert(params, blocks, reserve)
                except sqlite3.OperationalError as exc:
                    if "full" not in str(exc).lower():
                        raise SpoolError(f"cannot write: {exc}", where=str(self.path)) from None
                    self.counters.disk_full += 1
                    self.counters.last_error = f"disk full: {exc}"
                    if attempt == 0 and self._make_room(count):
                        continue
                    return self._reject(count, f"no space left ({exc})")
                self._next_seq += count
                self._seq_reserved = reserve or self._seq_reserved
                self._undelivered += count
                self.counters.appended += count
                self.counters.by_kind.update(map(_KIND, events))  # counted in C
                if in_runs:
                    self.counters.by_kind["power"] += in_runs
                self.counters.full_since = None
                return rows
        return []  # pragma: no cover - the loop always returns

    def _rows(self, events: Sequence[NewEvent], runs: Sequence[NewRun],
              now: float) -> tuple[list[Row], list[tuple[Any, ...]], list[Block]]:
        """Rows with their Kafka message (gateway.wire), sequence numbers from the next free one; the
        INSERT parameters of the ones stored as rows (the message folded: see ``wire.Encoder``) and
        the blocks that store the power samples, one per session (see ``spool.blocks``)."""
        fold = self._encoder.fold
        make = tuple.__new__  # a NamedTuple's own constructor costs twice as much, once per event
        seq = self._next_seq
        rows = []
        params = []
        power: dict[str | None, tuple[list[int], list[str | None], list[float | None], list[bytes]]] = {}
        for kind, rider, session, wall, body in events:
            message, stored = fold(seq, session, body)
            check = crc(message)
            rows.append(make(Row, (seq, kind, rider, session, wall, now, message, check)))
            if kind == "power":
                members = power.get(session)
                if members is None:
                    members = power[session] = ([], [], [], [])
                seqs, riders, walls, messages = members
                seqs.append(seq)
                riders.append(rider)
                walls.append(wall)
                messages.append(message)
            else:
                params.append((seq, kind, rider, session, wall, now, stored, check))
            seq += 1
        for rider, session, name, source, columns in runs:
            n = len(columns[0])
            stream = self._encoder.power_run(seq, session, columns, name, rider, source)
            first = stream[:stream.find(b"\n")] if n > 1 else stream
            rows.append(make(Row, (seq, "power", rider, session, columns[0][0], now, first, crc(first))))
            members = power.get(session)
            if members is None:
                members = power[session] = ([], [], [], [])
            members[0].extend(range(seq, seq + n))
            members[1].extend([rider] * n)
            members[2].extend(columns[0])
            members[3].append(stream)  # the run's messages, already one per line
            seq += n
        blocks = [pack(*members, session, now) for session, members in power.items()]
        return rows, params, blocks

    def _insert(self, params: list[tuple[Any, ...]], blocks: list[Block], reserve: int | None) -> None:
        with transaction(self._conn()) as conn:
            if params:
                conn.executemany(f"INSERT INTO event_rows ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", params)
            if blocks:
                conn.executemany(f"INSERT INTO blocks ({BLOCK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", blocks)
            if reserve is not None:
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('seq_reserved', ?)", (str(reserve),))

    def _reject(self, count: int, why: str) -> list[Row]:
        self.counters.rejected += count
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
            "DELETE FROM event_rows WHERE seq IN (SELECT seq FROM event_rows WHERE seq <= ? "
            "AND seq NOT IN (SELECT seq FROM set_aside) ORDER BY seq LIMIT ?)",
            (self._delivered_through, max(wanted * 4, 1000))).rowcount
        freed += sum(n for (n,) in conn.execute(
            "DELETE FROM blocks WHERE last_seq IN (SELECT last_seq FROM blocks WHERE last_seq <= ? "
            f"AND {_NO_SET_ASIDE} ORDER BY last_seq LIMIT ?) RETURNING n",
            (self._delivered_through, max(wanted // 100, 10))).fetchall())
        self.counters.pruned += freed
        if freed:
            return True
        if self.policy.full_policy != "drop_oldest":
            return False
        # Dropping may take every row, the newest too: the numbers must go on from here.
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('seq_floor', ?)", (str(self._next_seq - 1),))
        # The oldest undelivered events, up to the end of the oldest block with any (a block goes whole).
        low = self._delivered_through
        block = conn.execute("SELECT last_seq FROM blocks WHERE last_seq > ? ORDER BY last_seq LIMIT 1",
                             (low,)).fetchone()
        row = conn.execute("SELECT seq FROM event_rows WHERE seq > ? ORDER BY seq LIMIT 1 OFFSET ?",
                           (low, max(wanted * 2, 500) - 1)).fetchone()
        cut = min(block[0] if block else self._next_seq, row[0] if row else self._next_seq)
        dropped = self._count(low, cut)
        conn.execute("DELETE FROM event_rows WHERE seq > ? AND seq <= ?", (low, cut))
        conn.execute("DELETE FROM blocks WHERE last_seq > ? AND last_seq <= ?", (low, cut))
        self._undelivered -= dropped
        if dropped:
            if self.counters.dropped == 0 or self.counters.full_since is None:
                log.error("spool %s: full of undelivered events: dropping the oldest (policy drop_oldest)",
                          self.path)
            self.counters.dropped += dropped
            self.counters.full_since = self.counters.full_since or time.time()
        return dropped > 0

    def mark_delivered_through(self, seq: int) -> bool:
        """Record that every row up to ``seq`` is in Kafka (but those set aside); False when the disk is
        full (the caller keeps the watermark and tries again: the rows are sent again, never lost).

        One small row rewritten per call, whatever the number of rows it covers: the SD card's share
        of a delivery is a few bytes a second, not a rewrite of every delivered row's page.
        """
        low = self._delivered_through
        if seq <= low:
            return True
        with self._write_lock:
            try:
                with transaction(self._conn()) as conn:
                    conn.execute("INSERT OR REPLACE INTO meta VALUES ('delivered_through', ?)", (str(seq),))
                    marked = self._count(low, seq) - conn.execute(
                        "SELECT COUNT(*) FROM set_aside WHERE seq > ? AND seq <= ?", (low, seq)).fetchone()[0]
            except sqlite3.OperationalError as exc:
                if "full" not in str(exc).lower():
                    raise
                self.counters.disk_full += 1
                self.counters.last_error = f"disk full: {exc}"
                return False
            self._delivered_through = seq
            self._undelivered -= marked
        return True

    def set_aside(self, seq: int, reason: str, at: float | None = None) -> bool:
        """Keep a row the broker refuses out of the uplink's way (it stays in the spool and the backlog)."""
        with self._write_lock:
            try:
                self._conn().execute("INSERT OR REPLACE INTO set_aside VALUES (?, ?, ?)",
                                     (seq, reason, time.time() if at is None else at))
            except sqlite3.OperationalError as exc:
                if "full" not in str(exc).lower():
                    raise
                self.counters.disk_full += 1
                return False
        return True

    def clear_set_aside(self, seq: int) -> None:
        """A set-aside row was delivered after all."""
        with self._write_lock:
            if self._conn().execute("DELETE FROM set_aside WHERE seq = ?", (seq,)).rowcount:
                self._undelivered -= 1

    def prune(self, now: float | None = None) -> int:
        """Delete delivered rows received longer ago than the retention period; returns how many."""
        now = time.time() if now is None else now
        with self._write_lock:
            conn = self._conn()
            # Rows arrive in receive-time order: the first young row bounds the delete, and finding it
            # reads only the rows about to go.
            young = conn.execute(
                "SELECT MIN(COALESCE((SELECT seq FROM event_rows WHERE seq <= ?1 AND recv_time >= ?2 ORDER BY seq "
                "LIMIT 1), ?1 + 1), COALESCE((SELECT first_seq FROM blocks WHERE last_seq <= ?1 AND recv_time >= ?2 "
                "ORDER BY last_seq LIMIT 1), ?1 + 1))",
                (self._delivered_through, now - self.policy.retention_s)).fetchone()
            below = young[0]
            n: int = conn.execute("DELETE FROM event_rows WHERE seq < ? AND seq NOT IN (SELECT seq FROM set_aside)",
                                  (below,)).rowcount
            n += sum(m for (m,) in conn.execute(
                f"DELETE FROM blocks WHERE last_seq < ? AND {_NO_SET_ASIDE} RETURNING n", (below,)).fetchall())
        self.counters.pruned += n
        return n

    # -- reading -------------------------------------------------------------------------------

    def save_meta(self, items: Mapping[str, str]) -> None:
        """Store settings in one transaction, or raise ``SpoolError`` saying why, with nothing stored:
        for what a coach is told is done (a session started or ended, a note), which must survive a
        restart or be refused."""
        with self._write_lock:
            try:
                with transaction(self._conn()) as conn:
                    conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(items.items()))
            except sqlite3.Error as exc:
                full = "full" in str(exc).lower()
                if full:
                    self.counters.disk_full += 1
                    self.counters.last_error = f"disk full: {exc}"
                raise SpoolError(f"{'the disk is full: ' if full else ''}nothing was saved ({exc})",
                                 where=str(self.path), hint="free space on the box's disk, then try again") from None

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

