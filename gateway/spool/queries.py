"""What the page, the engine's restore and the exports read from the spool: events since a sequence
number (by kind and session), and segment results by session."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from gateway.spool.reading import Reading
from gateway.spool.schema import KINDS, Row


class Queries:
    def __init__(self, reading: Reading) -> None:
        self.reading = reading

    def since(self, after_seq: int, *, kinds: Sequence[str] = KINDS, session_id: str | None = None,
              batch: int = 5000) -> Iterator[Row]:
        """Every event after ``after_seq`` of the given kinds (and session), in order, in batches."""
        last = after_seq
        while True:
            rows = self.reading.rows_after(last, batch, kinds, session_id)
            if not rows:
                return
            yield from rows
            last = rows[-1].seq

    def segment_rows(self, session_id: str) -> list[Row]:
        """Every segment result of a session, in order (through the partial index of version 2)."""
        return self.reading.rows(self.reading.file.conn().execute(
            f"SELECT {self.reading.columns} FROM event_rows "
            "WHERE kind = 'segment' AND session_id = ? ORDER BY seq", (session_id,)))

    def rider_rows(self, session_id: str, rider_id: str, kind: str = "power") -> list[Row]:
        """One rider's events of one kind in a session, in order (power runs stored folded included:
        the session's rows are read and the rider's kept)."""
        return [row for row in self.since(0, kinds=(kind,), session_id=session_id) if row.rider_id == rider_id]

    def rider_sessions(self, rider_id: str) -> list[str]:
        """The sessions with results of a rider, oldest first."""
        return [r[0] for r in self.reading.file.conn().execute(
            "SELECT session_id FROM event_rows WHERE kind = 'segment' AND rider_id = ? GROUP BY session_id "
            "ORDER BY MIN(seq)", (rider_id,)).fetchall()]

    def segment_sessions(self) -> list[tuple[str, int, float | None, float | None]]:
        """(session, results, first, last) of every session with results, oldest first."""
        return self.reading.file.conn().execute(
            "SELECT session_id, COUNT(*), MIN(wall_time), MAX(wall_time) FROM event_rows WHERE kind = 'segment' "
            "GROUP BY session_id ORDER BY MIN(seq)").fetchall()
