"""The forwarder's rules, against a scripted producer (``fakes.ScriptedKafka``): what reaches the
broker, when the watermark moves, careful mode after a failure, and what is set aside. The same
rules against a real broker are in tests/system (test_uplink_refusals, test_kafka_faults)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fakes import ScriptedKafka
from harness import kafka_settings, power_event, wait_for

from gateway.spool.store import NewEvent, Spool
from gateway.uplink.forwarder import REFUSALS, Forwarder

RIDERS = ["r0", "r1", "r2", "r3"]


def crossing(i: int, rider: str) -> NewEvent:
    return NewEvent("crossing", rider, "s1", 1000.0 + i, {"wallTime": 1000.0 + i, "gate": "G1", "rider_id": rider})


@pytest.fixture
def stored(spool: Spool) -> Spool:
    """1 200 events of four riders: power samples (stored in blocks) with a crossing every 50."""
    for start in range(0, 1200, 100):
        spool.appender.append([crossing(i, RIDERS[i % 4]) if i % 50 == 49 else power_event(i, RIDERS[i % 4])
                               for i in range(start, start + 100)])
    return spool


@pytest.fixture
def run() -> Iterator[object]:
    started: list[Forwarder] = []

    def start(spool: Spool, kafka: ScriptedKafka) -> Forwarder:
        forwarder = Forwarder(spool, kafka_settings(), batch=150, window=600, output=kafka.output)
        forwarder.mark_every_s = 0.05
        started.append(forwarder.start())
        return forwarder

    yield start
    for forwarder in started:
        forwarder.stop(timeout=1.0)


def partition(seq: int) -> tuple[str, str]:
    """(topic, key) of an event of ``stored``: the order Kafka keeps is within one."""
    return ("crossings" if seq % 50 == 0 else "power", RIDERS[(seq - 1) % 4])


def in_order_per_partition(delivered: list[int]) -> bool:
    """Each partition's events arrive in sequence order, the first time each is delivered (a
    batch offered again after a failure repeats some: at least once)."""
    seen: set[int] = set()
    last: dict[tuple[str, str], int] = {}
    for seq in delivered:
        if seq in seen:
            continue
        seen.add(seq)
        if last.get(partition(seq), 0) > seq:
            return False
        last[partition(seq)] = seq
    return True


def drained(spool: Spool) -> None:
    wait_for(lambda: spool.ledger.delivered_through() == spool.ledger.last_seq(), 30, "the watermark to reach the end")


def test_everything_arrives_once_in_order_and_the_watermark_follows(stored: Spool, run) -> None:
    kafka = ScriptedKafka()
    run(stored, kafka)
    drained(stored)
    assert sorted(kafka.delivered) == list(range(1, 1201))  # each once
    assert in_order_per_partition(kafka.delivered)
    assert stored.ledger.backlog()[0] == 0 and not stored.outbox.set_aside_rows()
    assert [o.gapless for o in kafka.outputs] == [True]  # no failure: one gapless producer throughout


def test_a_full_local_queue_is_waited_for_and_nothing_is_lost_or_reordered(stored: Spool, run) -> None:
    kafka = ScriptedKafka(room=7)
    run(stored, kafka)
    drained(stored)
    # At least once: a batch half offered is offered again from the watermark, never skipped.
    assert set(kafka.delivered) == set(range(1, 1201)) and in_order_per_partition(kafka.delivered)


def test_an_event_the_producer_refuses_is_set_aside_at_once_and_the_stream_goes_on(stored: Spool, run) -> None:
    kafka = ScriptedKafka(refuse={600: "MSG_SIZE_TOO_LARGE: larger than message.max.bytes"})
    forwarder = run(stored, kafka)
    drained(stored)
    assert set(kafka.delivered) == set(range(1, 1201)) - {600}
    assert [r.seq for r in stored.outbox.set_aside_rows()] == [600]
    assert stored.ledger.backlog()[0] == 1  # kept, and counted as not delivered
    assert forwarder.link.failed >= 1 and "event 600" in str(forwarder.link.refused_last)
    forwarder.stop(timeout=1.0)

    # The next start offers it again; the producer takes it now: delivered, no longer set aside.
    kafka.refuse.clear()
    run(stored, kafka)
    wait_for(lambda: stored.ledger.backlog()[0] == 0, 30, "the set-aside event to be delivered")
    assert kafka.delivered.count(600) == 1 and not stored.outbox.set_aside_rows()


def test_a_permanent_failure_goes_careful_and_sets_the_event_aside_after_three(stored: Spool, run) -> None:
    kafka = ScriptedKafka(fail={733: 99})
    forwarder = run(stored, kafka)
    drained(stored)
    assert set(kafka.delivered) == set(range(1, 1201)) - {733}
    assert [r.seq for r in stored.outbox.set_aside_rows()] == [733]
    assert kafka.fail[733] == 99 - REFUSALS - 1  # the gapless producer's fatal one, then three reports
    # The failure made the gapless producer fatal; the ones after it report every event.
    assert kafka.outputs[0].gapless and not kafka.outputs[1].gapless
    assert forwarder.link.reconnects >= 1 and forwarder.link.failed >= REFUSALS


def test_a_failure_that_heals_is_delivered_and_not_set_aside(stored: Spool, run) -> None:
    kafka = ScriptedKafka(fail={333: 1})
    run(stored, kafka)
    drained(stored)
    assert set(kafka.delivered) == set(range(1, 1201))
    assert not stored.outbox.set_aside_rows() and stored.ledger.backlog()[0] == 0
