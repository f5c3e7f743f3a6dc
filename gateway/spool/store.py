"""The durable on-box event store: SQLite in WAL mode, the source of truth for everything accepted.

Every accepted event is stored in batched transactions before anything downstream sees it: a gate
crossing, a segment result or a session record as one row (table ``event_rows``), a commit's power
samples as one compressed block (table ``blocks``, see ``spool.blocks``). Rows carry their Kafka
message's body (the identity, ``event_id`` = ``<gateway_id>:<spool_id>:<seq>`` and the rest, is rebuilt
from the columns as rows are read) and the whole message's CRC-32; a block carries its samples' whole messages
and a CRC-32 of them; so damage is recognised and skipped instead of sent. The view ``events`` shows
both, one line per event.

Durability (``synchronous``), as SQLite documents it for WAL mode:

- ``NORMAL`` (default): a commit survives the process being killed (kill -9, a crash, the OOM
  killer): nothing accepted is lost. A power cut or kernel crash can roll back the commits since
  the last WAL checkpoint sync (every 1000 WAL pages: about 20 s at 100 riders). One fsync per
  checkpoint: kind to an SD card.
- ``FULL``: every commit is fsynced: a power cut loses nothing the storage really wrote, at one
  fsync per commit (one a second for power samples, plus one per crossing and result).

Bounded disk: when the rows in use exceed ``max_bytes``, delivered rows go first (whatever their
age), then the configured policy applies to undelivered ones: ``reject`` new events, or
``drop_oldest`` undelivered ones. Both are counted and reported; neither is ever a crash. A full
disk (SQLITE_FULL) is handled the same way.

The spool is composed of parts by job, as Vector splits its disk buffer: ``file`` (connections,
schema, settings; ``spool.file``), ``ledger`` (sequence numbers, delivery watermark, backlog;
``spool.ledger``), ``appender`` (batches in, bounded; ``spool.appender``), ``outbox`` (what the
uplink sends; ``spool.outbox``), ``queries`` (what the page and restore read; ``spool.queries``) and
``sessions`` (typed session metadata; ``spool.sessions``). ``Spool`` opens, closes and reports them.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

from gateway.errors import SpoolError
from gateway.spool.appender import Appender
from gateway.spool.file import Policy, SpoolCounters, SpoolFile
from gateway.spool.ledger import Ledger
from gateway.spool.outbox import Outbox
from gateway.spool.queries import Queries
from gateway.spool.reading import Reading
from gateway.spool.schema import KINDS, NewEvent, NewRun, Row
from gateway.spool.sessions import SessionMeta
from gateway.wire import SCHEMA, Encoder, new_spool_id

__all__ = ["KINDS", "NewEvent", "NewRun", "Policy", "Row", "Spool", "SpoolCounters"]

log = logging.getLogger(__name__)


def _last_gateway(conn: sqlite3.Connection) -> tuple[int, str, str | None, int] | None:
    """(first sequence number, gateway id, spool id, wire schema) of what numbers the newest rows."""
    row = conn.execute("SELECT first_seq, gateway_id, spool_id, wire FROM gateways ORDER BY first_seq DESC LIMIT 1"
                       ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]), row[2], int(row[3]))


class Spool:
    """One spool file and its parts; safe to use from several threads."""

    def __init__(self, path: Path | str, gateway_id: str, policy: Policy | None = None, *,
                 readonly: bool = False) -> None:
        self.gateway_id = gateway_id
        self.counters = SpoolCounters()
        self.file = SpoolFile(Path(path), policy or Policy(), self.counters, readonly=readonly)
        self.ledger = Ledger(self.file)
        self.appender = Appender(self.file, self.ledger, Encoder(gateway_id))
        reading = Reading(self.file)
        self.outbox = Outbox(reading, self.ledger)
        self.queries = Queries(reading)
        self.sessions = SessionMeta(self.file)
        self._reading = reading
        self.spool_id: str | None = None

    @property
    def path(self) -> Path:
        return self.file.path

    @property
    def policy(self) -> Policy:
        return self.file.policy

    def open(self) -> Spool:
        """Create or open the file: integrity check (salvaging a corrupt file), migrations."""
        from gateway.spool.recovery import check_or_salvage, salvage

        if self.file.readonly:
            return self._open_readonly()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        corrupt = check_or_salvage(self.file)
        self.file.opened = True
        self.file.migrate()
        if corrupt is not None:
            saved, lost = salvage(corrupt, self.file.conn())
            self.counters.corrupt_rows += lost
            log.error("spool %s: salvaged %d rows from %s; %d rows in its range could not be read",
                      self.path, saved, corrupt.name, lost)
        self.ledger.load()
        self._identify()
        self._name_gateway()
        self.file.set_meta("gateway_id", self.gateway_id, replace=False)
        return self

    def _identify(self) -> None:
        """The spool's identity, made with the file (or at its first start with this gateway): every
        event's identity carries it, so a spool that starts over is a new stream."""
        spool_id = self.file.meta("spool_id")
        if spool_id is None:
            self.file.conn().execute("INSERT OR IGNORE INTO meta VALUES ('spool_id', ?)", (new_spool_id(),))
            spool_id = str(self.file.meta("spool_id"))
            log.info("spool %s: identity %s", self.path, spool_id)
        self.spool_id = spool_id
        self.appender.encoder = Encoder(self.gateway_id, spool_id)

    def _name_gateway(self) -> None:
        """Rows store no event id: note from which row on this gateway and spool number them, under
        which wire schema (a box renamed mid-spool keeps its older rows' identity, rows older than the
        spool's own keep schema 2's, rows numbered before an upgrade keep their schema)."""
        conn = self.file.conn()
        last = _last_gateway(conn)
        if last is None or last[1:] != (self.gateway_id, self.spool_id, SCHEMA):
            next_seq = self.ledger.next_seq
            conn.execute("INSERT OR REPLACE INTO gateways (first_seq, gateway_id, spool_id, wire) VALUES (?, ?, ?, ?)",
                         (next_seq, self.gateway_id, self.spool_id, SCHEMA))
            last = (next_seq, self.gateway_id, self.spool_id, SCHEMA)
        self._reading.read_from(self.gateway_id, last[0], self.spool_id, SCHEMA)

    def _open_readonly(self) -> Spool:
        version = self.file.open_readonly()
        try:
            self.ledger.load_readonly(version)
            last = _last_gateway(self.file.conn()) if version >= 6 else None
        except sqlite3.DatabaseError as exc:
            self.file.close()
            raise SpoolError(f"cannot read the spool: {exc}", where=str(self.path)) from None
        if last is not None:
            self._reading.read_from(last[1], last[0], last[2], last[3])
            self.spool_id = last[2]
        return self

    def release_thread(self) -> None:
        self.file.release_thread()

    def close(self) -> None:
        self.file.close()

    def status(self) -> dict[str, Any]:
        rows, oldest = self.ledger.backlog()
        c = self.counters
        if c.full_since is not None and self.file.room_again():
            c.full_since = None  # the disk was freed or rows pruned: not "full" until the next write says so
        return {
            "path": str(self.path), "spool_id": self.spool_id, "last_seq": self.ledger.last_seq(),
            "backlog_rows": rows, "backlog_oldest": oldest, "used_bytes": self.file.used_bytes(),
            "max_bytes": self.policy.max_bytes, "policy": self.policy.full_policy, "full": c.full_since is not None,
            "full_since": c.full_since, "delivered_through": self.ledger.delivered,
            "set_aside": self.ledger.set_aside_count(), "appended": c.appended, "appended_by_kind": dict(c.by_kind),
            "rejected": c.rejected, "dropped": c.dropped, "pruned": c.pruned, "corrupt_rows": c.corrupt_rows,
            "disk_full": c.disk_full, "last_error": c.last_error,
        }
