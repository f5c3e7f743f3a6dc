"""Prometheus metrics for the operator: read from the status board at each scrape (nothing is
counted twice, nothing extra runs between scrapes), plus the process's CPU and memory.

Names follow Prometheus conventions: ``trackside_`` prefix, units in names, ``_total`` counters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from gateway.status import StatusBoard
from gateway.uplink.link import LATENCY_BUCKETS
from gateway.watch import openssl

LINK_STATES = ("connected", "searching", "lost", "no adapter", "starting")


class StatusCollector:
    """A prometheus_client collector over the daemon's status board (and its stream's clients)."""

    def __init__(self, status: StatusBoard, stream: Callable[[], dict[str, int]] | None = None) -> None:
        self.status = status
        self.stream = stream

    def describe(self) -> list[Any]:
        return []  # collected fresh at each scrape

    def collect(self) -> Iterator[Any]:
        snapshot = self.status.snapshot()
        parts = snapshot.get("components", {})
        spool, ingest, kafka, engine = (parts.get(k) or {} for k in ("spool", "ingest", "kafka", "engine"))
        yield from _events(spool, ingest, engine)
        yield from _spool(spool, snapshot.get("time") or 0)
        yield from _uplink(kafka)
        yield from _sources(parts)
        if self.stream is not None:
            from prometheus_client.core import GaugeMetricFamily

            stream = self.stream()
            yield GaugeMetricFamily("trackside_sse_clients", "Open live streams", value=stream["clients"])
            yield GaugeMetricFamily("trackside_sse_queue_depth_events", "Events waiting in the fullest stream's queue",
                                    value=stream["deepest"])


def _events(spool: dict[str, Any], ingest: dict[str, Any], engine: dict[str, Any]) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    accepted = CounterMetricFamily("trackside_events_accepted", "Events accepted into the spool, by kind",
                                   labels=["kind"])
    for kind, n in sorted((spool.get("appended_by_kind") or {}).items()):
        accepted.add_metric([kind], n)
    yield accepted
    for name, key, text in (("trackside_events_rejected", "rejected", "Events the spool refused (full, disk)"),
                            ("trackside_events_dropped", "dropped", "Undelivered events dropped by the full "
                                                                    "policy drop_oldest")):
        yield CounterMetricFamily(name, text, value=spool.get(key) or 0)
    yield CounterMetricFamily("trackside_ingest_overflow", "Events a full ingest queue could not take",
                              value=ingest.get("overflow") or 0)
    implausible = CounterMetricFamily("trackside_power_implausible", "Readings kept flagged, never averaged",
                                      labels=["source"])
    for source, n in sorted((ingest.get("implausible") or {}).items()):
        implausible.add_metric([source], n)
    yield implausible
    # A counter never goes down: results stored since the daemon started, live and replays alike (the
    # live session's own count starts again at each session: a gauge).
    yield CounterMetricFamily("trackside_segment_results", "Segment results stored (live and replays)",
                              value=(spool.get("appended_by_kind") or {}).get("segment") or 0)
    yield GaugeMetricFamily("trackside_live_session_segment_results", "Segment results of the live session",
                            value=engine.get("results") or 0)


def _spool(spool: dict[str, Any], now: float) -> Iterator[Any]:
    from prometheus_client.core import GaugeMetricFamily

    yield GaugeMetricFamily("trackside_spool_used_bytes", "Bytes the spool's rows use",
                            value=spool.get("used_bytes") or 0)
    yield GaugeMetricFamily("trackside_spool_max_bytes", "The spool's cap", value=spool.get("max_bytes") or 0)
    yield GaugeMetricFamily("trackside_spool_backlog_events", "Events not yet delivered to Kafka",
                            value=spool.get("backlog_rows") or 0)
    oldest = spool.get("backlog_oldest")
    yield GaugeMetricFamily("trackside_spool_backlog_oldest_age_seconds", "Age of the oldest undelivered event",
                            value=max(0.0, now - oldest) if oldest else 0.0)
    yield GaugeMetricFamily("trackside_spool_full", "1 while the spool is full", value=1 if spool.get("full") else 0)


def _uplink(kafka: dict[str, Any]) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    yield GaugeMetricFamily("trackside_uplink_enabled", "1 when Kafka forwarding is configured",
                            value=1 if kafka.get("enabled") else 0)
    yield GaugeMetricFamily("trackside_uplink_connected", "1 while the broker acknowledges",
                            value=1 if kafka.get("connected") else 0)
    yield CounterMetricFamily("trackside_uplink_delivered", "Events acknowledged by Kafka",
                              value=kafka.get("delivered") or 0)
    yield CounterMetricFamily("trackside_uplink_failed", "Events Kafka refused", value=kafka.get("failed") or 0)
    yield GaugeMetricFamily("trackside_uplink_in_flight_events", "Events sent, not yet acknowledged",
                            value=kafka.get("in_flight") or 0)
    latency = kafka.get("latency")
    if latency:
        cumulative, buckets = 0, []
        for bound, n in zip((*LATENCY_BUCKETS, float("inf")), latency["buckets"], strict=True):
            cumulative += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        yield HistogramMetricFamily("trackside_uplink_delivery_latency_seconds",
                                    "From sending to Kafka's acknowledgement (one sample per rider per batch)",
                                    buckets=buckets, sum_value=latency["sum"])


def _sources(parts: dict[str, Any]) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    state = GaugeMetricFamily("trackside_source_state", "1 for the state each source is in",
                              labels=["source", "state"])
    # One family per kind of count (pages, lines, samples...): a sum over unlike counts means nothing.
    counters: dict[str, Any] = {}
    for name, part in sorted(parts.items()):
        if not name.startswith("source."):
            continue
        for s in sorted({*LINK_STATES, part.get("state") or "starting"}):
            state.add_metric([name[7:], s], 1 if part.get("state") == s else 0)
        for key, n in sorted((part.get("counters") or {}).items()):
            kind = re.sub(r"[^a-z0-9_]", "_", key.lower())
            family = counters.get(kind)
            if family is None:
                family = counters[kind] = CounterMetricFamily(
                    f"trackside_source_{kind}", f"What each source counted: {key.replace('_', ' ')}",
                    labels=["source"])
            family.add_metric([name[7:]], n)
    yield state
    yield from counters.values()


class HubCollector:
    """The hub's consumer: rows written per table, repeats, dead letters, lag, each box's last event."""

    def __init__(self, status: StatusBoard) -> None:
        self.status = status

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        snapshot = self.status.snapshot()
        hub = snapshot.get("components", {}).get("hub") or {}
        rows = CounterMetricFamily("trackside_hub_rows_written", "Rows the hub wrote to PostgreSQL", labels=["table"])
        for table, key in (("power", "power_rows"), ("crossings", "crossing_rows"), ("segments", "segment_rows")):
            rows.add_metric([table], hub.get(key) or 0)
        yield rows
        yield CounterMetricFamily("trackside_hub_duplicates_skipped", "Events already written (a redelivery)",
                                  value=hub.get("duplicates_skipped") or 0)
        yield CounterMetricFamily("trackside_hub_dead_letters", "Messages set aside with their reason",
                                  value=hub.get("dead_letters") or 0)
        yield CounterMetricFamily("trackside_hub_batches", "Batches written, one transaction each",
                                  value=hub.get("batches") or 0)
        yield GaugeMetricFamily("trackside_hub_database_connected", "1 while PostgreSQL takes the writes",
                                value=1 if hub.get("db_connected") else 0)
        lag = GaugeMetricFamily("trackside_hub_consumer_lag_messages", "Messages behind, per topic and partition",
                                labels=["topic", "partition"])
        for topic, partitions in sorted((hub.get("lag") or {}).items()):
            for partition, n in sorted(partitions.items(), key=lambda p: int(p[0])):
                lag.add_metric([topic, str(partition)], n)
        yield lag
        now = snapshot.get("time") or 0
        age = GaugeMetricFamily("trackside_hub_last_event_age_seconds",
                                "Since the hub last received each box's events (its own clock)", labels=["gateway"])
        for gateway, t in sorted((hub.get("last_event") or {}).items()):
            age.add_metric([gateway], max(0.0, now - t))
        yield age


def registry(status: StatusBoard, stream: Callable[[], dict[str, int]] | None = None, *,
             hub: bool = False) -> Callable[[], bytes]:
    """The text a scrape returns: the box's (or the hub's) collector and the process's CPU, memory and files.

    prometheus_client is imported at the first scrape: a box nobody scrapes does not carry its 3 MB."""
    built: list[Callable[[], bytes]] = []

    def scrape() -> bytes:
        if not built:
            openssl.let_in()  # prometheus_client imports ssl
            from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest

            reg = CollectorRegistry()
            reg.register(HubCollector(status) if hub else StatusCollector(status, stream))
            ProcessCollector(registry=reg)
            built.append(lambda: generate_latest(reg))
        return built[0]()

    return scrape
