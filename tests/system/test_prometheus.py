"""The operator's metrics (issue #17, point 5): /metrics scraped while the daemon runs with a load
source and a real broker; the counters move, the names follow Prometheus conventions, no token."""

from __future__ import annotations

import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from harness import RunningDaemon, wait_for


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = scrape_text(base)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape_text(base: str) -> str:
    with urllib.request.urlopen(base + "/metrics", timeout=10) as reply:
        assert reply.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"  # charset once
        return str(reply.read().decode())


def promtool_problems(text: str) -> str:
    """What Prometheus' own linter says of a scrape (`make test` fetches promtool: install-system-deps)."""
    import os
    import shutil
    import subprocess

    cached = Path(os.environ.get("TRACKSIDE_CACHE", Path.home() / ".cache" / "trackside-gateway")) / "bin" / "promtool"
    promtool = shutil.which("promtool") or str(cached)
    out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    return (out.stdout + out.stderr).strip() if out.returncode or out.stdout.strip() else ""


def test_metrics_move_while_the_daemon_runs(tmp_path: Path, kafka_bootstrap: str) -> None:
    tag = uuid.uuid4().hex[:8]

    def edit(data: dict[str, Any]) -> None:
        data["sources"]["load"] = {"enabled": True, "rate_hz": 4, "segment_s": 2}
        data["kafka"] = {"enabled": True, "bootstrap_servers": kafka_bootstrap,
                         "topics": {k: f"{k}-{tag}" for k in ("power", "crossings", "segments", "sessions")}}

    with RunningDaemon(tmp_path, edit=edit) as running:
        stream = urllib.request.urlopen(running.base + "/stream", timeout=10)  # one phone watching
        try:
            wait_for(lambda: scrape(running.base).get(("trackside_uplink_delivered_total", ()), 0) > 0, 60,
                     "the first delivery to Kafka")
            wait_for(lambda: scrape(running.base).get(("trackside_segment_results_total", ()), 0) > 0, 60,
                     "the first segment result")
            first = scrape(running.base)
            time.sleep(2.5)
            second = scrape(running.base)
            # A counter never goes down: not at a new session either (before, the results counter
            # dropped to 0 there, and Prometheus counted a reset).
            running.api("/api/session/start", {"name": "After lunch"})
            third = scrape(running.base)
            text = scrape_text(running.base)
        finally:
            stream.close()
    assert promtool_problems(text) == ""
    results = ("trackside_segment_results_total", ())
    assert third[results] >= second[results] >= first[results] > 0
    assert ("trackside_live_session_segment_results", ()) in third  # the live session's own: a gauge
    # One family per kind of count, each labelled by source alone.
    assert second[("trackside_source_samples_total", (("source", "load"),))] > 0
    assert second[("trackside_source_crossings_total", (("source", "load"),))] > 0
    assert not any(name == "trackside_source_events_total" for name, _ in second)
    power = ("trackside_events_accepted_total", (("kind", "power"),))
    assert second[power] > first[power] > 0
    assert second[("trackside_uplink_delivered_total", ())] > first[("trackside_uplink_delivered_total", ())]
    assert second[("trackside_uplink_connected", ())] == 1
    assert second[("trackside_uplink_delivery_latency_seconds_count", ())] > 0
    assert second[("trackside_source_state", (("source", "load"), ("state", "connected")))] == 1
    assert second[("trackside_sse_clients", ())] >= 1
    assert second[("trackside_spool_used_bytes", ())] > 0
    assert second[("process_resident_memory_bytes", ())] > 10e6
    assert second[("process_cpu_seconds_total", ())] > 0
    assert ("trackside_spool_backlog_oldest_age_seconds", ()) in second
