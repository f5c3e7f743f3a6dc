"""Gate-to-browser latency: from a gate crossing entering ingest to its segment's point drawn in
a real headless Chromium, over a replay, with 1 and with 30 SSE clients connected."""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from benchmarks.browser import ARGS, wait_until
from gateway import config
from gateway.service.daemon import Daemon


def _reader(url: str, stop: threading.Event, counts: list[int]) -> None:
    with urllib.request.urlopen(url, timeout=60) as stream:
        for line in stream:
            if line.startswith(b"id:"):
                counts[0] += 1
            if stop.is_set():
                return


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _run(clients: int) -> dict[str, object]:
    from playwright.sync_api import sync_playwright

    data = config.load(None).data
    # Thirty phones have thirty addresses; here every client is 127.0.0.1 (web.streams_per_address).
    data["web"].update(host="127.0.0.1", admin_token="bench", streams_per_address=clients)
    data["sources"]["replay"]["enabled"] = False
    with tempfile.TemporaryDirectory() as d:
        daemon = Daemon(config.Config(data, "bench"), state_dir=Path(d), port=0)
        thread = threading.Thread(target=lambda: asyncio.run(daemon.run()))
        thread.start()
        while daemon.web_port is None:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{daemon.web_port}"
        stop = threading.Event()
        counts = [0]
        readers = [threading.Thread(target=_reader, args=(base + "/stream", stop, counts)) for _ in range(clients - 1)]
        for r in readers:
            r.start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS, headless=True)
                page = browser.new_page()
                page.goto(base + "/")
                wait_until(page, "window.trackside !== undefined")
                request = urllib.request.Request(base + "/api/replays", method="POST",
                                                 data=json.dumps({"files": ["@sample"], "speed": 0.01}).encode(),
                                                 headers={"Content-Type": "application/json", "X-Admin-Token": "bench"})
                urllib.request.urlopen(request, timeout=30).close()
                wait_until(page, "window.trackside.count() >= 72", timeout=120)
                latencies = page.evaluate("window.trackside.latencies")
                browser.close()
        finally:
            stop.set()
            daemon.stop()
            thread.join(30)
            for r in readers:
                r.join(10)
    ms = [1000 * v for v in latencies]
    return {"p50_ms": round(statistics.median(ms), 1), "p95_ms": round(_percentile(ms, 0.95), 1),
            "points": len(ms), "other_clients_events": counts[0]}


def latency() -> list[tuple[str, dict[str, object]]]:
    out = []
    for clients in (1, 30):
        r = _run(clients)
        out.append((f"page.gate_to_browser_p95_{clients}_clients", {
            "value": r["p95_ms"], "unit": "ms", "target": "< 200 ms", "ok": r["p95_ms"] < 200, **r}))
    return out


BENCHMARKS = [("page.latency", latency)]
