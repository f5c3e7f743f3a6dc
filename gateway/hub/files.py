"""Riders' files into a session at the hub (``complete.session`` decides what they change): a box
session read from PostgreSQL, or a course session through its boxes' sessions (each file goes to
the box session whose samples of the rider place it best; the course engine then takes its samples
on that box's clock). What is added is written as the box's would be, under spool ``files``: the
samples (with a radio identity of kind ``file``, so the course engine merges them), the corrected
results, and the session record listing the files; the page's feed shows the corrections."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from psycopg.types.json import Jsonb

from gateway.complete.session import Outcome, SessionData, named, plan
from gateway.config.settings import Settings
from gateway.errors import NotFound
from gateway.hub import coursedb
from gateway.hub.course import Change
from gateway.hub.results import FIELDS, result_of
from gateway.model import GateCrossing, PowerSample

FILES_SPOOL = "files"  # the spool id added samples and results are written under


class HubCompletion:
    def __init__(self, settings: Settings, connect: Callable[[], Any],
                 offer: Callable[[list[Any], list[Any]], None] | None = None) -> None:
        self.settings = settings
        self.connect = connect
        self.offer = offer  # the hub's course engine, told of the samples written

    def add_files(self, session: str, files: list[tuple[Path, str]], *, who: str,
                  choices: Mapping[str, str], offsets: Mapping[str, float]) -> dict[str, Any]:
        with self.connect() as conn:
            kind = conn.execute("SELECT kind FROM sessions WHERE session_id = %s AND record IS NOT NULL",
                                (session,)).fetchone()
            if kind is None:
                raise NotFound(f"no session {session!r} at the hub", where="add files")
            targets = ([m.session_id for m in coursedb.members(conn, session).members] if kind[0] == "course"
                       else [session])
            outcomes = [self._one(conn, targets, file, who, choices, offsets) for file in files]
        return {"session": session, "files": [o.as_dict() for o in outcomes]}

    def _one(self, conn: Any, targets: Sequence[str], file: tuple[Path, str], who: str,
             choices: Mapping[str, str], offsets: Mapping[str, float]) -> Outcome:
        """The file into the first of ``targets`` (box sessions) where it is added with the most
        evidence; else what the session with the most evidence said."""
        best: tuple[float, str, Any, Outcome] | None = None
        for target in targets:
            data = self._load(conn, target)
            done = plan(data, [file], who=who, np_window=self.settings.metrics.np_window, choices=choices,
                        offsets=offsets)
            (outcome,) = done.outcomes
            rank = (outcome.status == "added") * 1e9 + (outcome.alignment.evidence_s if outcome.alignment else 0.0)
            if best is None or rank > best[0]:
                best = (rank, target, (data, done), outcome)
        assert best is not None
        _, target, (data, done), outcome = best
        if outcome.status == "added":
            self._commit(conn, data, done)
        return outcome

    def _load(self, conn: Any, session: str) -> SessionData:
        row = conn.execute("SELECT gateway_id, record FROM sessions WHERE session_id = %s", (session,)).fetchone()
        if row is None or row[1] is None:
            raise NotFound(f"no session {session!r} at the hub", where="add files")
        events: list[tuple[PowerSample | GateCrossing, str]] = [
            (PowerSample(source, rider, wall, power, cadence), rider) for source, rider, wall, power, cadence in
            conn.execute("SELECT source, rider_id, wall_time, power, cadence FROM power WHERE session_id = %s "
                         "AND rider_id IS NOT NULL AND NOT implausible AND power = power ORDER BY wall_time",
                         (session,)).fetchall()]
        events += [(GateCrossing("hub", rider, gate, wall), rider) for rider, gate, wall in conn.execute(
            "SELECT rider_id, gate, wall_time FROM crossings WHERE session_id = %s AND rider_id IS NOT NULL",
            (session,)).fetchall()]
        select = ", ".join(f'"{f}"' for f in FIELDS)
        results = [result_of(r) for r in conn.execute(
            f"SELECT {select} FROM segments_current WHERE session_id = %s", (session,)).fetchall()]
        record = dict(row[1])
        record["_gateway"] = row[0]
        events.sort(key=lambda e: e[0].wall_time)
        return SessionData(session, record, named(events), results)

    def _commit(self, conn: Any, data: SessionData, done: Any) -> None:
        gateway = data.record["_gateway"]
        with conn.transaction():
            seqs = [r[0] for r in conn.execute("SELECT nextval('course_results') FROM generate_series(1, %s)",
                                               (len(done.samples),)).fetchall()]
            rows = [(gateway, seq, data.session_id, s.sensor, s.wall_time, s.power, s.cadence, None, s.source, False,
                     s.raw, FILES_SPOOL) for seq, s in zip(seqs, done.samples,
                                                                                           strict=True)]
            conn.cursor().executemany(
                "INSERT INTO power (gateway_id, seq, session_id, rider_id, wall_time, power, cadence, torque, "
                "source, implausible, raw, spool_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", rows)
            coursedb.write(conn, [Change(r, ()) for r in done.corrections], gateway=gateway, spool=FILES_SPOOL)
            added = {"files_added": done.record["files_added"]}
            conn.execute("UPDATE sessions SET record = record || %s, updated = now() WHERE session_id = %s",
                         (Jsonb(json.loads(json.dumps(added))), data.session_id))
        if self.offer is not None:
            self.offer(rows, [])
