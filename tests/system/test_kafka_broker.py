"""The real Apache Kafka broker the other Kafka tests rely on: a message goes in and comes out."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.kafka


def test_produce_and_consume_round_trip(kafka_bootstrap: str) -> None:
    from confluent_kafka import Consumer, KafkaException, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"roundtrip-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).values():
        future.result(timeout=30)

    delivered: list[tuple[str, int]] = []
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True, "acks": "all"})
    producer.produce(topic, key=b"r01", value=b'{"event_id": "box:1"}',
                     on_delivery=lambda err, msg: delivered.append((str(err), msg.offset())))
    assert producer.flush(30) == 0
    assert delivered == [("None", 0)]

    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"g-{topic}",
                         "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([topic])
        msg = None
        for _ in range(60):
            msg = consumer.poll(1.0)
            if msg is not None:
                break
        assert msg is not None, "no message within 60 s"
        if msg.error():
            raise KafkaException(msg.error())
        assert (msg.key(), msg.value()) == (b"r01", b'{"event_id": "box:1"}')
    finally:
        consumer.close()
    del producer, admin
