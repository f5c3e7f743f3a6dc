"""The Kafka side of the uplink: an idempotent producer that says, for each message, OK or RETRY
when offered and, later, delivered or failed. What to send, and what a failure means, is the
forwarder's business (as Fluent Bit's core owns retries for its outputs)."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any, Protocol

from gateway.spool.outbox import Outgoing
from gateway.uplink.link import LinkState

log = logging.getLogger(__name__)


class _EveryMinute(logging.Filter):
    """librdkafka repeats a connection failure at every reconnect: one line a minute per kind is enough."""

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        kind = record.getMessage().split(" ", 1)[0]
        now = time.monotonic()
        if now - self._last.get(kind, -1e9) < 60.0:
            return False
        self._last[kind] = now
        return True


_librdkafka_log = logging.getLogger("gateway.kafka.librdkafka")
_librdkafka_log.addFilter(_EveryMinute())


class Output(Protocol):
    """The producer seam: what the forwarder needs of a producer session (``KafkaOutput``; tests
    script refusals and fatal errors through a fake one)."""

    fatal: bool
    refused: list[tuple[int, str]]
    refused_unknown: bool

    def offer(self, messages: list[Outgoing], tickets: dict[int, Any], start: int = 0) -> int: ...

    def offer_run(self, topic: str, keys: Sequence[str], messages: Sequence[bytes],
                  reports: Sequence[tuple[int, Any]]) -> bool: ...

    def poll(self, timeout: float) -> list[tuple[Any, str | None]]: ...

    def close(self) -> None: ...


# Makes a producer session: gapless (True), or one report per message after a failure (False).
OutputFactory = Callable[[bool], Output]


class KafkaOutput:
    """One producer session. ``offer`` is OK (True) or RETRY (False: the local queue is full); a
    message offered with a ticket is reported back by ``poll`` as (ticket, None) once the broker has
    it, or (ticket, error text). Messages offered without a ticket cost no Python callback.

    ``gapless``: any failure that could leave a gap in a partition's series stops the producer
    (fatal) instead, so a delivered message proves every earlier message of its partition was
    delivered; the forwarder relies on that to ask for one report per rider per batch.
    """

    def __init__(self, client_config: dict[str, Any], link: LinkState, clock: Callable[[], float],
                 queue_messages: int, *, gapless: bool = True) -> None:
        from confluent_kafka import Producer

        self.link = link
        self.clock = clock
        self.fatal = False
        self.gapless = gapless
        # Filled by callbacks, which run inside poll() on the caller's thread.
        self._reports: list[tuple[Any, str | None]] = []
        # Messages the producer refused as they were offered (too large for message.max.bytes, ...):
        # (seq, why); ``refused_unknown`` when one in a run was, and which is not known.
        self.refused: list[tuple[int, str]] = []
        self.refused_unknown = False
        self._producer: Any = Producer({
            "enable.idempotence": True,
            "enable.gapless.guarantee": gapless,
            "acks": "all",
            # No timeout: during an outage librdkafka keeps every message and retries in order, so a
            # rider's events never overtake each other; the spool holds them across restarts.
            "message.timeout.ms": 0,
            "linger.ms": 20,
            # After a failure (not gapless) each message is a record batch of its own: a message the
            # broker refuses fails alone, never taking its neighbours with it while a later batch of
            # the same partition goes through (which broke a rider's order under test).
            "batch.num.messages": 10_000 if gapless else 1,
            "queue.buffering.max.messages": queue_messages,
            "compression.type": "lz4",
            "reconnect.backoff.ms": 200,
            "reconnect.backoff.max.ms": 5_000,
            "error_cb": self._on_error,
            "logger": _librdkafka_log,
            **client_config,  # bootstrap.servers and the operator's own properties win
        })

    def close(self) -> None:
        """Let the producer go now: it holds this object's callbacks (a cycle the collector would
        break only later, with the producer's sockets open until then). Unacknowledged messages
        stay undelivered in the spool."""
        self._producer = None

    def offer(self, messages: list[Outgoing], tickets: dict[int, Any], start: int = 0) -> int:
        """Offer rows (seq, topic, key, message, CRC) from ``start`` on, the ones in ``tickets`` with a
        delivery report; returns the index of the first one not taken (``len(messages)`` when all
        were: OK; less: RETRY, the local queue is full)."""
        from confluent_kafka import KafkaException

        produce = self._producer.produce
        reporter = self._reporter
        ticket_of = tickets.get
        i = start
        try:
            for i in range(start, len(messages)):
                seq, topic, key, payload, _ = messages[i]
                ticket = ticket_of(seq)
                if ticket is None:
                    produce(topic, payload, key)
                else:
                    produce(topic, payload, key, on_delivery=reporter(ticket))
        except BufferError:
            self._producer.poll(0.1)
            return i
        except KafkaException as exc:
            err = exc.args[0]
            if not err.fatal():
                # This message, not the link: the forwarder sets it aside, the stream goes on.
                self.refused.append((messages[i][0], f"{err.name()}: {err.str()}"))
                return i
            self.fatal = True  # said by the error callback already; the forwarder starts a new producer
            return i
        return len(messages)

    def offer_run(self, topic: str, keys: Sequence[str], messages: Sequence[bytes],
                  reports: Sequence[tuple[int, Any]]) -> bool:
        """Offer ``messages`` of one ``topic`` in order, those at the indices in ``reports`` (ascending)
        with a delivery report for their ticket; the stretches in between are handed to the producer
        without a Python step per message. True when all were taken; False when the local queue
        filled or the producer failed part way (how many were taken is then not known)."""
        from confluent_kafka import KafkaException

        produce = self._producer.produce
        at = 0
        try:
            for i, ticket in reports:
                if i > at:
                    deque(map(produce, repeat(topic), messages[at:i], keys[at:i]), 0)
                produce(topic, messages[i], keys[i], on_delivery=self._reporter(ticket))
                at = i + 1
            if at < len(messages):
                deque(map(produce, repeat(topic), messages[at:], keys[at:]), 0)
        except BufferError:
            return False
        except KafkaException as exc:
            if not exc.args[0].fatal():
                self.refused_unknown = True  # found one message at a time, in the forwarder's careful mode
                return False
            self.fatal = True
            return False
        return True

    def poll(self, timeout: float) -> list[tuple[Any, str | None]]:
        self._producer.poll(timeout)
        reports, self._reports = self._reports, []
        return reports

    def _reporter(self, ticket: Any) -> Callable[[Any, Any], None]:
        def report(err: Any, _msg: Any) -> None:
            self._reports.append((ticket, None if err is None else f"{err.name()}: {err.str()}"))

        return report

    def _on_error(self, err: Any) -> None:
        from confluent_kafka import KafkaError

        with self.link.lock:
            self.link.last_error = f"{err.name()}: {err.str()}"
            if err.code() == KafkaError._ALL_BROKERS_DOWN and self.link.connected:
                self.link.connected = False
                self.link.down_since = self.clock()
                log.warning("kafka: no broker reachable; events wait in the spool")
        if err.fatal():
            log.error("kafka: fatal producer error %s; starting a new producer", err.str())
            self.fatal = True
