"""How the hub's consumer gets a batch into PostgreSQL whatever is in it: one transaction when it
can; in halves, each its own transaction, when PostgreSQL refuses the batch for its size (out of
shared memory, a program limit); and message by message when PostgreSQL refuses what is in it (a
value its column cannot hold that no check of the hub foresaw, a constraint the operator added):
the message it refuses goes to the dead letters with PostgreSQL's reason, and the rest is written.
Before, one such message failed its batch again at every try, and nothing after it on its
partitions was ever written."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from gateway.hub.writer import Batch, Written, write

log = logging.getLogger(__name__)

def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class BatchWriter:
    """Batches into the database through one connection, opened when first needed."""

    def __init__(self, connect: Callable[[], Any], decode: Callable[[list[Any]], Batch]) -> None:
        self.connect = connect
        self.decode = decode  # messages -> batch (the consumer's), to cut a refused batch by messages
        self.conn: Any = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def write(self, batch: Batch, messages: list[Any]) -> Written:
        """Write ``batch``, decoded from ``messages``. A batch PostgreSQL refuses for its data (a data
        error, a constraint, a value of another type than its column's) is written again by halves
        of its messages down to the one refused; ``batch`` is then left holding what was written
        (the course engine is told those rows)."""
        import psycopg

        try:
            return self.write_sized(batch)
        except (psycopg.DataError, psycopg.IntegrityError, psycopg.errors.DatatypeMismatch) as exc:
            if len(messages) <= 1:
                return self._refused(messages, exc)
            log.warning("hub: PostgreSQL refused a batch of %d messages (%s): written by halves to find the "
                        "message it refuses", len(messages), _first_line(exc))
            first, second = messages[:len(messages) // 2], messages[len(messages) // 2:]
            one, two = self.decode(first), self.decode(second)
            done = self.write(one, first).add(self.write(two, second))
            batch.power, batch.crossings, batch.segments = (one.power + two.power, one.crossings + two.crossings,
                                                            one.segments + two.segments)
            return done

    def _refused(self, messages: list[Any], exc: Exception) -> Written:
        reason = f"PostgreSQL refused it: {_first_line(exc)}"
        log.error("hub: %s; set aside as a dead letter", reason)
        dead = Batch(dead=[(m.topic(), m.partition(), m.offset(), m.value(), reason) for m in messages])
        return write(self._connection(), dead)

    def _connection(self) -> Any:
        if self.conn is None or self.conn.closed:
            self.conn = self.connect()
        return self.conn

    def write_sized(self, batch: Batch) -> Written:
        """Write ``batch``; one that PostgreSQL refuses for its size is written in halves, each in its
        own transaction, down to single events."""
        import psycopg

        try:
            return write(self._connection(), batch)
        except (psycopg.errors.InsufficientResources, psycopg.errors.ProgramLimitExceeded) as exc:
            reason = _first_line(exc)
            if len(batch.power) + len(batch.crossings) + len(batch.segments) <= 1:
                log.error("hub: PostgreSQL refuses even a single event (%s): the database needs more resources "
                          "(max_locks_per_transaction, shared_buffers, disk); the hub tries again", reason)
                raise
            log.warning("hub: a batch of %d events was too big for one transaction (%s): written in two", len(batch),
                        reason)
            first, second = batch.halves()
            return self.write_sized(first).add(self.write_sized(second))
