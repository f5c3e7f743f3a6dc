"""Appending to the spool: a batch of events (and runs of power samples) in one transaction, with what
the events say of their session; bounded (delivered events go first, then the policy: ``reject``
new events or ``drop_oldest`` undelivered ones); and pruning by age. A full spool or a full disk is
never a crash: the policy decides, the counters tell."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import Any

from gateway.errors import SpoolError
from gateway.spool.blocks import BLOCK_COLUMNS, Block, pack
from gateway.spool.file import SpoolFile, disk_full
from gateway.spool.ledger import Ledger
from gateway.spool.schema import COLUMNS, NewEvent, NewRun, Row, crc, transaction
from gateway.wire import Encoder

log = logging.getLogger(__name__)

_KIND = itemgetter(0)
# A block is deleted only whole, so never while it holds a sample the broker refused.
_NO_SET_ASIDE = "NOT EXISTS (SELECT 1 FROM set_aside a WHERE a.seq BETWEEN blocks.first_seq AND blocks.last_seq)"
_Members = tuple[list[int], list[str | None], list[float | None], list[bytes]]


class Appender:
    def __init__(self, file: SpoolFile, ledger: Ledger, encoder: Encoder) -> None:
        self.file = file
        self.ledger = ledger
        self.counters = file.counters
        self.encoder = encoder  # made again with the spool's identity once it is open
        # Set (to the reason) while the disk is too full to take new events safely: what is stored
        # can still be read, sent and pruned.
        self.intake_paused: str | None = None

    def append(self, events: Sequence[NewEvent], now: float | None = None, runs: Sequence[NewRun] = (),
               meta: Mapping[str, str] | None = None) -> list[Row]:
        """Store ``events`` and ``runs`` in one transaction, with ``meta`` (what the events say of their
        session, kept with them: ``spool.sessions``); returns the rows stored (all, or none if
        rejected): one per event, then one per run, its first sample's (the run's others follow it in
        sequence)."""
        if not events and not runs:
            return []
        now = time.time() if now is None else now
        in_runs = sum(len(run.columns[0]) for run in runs)
        count = len(events) + in_runs
        with self.file.write_lock:
            if self.intake_paused is not None:
                return self._reject(count, self.intake_paused)
            if self.file.used_bytes() >= self.file.policy.max_bytes and not self._make_room(count):
                return self._reject(count, "the spool is full")
            reserve = self.ledger.reserve(count)
            for attempt in range(2):
                rows, params, blocks = self._rows(events, runs, now)
                try:
                    self._insert(params, blocks, reserve, meta)
                except sqlite3.OperationalError as exc:
                    if not disk_full(exc):
                        raise SpoolError(f"cannot write: {exc}", where=str(self.file.path)) from None
                    self.counters.full(exc)
                    if attempt == 0 and self._make_room(count):
                        continue
                    return self._reject(count, f"no space left ({exc})")
                self.ledger.given(count, reserve)
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
        INSERT parameters of the ones stored as rows (the message without its identity: see
        ``wire.Encoder.stored``) and the blocks that store the power samples, one per session."""
        for_spool = self.encoder.for_spool
        make = tuple.__new__  # a NamedTuple's own constructor costs twice as much, once per event
        seq = self.ledger.next_seq
        rows = []
        params = []
        power: dict[str | None, _Members] = {}
        for kind, rider, session, wall, body in events:
            message, stored = for_spool(seq, session, body)
            check = crc(message)
            rows.append(make(Row, (seq, kind, rider, session, wall, now, message, check)))
            if kind == "power":
                members = power.get(session)
                if members is None:
                    members = power[session] = ([], [], [], [])
                members[0].append(seq)
                members[1].append(rider)
                members[2].append(wall)
                members[3].append(message)
            else:
                params.append((seq, kind, rider, session, wall, now, stored, check))
            seq += 1
        for rider, session, name, source, columns in runs:
            n = len(columns[0])
            stream = self.encoder.power_run(seq, session, columns, name, rider, source)
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

    def _insert(self, params: list[tuple[Any, ...]], blocks: list[Block], reserve: int | None,
                meta: Mapping[str, str] | None) -> None:
        with transaction(self.file.conn()) as conn:
            if meta:
                conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(meta.items()))
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
                      self.file.path, why, self.file.policy.full_policy, self.counters.rejected)
        return []

    def _make_room(self, wanted: int) -> bool:
        """Free space for ``wanted`` events: delivered ones first, then the policy. True if room was made."""
        try:
            return self._delete_for_room(wanted)
        except sqlite3.OperationalError as exc:  # even a delete needs WAL space on a full disk
            self.counters.last_error = f"disk full: {exc}"
            return False

    def _delete_for_room(self, wanted: int) -> bool:
        conn = self.file.conn()
        delivered = self.ledger.delivered
        freed = conn.execute(
            "DELETE FROM event_rows WHERE seq IN (SELECT seq FROM event_rows WHERE seq <= ? "
            "AND seq NOT IN (SELECT seq FROM set_aside) ORDER BY seq LIMIT ?)",
            (delivered, max(wanted * 4, 1000))).rowcount
        freed += sum(n for (n,) in conn.execute(
            "DELETE FROM blocks WHERE last_seq IN (SELECT last_seq FROM blocks WHERE last_seq <= ? "
            f"AND {_NO_SET_ASIDE} ORDER BY last_seq LIMIT ?) RETURNING n",
            (delivered, max(wanted // 100, 10))).fetchall())
        self.counters.pruned += freed
        if freed:
            return True
        if self.file.policy.full_policy != "drop_oldest":
            return False
        return self._drop_oldest(conn, wanted) > 0

    def _drop_oldest(self, conn: sqlite3.Connection, wanted: int) -> int:
        next_seq = self.ledger.next_seq
        # Dropping may take every row, the newest too: the numbers must go on from here.
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('seq_floor', ?)", (str(next_seq - 1),))
        # The oldest undelivered events, up to the end of the oldest block with any (a block goes whole).
        low = self.ledger.delivered
        block = conn.execute("SELECT last_seq FROM blocks WHERE last_seq > ? ORDER BY last_seq LIMIT 1",
                             (low,)).fetchone()
        row = conn.execute("SELECT seq FROM event_rows WHERE seq > ? ORDER BY seq LIMIT 1 OFFSET ?",
                           (low, max(wanted * 2, 500) - 1)).fetchone()
        cut = min(block[0] if block else next_seq, row[0] if row else next_seq)
        dropped = self.ledger.count(low, cut)
        conn.execute("DELETE FROM event_rows WHERE seq > ? AND seq <= ?", (low, cut))
        conn.execute("DELETE FROM blocks WHERE last_seq > ? AND last_seq <= ?", (low, cut))
        self.ledger.undelivered -= dropped
        if dropped:
            if self.counters.dropped == 0 or self.counters.full_since is None:
                log.error("spool %s: full of undelivered events: dropping the oldest (policy drop_oldest)",
                          self.file.path)
            self.counters.dropped += dropped
            self.counters.full_since = self.counters.full_since or time.time()
        return dropped

    def prune(self, now: float | None = None) -> int:
        """Delete delivered events received longer ago than the retention period; returns how many."""
        now = time.time() if now is None else now
        with self.file.write_lock:
            conn = self.file.conn()
            # Rows arrive in receive-time order: the first young row bounds the delete, and finding it
            # reads only the rows about to go.
            young = conn.execute(
                "SELECT MIN(COALESCE((SELECT seq FROM event_rows WHERE seq <= ?1 AND recv_time >= ?2 ORDER BY seq "
                "LIMIT 1), ?1 + 1), COALESCE((SELECT first_seq FROM blocks WHERE last_seq <= ?1 AND recv_time >= ?2 "
                "ORDER BY last_seq LIMIT 1), ?1 + 1))",
                (self.ledger.delivered, now - self.file.policy.retention_s)).fetchone()
            below = young[0]
            n: int = conn.execute("DELETE FROM event_rows WHERE seq < ? AND seq NOT IN (SELECT seq FROM set_aside)",
                                  (below,)).rowcount
            n += sum(m for (m,) in conn.execute(
                f"DELETE FROM blocks WHERE last_seq < ? AND {_NO_SET_ASIDE} RETURNING n", (below,)).fetchall())
        self.counters.pruned += n
        return n
