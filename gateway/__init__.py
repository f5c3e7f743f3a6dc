"""Trackside Gateway: power meters and timing gates beside the course, to Kafka and the coach's phone."""

__version__ = "0.1.0"
