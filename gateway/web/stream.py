"""Server-Sent Events: every segment result to every page, with catch-up and a bound per client.

Each event's ``id`` is the spool sequence number of the result, so a page that reconnects with
``Last-Event-ID`` (or ``?last_id=``) is sent exactly what it missed, read back from the spool, then
the live stream, with nothing missing and nothing twice. Each event carries the new result and
the statistics of its terrain group (same session and course segment), since one new result
moves every z-score of its group: the page rescores its rows from them. Each client has a
bounded queue: a phone that falls too far behind gets a ``resync`` event (reload the results,
then reconnect) instead of slowing others.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any

import orjson

from gateway.engine.normalize import Spread, score
from gateway.model import SegmentResult
from gateway.pipeline.ingest import Accepted
from gateway.results.store import session_results
from gateway.spool.store import Row, Spool

log = logging.getLogger(__name__)

HEARTBEAT_S = 15.0
RETRY_MS = 3000
CLIENT_QUEUE = 500


def _key(r: SegmentResult) -> str:
    return f"{r.session_id}|{r.rider_id}|{r.number}|{r.start}"


class Broadcaster:
    """Fed by every ingest (as a subscriber); turns segment rows into SSE events for every client."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self._lock = threading.Lock()
        self._clients: set[queue.Queue[tuple[int, str] | None]] = set()
        self._sessions: dict[str, dict[str, SegmentResult]] = {}
        self._crossings: dict[tuple[str, str, float], float] = {}
        self.sent = 0
        self.resyncs = 0

    # -- input ------------------------------------------------------------------------------

    def on_accepted(self, batch: list[Accepted]) -> None:
        events = []
        with self._lock:
            for a in batch:
                if a.row.kind == "crossing" and a.rider_id:
                    msg = a.row.message
                    self._crossings[(a.rider_id, msg["gate"], msg["wallTime"])] = a.row.recv_time
                    if len(self._crossings) > 20_000:
                        self._crossings.pop(next(iter(self._crossings)))
                elif a.row.kind == "segment":
                    events.append(self._event(a.row))
        for event in events:
            self._publish(event)

    def _results_of(self, session: str) -> dict[str, SegmentResult]:
        cached = self._sessions.get(session)
        if cached is None:
            cached = self._sessions[session] = {_key(r): r for r in session_results(self.spool, session)}
            while len(self._sessions) > 20:
                self._sessions.pop(next(iter(self._sessions)))
        return cached

    def _event(self, row: Row) -> tuple[int, str]:
        """The SSE event for a stored result row (its group scored as of now)."""
        msg = row.message
        result = SegmentResult.from_wire(msg)
        results = self._results_of(result.session_id)
        if "withdrawn" in result.flags:
            results.pop(_key(result), None)
        else:
            results[_key(result)] = result
        group = [r for r in results.values() if r.segment is not None and r.segment == result.segment]
        stats = {}
        if result.segment is not None:
            stats = {"time": asdict(Spread.of([r.duration for r in group])),
                     "power": asdict(Spread.of([r.power_avg for r in group if r.power_avg is not None]))}
        data = {
            "seq": row.seq, "session": result.session_id, "result": score([result], group).row(0),
            # The terrain group's statistics, not its rows: the page rescores its own rows from them,
            # so an event stays small however long the session grows.
            "segment": result.segment, "stats": _finite(stats),
            "committed": row.recv_time,
            "crossing_received": self._crossings.get((result.rider_id, result.end_gate, result.end)),
        }
        return row.seq, orjson.dumps(data).decode()  # strict JSON: NaN becomes null

    def _publish(self, event: tuple[int, str]) -> None:
        with self._lock:
            clients = list(self._clients)
        for q in clients:
            try:
                q.put_nowait(event)
            except queue.Full:
                # Too far behind: drop its backlog and tell it to resynchronise.
                with self._lock:
                    self._clients.discard(q)
                self.resyncs += 1
                while True:
                    try:
                        q.get_nowait()
                    except queue.Empty:
                        break
                q.put_nowait(None)
        self.sent += 1

    # -- output -----------------------------------------------------------------------------

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._clients)

    def stream(self, last_id: int | None, stop: threading.Event, heartbeat_s: float = HEARTBEAT_S
               ) -> Iterator[str]:
        q: queue.Queue[tuple[int, str] | None] = queue.Queue(maxsize=CLIENT_QUEUE)
        with self._lock:
            self._clients.add(q)  # before catching up, so nothing falls between the two
        try:
            yield f"retry: {RETRY_MS}\n\n"
            sent_up_to = last_id or 0
            if last_id is not None:
                for row in self.spool.since(last_id, kinds=("segment",)):
                    with self._lock:
                        event = self._event(row)
                    yield _frame(*event)
                    sent_up_to = row.seq
            next_beat = time.monotonic() + heartbeat_s
            while not stop.is_set():
                try:
                    item = q.get(timeout=min(1.0, max(0.0, next_beat - time.monotonic())))
                except queue.Empty:
                    if time.monotonic() >= next_beat:
                        yield f": heartbeat {int(time.time())}\n\n"
                        next_beat = time.monotonic() + heartbeat_s
                    continue
                if item is None:
                    yield "event: resync\ndata: {}\n\n"
                    return
                seq, data = item
                if seq <= sent_up_to:
                    continue  # already sent while catching up
                sent_up_to = seq
                yield _frame(seq, data)
        finally:
            with self._lock:
                self._clients.discard(q)


def _finite(stats: dict[str, dict[str, float]]) -> dict[str, dict[str, float | None]]:
    return {k: {f: (None if isinstance(v, float) and math.isnan(v) else v) for f, v in d.items()}
            for k, d in stats.items()}


def _frame(seq: int, data: str) -> str:
    return f"id: {seq}\nevent: segment\ndata: {data}\n\n"


MAX_ID = 2**53  # beyond this an id is no sequence number of ours (and no SQLite integer)


def parse_last_id(header: str | None, param: str | None) -> int | None:
    for value in (header, param):
        if value:
            try:
                seq = int(value.strip())
            except ValueError:
                continue
            if 0 <= seq < MAX_ID:
                return seq
    return None


def stream_response(broadcaster: Broadcaster, last_id: int | None, stop: threading.Event,
                    on_close: Callable[[], None] | None = None) -> Any:
    from flask import Response

    response = Response(broadcaster.stream(last_id, stop), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    if on_close is not None:
        response.call_on_close(on_close)  # the server closes every response, started or not
    return response
