"""What the uplink reads from the spool: the undelivered events in order, as Kafka messages with
their topic and key; and the rows set aside (messages the broker refused, kept out of the way so
the watermark can pass them, counted in the backlog, offered again when the uplink starts)."""

from __future__ import annotations

import sqlite3
import time
from bisect import bisect_right
from collections.abc import Mapping
from itertools import repeat
from operator import itemgetter
from typing import NamedTuple, cast

from gateway.spool.file import disk_full
from gateway.spool.ledger import Ledger
from gateway.spool.reading import Reading
from gateway.spool.schema import KINDS, Row
from gateway.wire import KEY_SQL, key_of

Outgoing = tuple[int, str, str, bytes, int]  # seq, topic, key, whole message, its CRC
_SEQ = itemgetter(0)


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


class Outbox:
    def __init__(self, reading: Reading, ledger: Ledger) -> None:
        self.reading = reading
        self.ledger = ledger
        self.file = reading.file

    def undelivered(self, after_seq: int = 0, limit: int = 1000) -> list[Row]:
        """Undelivered events in order after ``after_seq``."""
        return self.reading.rows_after(max(after_seq, self.ledger.delivered), limit, KINDS, None)

    def outgoing(self, after_seq: int, limit: int, topics: Mapping[str, str]) -> list[Outgoing]:
        """What the uplink sends next, one tuple per message: (seq, topic, key, message, CRC) of the
        undelivered events after ``after_seq``, at most ``limit``, with ``topics`` naming each kind's
        topic. The key keeps a rider's events in order within a partition; session records are keyed
        by session (their topic is compacted)."""
        return self.pending(after_seq, limit, topics).flat(limit)

    def pending(self, after_seq: int, limit: int, topics: Mapping[str, str]) -> Pending:
        """As ``outgoing`` but about ``limit`` messages (a block is cut only at a row's limit) and the
        power samples as their blocks' lists: the uplink offers a backlog of an hour, 1.44 M samples,
        without a tuple made per sample."""
        after = max(after_seq, self.ledger.delivered)
        with self.reading.snapshot() as conn:
            rows = conn.execute(
                "SELECT seq, CASE kind WHEN 'power' THEN ?1 WHEN 'crossing' THEN ?2 WHEN 'segment' THEN ?3 "
                f"ELSE ?4 END, {KEY_SQL}, {self.reading.message}, crc FROM event_rows WHERE seq > ?5 "
                "ORDER BY seq LIMIT ?6",
                (topics["power"], topics["crossing"], topics["segment"], topics["session"], after, limit)).fetchall()
            cut = rows[-1][0] if len(rows) == limit else None
            rows = self.reading.good(rows, 3, 4)
            blocks, block_cut = self.reading.blocks(after, limit, None)
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

    # -- set aside -----------------------------------------------------------------------------

    def set_aside(self, seq: int, reason: str, at: float | None = None) -> bool:
        """Keep an event the broker refuses out of the uplink's way (it stays in the spool and the
        backlog); False when the disk is full."""
        with self.file.write_lock:
            try:
                self.file.conn().execute("INSERT OR REPLACE INTO set_aside VALUES (?, ?, ?)",
                                         (seq, reason, time.time() if at is None else at))
            except sqlite3.OperationalError as exc:
                if not disk_full(exc):
                    raise
                self.file.counters.full(exc)
                return False
        return True

    def clear_set_aside(self, seq: int) -> None:
        """A set-aside event was delivered after all."""
        with self.file.write_lock:
            if self.file.conn().execute("DELETE FROM set_aside WHERE seq = ?", (seq,)).rowcount:
                self.ledger.undelivered -= 1

    def set_aside_rows(self) -> list[Row]:
        """The events set aside, in order."""
        conn = self.file.conn()
        rows = self.reading.rows(conn.execute(
            f"SELECT {self.reading.columns} FROM event_rows WHERE seq IN (SELECT seq FROM set_aside) ORDER BY seq"))
        for (seq,) in conn.execute(
                "SELECT seq FROM set_aside WHERE seq NOT IN (SELECT seq FROM event_rows) ORDER BY seq").fetchall():
            rows += [r for r in self.reading.rows_after(seq - 1, 1, ("power",), None) if r.seq == seq]
        return sorted(rows)
