"""The SSE stream: ids, heartbeat, catch-up from the spool with no gap and no duplicate, a bound per client."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest

from gateway.model import SegmentResult
from gateway.pipeline.ingest import Accepted
from gateway.results.sqlite import SpoolResults
from gateway.spool.store import NewEvent, Spool
from gateway.web import stream as sse
from gateway.wire import segment_body


def result(rider: str, lap: int, duration: float) -> SegmentResult:
    return SegmentResult("s1", rider, rider.upper(), f"{lap}.1", lap, 1, 1000.0 * lap, 1000.0 * lap + duration,
                         duration, "SF", "TOP", 250.0, 85.0, 255.0, 1.0, 5.0, 4.0, 100, 1.0)




@pytest.fixture
def broadcasters() -> Iterator[list[sse.Broadcaster]]:
    """The test's broadcasters, closed at its end (each has a thread once it is fed)."""
    made: list[sse.Broadcaster] = []
    yield made
    for b in made:
        b.close()


def store(spool: Spool, broadcaster: sse.Broadcaster, results: list[SegmentResult]) -> None:
    rows = spool.appender.append([NewEvent("segment", r.rider_id, r.session_id, r.end, segment_body(r))
                                  for r in results])
    broadcaster.on_accepted([Accepted(r, row.seq, row.recv_time, r.rider_id) for row, r in zip(rows, results,
                                                                                           strict=True)])
    assert broadcaster.settle()  # sent by its own thread


def frames(chunks: list[str]) -> list[tuple[int, dict]]:
    out = []
    for chunk in chunks:
        if chunk.startswith("id: "):
            lines = chunk.splitlines()
            out.append((int(lines[0][4:]), json.loads(lines[2][6:])))
    return out


def test_catch_up_then_live_with_no_gap_and_no_duplicate(spool: Spool, broadcasters) -> None:
    b = sse.Broadcaster(SpoolResults(spool), 0.8)
    broadcasters.append(b)
    store(spool, b, [result("a", 1, 100.0), result("b", 1, 110.0), result("c", 1, 90.0)])
    stop = threading.Event()
    gen = b.stream(last_id=1, stop=stop, heartbeat_s=60)
    assert next(gen) == f"retry: {sse.RETRY_MS}\n\n"
    got = [next(gen), next(gen)]  # what it missed: rows 2 and 3, from the spool
    store(spool, b, [result("a", 2, 95.0)])  # then live
    got.append(next(gen))
    stop.set()
    list(gen)
    ids = [i for i, _ in frames(got)]
    assert ids == [2, 3, 4]
    last = frames(got)[-1][1]
    assert last["result"]["rider_id"] == "a" and last["result"]["number"] == "2.1"
    # The terrain group's statistics come with it (four results of segment 1 now), and the result
    # is scored against them.
    durations = [100.0, 110.0, 90.0, 95.0]
    time_stats = last["stats"]["time"]
    assert time_stats["n"] == 4 and time_stats["mean"] == pytest.approx(sum(durations) / 4)
    import statistics

    assert time_stats["std"] == pytest.approx(statistics.pstdev(durations))
    assert last["result"]["time_zscore"] == pytest.approx((95.0 - 98.75) / statistics.pstdev(durations))
    assert b.clients == 0


def test_heartbeat_keeps_the_connection_alive(spool: Spool) -> None:
    b = sse.Broadcaster(SpoolResults(spool), 0.8)
    stop = threading.Event()
    gen = b.stream(last_id=None, stop=stop, heartbeat_s=0.05)
    next(gen)
    beat = next(gen)
    assert beat.startswith("event: heartbeat\ndata: ") and json.loads(beat.split("data: ")[1])["time"] > 0
    stop.set()
    list(gen)


def test_a_client_that_falls_behind_is_told_to_resync(spool: Spool, monkeypatch, broadcasters) -> None:
    monkeypatch.setattr(sse, "CLIENT_QUEUE", 5)
    b = sse.Broadcaster(SpoolResults(spool), 0.8)
    broadcasters.append(b)
    stop = threading.Event()
    slow = b.stream(last_id=None, stop=stop, heartbeat_s=60)
    next(slow)  # connected, then reads nothing while ten results arrive
    for lap in range(1, 11):
        store(spool, b, [result("a", lap, 100.0 + lap)])
    assert next(slow) == "event: resync\ndata: {}\n\n"
    assert list(slow) == []
    assert b.resyncs == 1 and b.clients == 0


def test_last_event_id_from_header_or_query() -> None:
    assert sse.parse_last_id("17", None) == 17
    assert sse.parse_last_id(None, "5") == 5
    assert sse.parse_last_id("junk", "9") == 9
    assert sse.parse_last_id(None, None) is None
