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
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from gateway.errors import SpoolError
from gateway.spool.reader import SpoolReader
from gateway.spool.schema import KINDS, MIGRATIONS, SCHEMA_VERSION, NewEvent, NewRun, Row, compatible, transaction
from gateway.spool.state import Policy, SpoolCounters
from gateway.spool.writer import SpoolWriter
from gateway.wire import Encoder, new_spool_id

__all__ = ["KINDS", "NewEvent", "NewRun", "Policy", "Row", "Spool", "SpoolCounters"]

log = logging.getLogger(__name__)

ROOM_BYTES = 1024 * 1024  # free space that takes a few commits: below it a disk is still "full"


def _last_gateway(conn: sqlite3.Connection) -> tuple[int, str, str | None] | None:
    """(first sequence number, gateway id, spool id) of what numbers the newest rows."""
    row = conn.execute("SELECT first_seq, gateway_id, spool_id FROM gateways ORDER BY first_seq DESC LIMIT 1"
                       ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]), row[2])


class Spool(SpoolReader, SpoolWriter):
    """The spool: open (checked, migrated, salvaged) and closed here; read and written by its mixins."""

    def open(self) -> Spool:
        """Create or open the file: integrity check (salvaging a corrupt file), migrations."""
        from gateway.spool.recovery import check_or_salvage, salvage

        if self.readonly:
            return self._open_readonly()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        corrupt = check_or_salvage(self)
        self._opened = True
        conn = self._conn()
        self._migrate(conn)
        if corrupt is not None:
            saved, lost = salvage(corrupt, conn)
            self.counters.corrupt_rows += lost
            log.error("spool %s: salvaged %d rows from %s; %d rows in its range could not be read",
                      self.path, saved, corrupt.name, lost)
        self._delivered_through = int(self.meta("delivered_through") or 0)
        # A number once given is never given again, even when the newest rows are gone (delivered and
        # pruned, dropped for room: seq_floor; lost to damage: salvage sets seq_floor from the old
        # file's reservation): consumers deduplicate by event id.
        top = self._top()
        self._next_seq = max(top, self._delivered_through, int(self.meta("seq_floor") or 0)) + 1
        self._seq_reserved = int(self.meta("seq_reserved") or 0)
        self._identify(conn)
        self._name_gateway(conn)
        self._undelivered = self._count(self._delivered_through, top) + self.set_aside_count()
        self.set_meta("gateway_id", self.gateway_id, replace=False)
        return self

    def _room_again(self) -> bool:
        """Below its cap, on a disk with room for a commit's worth: "full" no longer holds (before, the
        status said full until the next write, long after the disk was freed)."""
        import shutil

        try:
            free = shutil.disk_usage(self.path.parent).free
        except OSError:
            return False
        return self.used_bytes() < self.policy.max_bytes and free > ROOM_BYTES

    def _identify(self, conn: sqlite3.Connection) -> None:
        """The spool's identity, made with the file (or at its first start with this gateway): every
        event's identity carries it, so a spool that starts over is a new stream."""
        spool_id = self.meta("spool_id")
        if spool_id is None:
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('spool_id', ?)", (new_spool_id(),))
            spool_id = str(self.meta("spool_id"))
            log.info("spool %s: identity %s", self.path, spool_id)
        self.spool_id = spool_id
        self._encoder = Encoder(self.gateway_id, spool_id)

    def _name_gateway(self, conn: sqlite3.Connection) -> None:
        """Rows store no event id: note from which row on this gateway and spool number them (a box
        renamed mid-spool keeps its older rows' identity, rows older than the spool's own keep
        schema 2's)."""
        last = _last_gateway(conn)
        if last is None or last[1:] != (self.gateway_id, self.spool_id):
            conn.execute("INSERT OR REPLACE INTO gateways (first_seq, gateway_id, spool_id) VALUES (?, ?, ?)",
                         (self._next_seq, self.gateway_id, self.spool_id))
            last = (self._next_seq, self.gateway_id, self.spool_id)
        self._reading_from(self.gateway_id, last[0], self.spool_id)

    def _open_readonly(self) -> Spool:
        if not self.path.is_file():
            raise SpoolError("no spool here", where=str(self.path), hint="give the gateway's state directory")
        self._opened = True
        try:
            conn = self._conn()
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            self._compat = compatible(version)
            for statement in self._compat:
                conn.execute(statement)
            top = self._top()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise SpoolError(f"cannot read the spool: {exc}", where=str(self.path)) from None
        self._check_version(version)
        self._next_seq = top + 1
        if version >= 6:
            last = _last_gateway(self._conn())
            if last is not None:
                self._reading_from(last[1], last[0], last[2])
                self.spool_id = last[2]
        if version >= 3:
            self._delivered_through = int(self.meta("delivered_through") or 0)
        return self

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise SpoolError(f"the spool has schema version {version}, newer than this gateway's "
                             f"{SCHEMA_VERSION}", where=str(self.path),
                             hint="upgrade the gateway, or move the file aside to start a new spool")

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        self._check_version(version)
        if version == 0:  # a new file: made at this schema in one step, said in one line (not eight)
            with transaction(conn):
                for target in range(1, SCHEMA_VERSION + 1):
                    self._apply(conn, target)
            log.info("spool %s: created (schema %d)", self.path, SCHEMA_VERSION)
            return
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with transaction(conn):
                self._apply(conn, target)
            log.info("spool %s: schema migrated to version %d", self.path, target)

    @staticmethod
    def _apply(conn: sqlite3.Connection, target: int) -> None:
        for statement in MIGRATIONS[target].split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version={target}")

    def status(self) -> dict[str, Any]:
        rows, oldest = self.backlog()
        c = self.counters
        if c.full_since is not None and self._room_again():
            c.full_since = None  # the disk was freed or rows pruned: not "full" until the next write says so
        return {
            "path": str(self.path), "spool_id": self.spool_id, "last_seq": self.last_seq(), "backlog_rows": rows,
            "backlog_oldest": oldest, "used_bytes": self.used_bytes(), "max_bytes": self.policy.max_bytes,
            "policy": self.policy.full_policy, "full": c.full_since is not None, "full_since": c.full_since,
            "delivered_through": self._delivered_through, "set_aside": self.set_aside_count(),
            "appended": c.appended, "appended_by_kind": dict(c.by_kind), "rejected": c.rejected,
            "dropped": c.dropped, "pruned": c.pruned, "corrupt_rows": c.corrupt_rows, "disk_full": c.disk_full,
            "last_error": c.last_error,
        }
