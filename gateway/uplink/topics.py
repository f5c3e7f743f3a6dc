"""The topics the box writes to, created when absent with the configured partitions and replicas."""

from __future__ import annotations

import logging
from typing import Any

from gateway.config.settings import KafkaSettings

log = logging.getLogger(__name__)


def ensure_topics(kafka: KafkaSettings, names: list[str], client_config: dict[str, Any]) -> None:
    """Create the topics in ``names`` that the cluster lacks; raises KafkaException when unreachable."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    config: dict[str, Any] = {**client_config, "logger": logging.getLogger("gateway.kafka.librdkafka")}
    admin = AdminClient(config)
    try:
        existing = set(admin.list_topics(timeout=2).topics)
        settings = ({} if kafka.min_insync_replicas is None
                    else {"min.insync.replicas": str(kafka.min_insync_replicas)})
        compacted = kafka.topics.get("sessions")
        wanted = [NewTopic(t, num_partitions=kafka.partitions, replication_factor=kafka.replication_factor,
                           config={**settings, **({"cleanup.policy": "compact"} if t == compacted else {})})
                  for t in sorted(set(names)) if t not in existing]
        for topic, future in admin.create_topics(wanted).items() if wanted else ():
            try:
                future.result(timeout=10)
                log.info("kafka: created topic %s (%d partitions)", topic, kafka.partitions)
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
    finally:
        del admin  # its sockets close now, not whenever a traceback that holds it is collected
