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
from gateway.model import GateCrossing, SegmentResult
from gateway.pipeline.accepted import Accepted
from gateway.results.rows import scored_row
from gateway.results.store import ResultsStore

log = logging.getLogger(__name__)

HEARTBEAT_S = 15.0
RETRY_MS = 3000
CLIENT_QUEUE = 500
# When each recent crossing was received, for the page's gate-to-browser latency: a result follows
# its end crossing within seconds, so five minutes of 100 riders at four gates a minute is plenty
# (20 000 kept grew the box by 4 MB over the first hour of such a session).
CROSSINGS_KEPT = 2_000


class Broadcaster:
    """Fed by every ingest (as a subscriber, on each ingest's thread), which only hands it the new
    results (the store is never read there: an ingest thread commits the box's events); its own
    thread turns them into SSE events for every client, reading a session's results from the store
    the first time. Its lock guards only memory (the client set and the sessions' current results)."""

    def __init__(self, store: ResultsStore, min_coverage: float, *, release: Callable[[], None] | None = None) -> None:
        self.store = store
        self.release = release  # what a stream's thread gives back once it has caught up from the store
        self.min_coverage = min_coverage  # power heard less than this: out of the power population
        self._lock = threading.Lock()
        self._clients: set[queue.Queue[tuple[int, str] | None]] = set()
        self._sessions: dict[str, dict[tuple[str, str, str, float], SegmentResult]] = {}
        self._crossings: dict[tuple[str, str, float], float] = {}
        self.sent = 0
        self.resyncs = 0
        self._inbox: queue.Queue[list[tuple[int, float, SegmentResult]] | None] = queue.Queue()
        self._worker: threading.Thread | None = None

    # -- input ------------------------------------------------------------------------------

    def on_accepted(self, batch: list[Accepted]) -> None:
        results = []
        for a in batch:
            event = a.event
            if isinstance(event, GateCrossing) and a.rider_id:
                with self._lock:
                    self._crossings[(a.rider_id, event.gate, event.wall_time)] = a.committed
                    if len(self._crossings) > CROSSINGS_KEPT:
                        self._crossings.pop(next(iter(self._crossings)))
            elif isinstance(event, SegmentResult):
                results.append((a.seq, a.committed, event))
        if results:
            self._start()
            self._inbox.put(results)

    def _start(self) -> None:
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="broadcaster", daemon=True)
                self._worker.start()

    def _work(self) -> None:
        while (items := self._inbox.get()) is not None:
            try:
                for seq, committed, result in items:
                    self._publish(self._live_event(seq, committed, result))
            except Exception:
                log.exception("broadcaster: %d result(s) not sent to the pages", len(items))
            finally:
                self._inbox.task_done()
        self._inbox.task_done()

    def settle(self, timeout: float = 10.0) -> bool:
        """Wait until every result handed over is sent to the streams (tests, and a clean stop)."""
        deadline = time.monotonic() + timeout
        while self._inbox.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)
        return not self._inbox.unfinished_tasks

    def close(self) -> None:
        """Stop the thread once what was handed over is sent."""
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            self._inbox.put(None)
            worker.join(10)

    def _session(self, session: str) -> dict[tuple[str, str, str, float], SegmentResult]:
        with self._lock:
            cached = self._sessions.get(session)
        if cached is None:
            loaded = {r.key: r for r in self.store.results([session])}  # read outside the lock
            with self._lock:
                cached = self._sessions.setdefault(session, loaded)
                while len(self._sessions) > 20:
                    self._sessions.pop(next(iter(self._sessions)))
        return cached

    def _group_now(self, result: SegmentResult) -> list[SegmentResult]:
        """The current results on the same terrain as ``result`` (read only: catch-up never changes
        what the live events are computed from)."""
        results = self._session(result.session_id)
        with self._lock:
            group = [r for r in results.values() if r.segment is not None and r.segment == result.segment]
            missing = result.key not in results
        if missing and "withdrawn" not in result.flags and result.segment is not None:
            group.append(result)  # stored, but its ingest has not handed it to us yet
        return group

    def _live_event(self, seq: int, committed: float, result: SegmentResult) -> tuple[int, str]:
        results = self._session(result.session_id)
        with self._lock:
            if "withdrawn" in result.flags:
                results.pop(result.key, None)
            else:
                results[result.key] = result
            group = [r for r in results.values() if r.segment is not None and r.segment == result.segment]
            crossing = self._crossings.get((result.rider_id, result.end_gate, result.end))
        return event_of(seq, result, group, (committed, crossing), self.min_coverage)

    def publish(self, seq: int, result: SegmentResult, committed: float | None = None) -> None:
        """A stored result from elsewhere than an ingest (the hub's database feed)."""
        self._publish(self._live_event(seq, committed or time.time(), result))

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

    def queue_depths(self) -> dict[str, int]:
        """Open streams and the deepest queue (a phone falling behind), for the operator's metrics."""
        with self._lock:
            return {"clients": len(self._clients), "deepest": max((q.qsize() for q in self._clients), default=0)}

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
                # What the page missed, read back from the store and scored against each session's
                # results as they stand now (as live events are).
                for seq, result in self.store.results_since(last_id):
                    yield _frame(*event_of(seq, result, self._group_now(result), (None, None),
                                           self.min_coverage))
                    sent_up_to = seq
                if self.release is not None:
                    self.release()  # a stream lasts hours: it must not hold what catching up took
            next_beat = time.monotonic() + heartbeat_s
            while not stop.is_set():
                try:
                    item = q.get(timeout=min(1.0, max(0.0, next_beat - time.monotonic())))
                except queue.Empty:
                    if time.monotonic() >= next_beat:
                        # A named event, not a comment: the page sees it and knows the link is alive.
                        yield f'event: heartbeat\ndata: {{"time": {time.time():.3f}}}\n\n'
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


def event_of(seq: int, result: SegmentResult, group: list[SegmentResult],
             received: tuple[float | None, float | None], min_coverage: float) -> tuple[int, str]:
    """The SSE event of a stored result, with its terrain group's statistics (not its rows: the page
    rescores its own rows from them, so an event stays small however long the session grows).
    ``received``: when the result was committed and when its end crossing was (the page's latency)."""
    committed, crossing_received = received
    stats = {}
    if result.segment is not None:
        stats = {"time": asdict(Spread.of([r.duration for r in group])),
                 "power": asdict(Spread.of([r.power_avg for r in group
                                            if r.power_avg is not None and r.coverage >= min_coverage]))}
    data = {
        "seq": seq, "session": result.session_id,
        "result": scored_row(score([result], group, min_coverage), 0),
        "segment": result.segment, "stats": _finite(stats), "committed": committed,
        "crossing_received": crossing_received,
    }
    return seq, orjson.dumps(data).decode()  # strict JSON: NaN becomes null


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
                    on_close: Callable[[], None] | None = None, heartbeat_s: float = HEARTBEAT_S) -> Any:
    from flask import Response

    response = Response(broadcaster.stream(last_id, stop, heartbeat_s), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    if on_close is not None:
        response.call_on_close(on_close)  # the server closes every response, started or not
    return response
