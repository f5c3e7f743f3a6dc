"""The Kafka side of the uplink: an idempotent producer that says, for each message, OK or RETRY
when offered and, later, delivered or failed. What to send, and what a failure means, is the
forwarder's business (as Fluent Bit's core owns retries for its outputs)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from gateway.uplink.link import LinkState
from gateway.wire import seq_of

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


class KafkaOutput:
    """One producer session. ``offer`` is OK (True) or RETRY (False: the local queue is full);
    ``poll`` serves delivery reports and returns (delivered, failed) sequence numbers."""

    def __init__(self, client_config: dict[str, Any], link: LinkState, clock: Callable[[], float],
                 queue_messages: int) -> None:
        from confluent_kafka import Producer

        self.link = link
        self.clock = clock
        self.fatal = False
        self._reports: list[int] = []  # filled by callbacks, which run inside poll() on the caller's thread
        self._producer: Any = Producer({
            "enable.idempotence": True,
            "acks": "all",
            # No timeout: during an outage librdkafka keeps every message and retries in order, so a
            # rider's events never overtake each other; the spool holds them across restarts.
            "message.timeout.ms": 0,
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": queue_messages,
            "compression.type": "lz4",
            "reconnect.backoff.ms": 200,
            "reconnect.backoff.max.ms": 5_000,
            "error_cb": self._on_error,
            "on_delivery": self._on_delivery,
            "logger": _librdkafka_log,
            **client_config,  # bootstrap.servers and the operator's own properties win
        })

    def close(self) -> None:
        """Let the producer go now: it holds this object's callbacks (a cycle the collector would
        break only later, with the producer's sockets open until then). Unacknowledged messages
        stay undelivered in the spool."""
        self._producer = None

    def offer(self, topic: str, key: str, payload: bytes) -> bool:
        try:
            self._producer.produce(topic, value=payload, key=key)
        except BufferError:
            self._producer.poll(0.1)
            return False
        return True

    def poll(self, timeout: float) -> tuple[list[int], list[int]]:
        self._producer.poll(timeout)
        reports, self._reports = self._reports, []
        return [s for s in reports if s > 0], [-s for s in reports if s < 0]

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

    def _on_delivery(self, err: Any, msg: Any) -> None:
        # One callback for all messages (cheaper than a closure each): the sequence number is in
        # the message itself.
        seq = seq_of(msg.value())
        self._reports.append(seq if err is None else -seq)
