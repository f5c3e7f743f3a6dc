"""The whole daemon under a realistic trackside load, pinned to one core.

100 riders' power meters at 4 Hz and their gate crossings (the synthetic load source, through
the same ingest path as live sensors), Kafka connected (a real broker), 10 SSE clients (nine
readers and one headless Chromium measuring gate-to-browser latency), the daemon pinned to CPU 0
with taskset, for BENCH_DAEMON_S seconds (default 180). Reported: CPU share of that core, peak
and steady RSS and its growth, disk bytes written per minute, start-up time to READY (sd_notify),
and the gate-to-browser latency p50/p95.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from benchmarks.browser import ARGS, wait_until

ROOT = Path(__file__).resolve().parents[2]
RIDERS, RATE_HZ = 100, 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _proc(pid: int) -> tuple[float, int, int, int]:
    """(cpu seconds, rss bytes, peak rss bytes, bytes written to storage)"""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(stat[11]) + int(stat[12])) / ticks
    status = {line.split(":")[0]: line.split(":")[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines()}
    rss = int(status["VmRSS"].split()[0]) * 1024
    hwm = int(status["VmHWM"].split()[0]) * 1024
    io = {line.split(":")[0]: int(line.split(":")[1]) for line in Path(f"/proc/{pid}/io").read_text().splitlines()}
    return cpu, rss, hwm, io["write_bytes"]


def _payload_bytes(spool: Path, since: float, until: float) -> int:
    """Bytes of the Kafka messages the spool accepted between two wall-clock times (whole messages,
    as sent: the spool stores them folded)."""
    from gateway.spool.store import Spool

    store = Spool(spool, "bench", readonly=True).open()
    try:
        return sum(len(row.payload) for row in store.queries.since(0) if since < row.recv_time <= until)
    finally:
        store.close()


def _reader(port: int, address: str, stop: threading.Event) -> None:
    """One phone's live stream. Each from its own address: the box admits only a few streams per
    address (a hog must not starve the phones), and the browser measuring latency is another."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(address, 0))
    try:
        conn.request("GET", "/stream")
        reply = conn.getresponse()
        while not stop.is_set() and reply.readline():
            pass
    except OSError:
        pass
    finally:
        conn.close()


def whole_daemon() -> list[tuple[str, dict[str, object]]]:
    from kafka_broker import Broker
    from playwright.sync_api import sync_playwright

    duration = float(os.environ.get("BENCH_DAEMON_S", "180"))
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        broker = Broker(work / "kafka")
        bootstrap = broker.start()
        port = _free_port()
        cfg = {
            "gateway": {"id": "bench", "state_dir": str(work / "state")},
            "course": {"gates": [{"id": g} for g in ("SF", "G1", "G2", "G3")], "debounce_s": 2},
            "riders": [{"id": f"r{i:03d}", "name": f"Rider {i}", "ftp_w": 280, "weight_kg": 68,
                        "transponder": f"T{i:03d}", "power_meters": [{"ant": 1000 + i}]} for i in range(RIDERS)],
            "sources": {"load": {"enabled": True, "rate_hz": RATE_HZ, "segment_s": 60}},
            "kafka": {"enabled": True, "bootstrap_servers": bootstrap},
            "web": {"host": "127.0.0.1", "port": port},
        }
        (work / "bench.yaml").write_text(json.dumps(cfg))
        notify = work / "notify.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(notify))
        sock.settimeout(30)
        # The box's pip install compiles the package's bytecode; this shell may forbid writing it
        # (PYTHONDONTWRITEBYTECODE), and start-up would then time the compiling of 150 modules.
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "gateway")], check=True)
        env = dict(os.environ, NOTIFY_SOCKET=str(notify), PYTHONPATH=str(ROOT))
        taskset = ["taskset", "-c", "0"] if shutil.which("taskset") else []
        t0 = time.monotonic()
        command = [*taskset, sys.executable, "-m", "gateway", "run", "--config", str(work / "bench.yaml")]
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=(work / "daemon.log").open("wb"))
        while b"READY=1" not in sock.recv(4096):
            pass
        ready_s = time.monotonic() - t0
        stop = threading.Event()

        def drain() -> None:  # as systemd would: keep reading the notifications
            sock.settimeout(0.5)
            while not stop.is_set():
                try:
                    sock.recv(4096)
                except OSError:
                    continue

        drainer = threading.Thread(target=drain)
        drainer.start()
        readers = [threading.Thread(target=_reader, args=(port, f"127.0.0.{10 + i}", stop)) for i in range(9)]
        for r in readers:
            r.start()
        samples = []
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS, headless=True)
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{port}/")
                wait_until(page, "window.trackside !== undefined")
                start = time.monotonic()
                while time.monotonic() - start < duration:
                    samples.append((time.monotonic(), *_proc(proc.pid), time.time()))
                    page.wait_for_timeout(5000)
                samples.append((time.monotonic(), *_proc(proc.pid), time.time()))
                latencies = page.evaluate("window.trackside.latencies")
                mapped = Path(f"/proc/{proc.pid}/maps").read_text()
                browser.close()
            status = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=10).read())
        finally:
            stop.set()
            proc.terminate()
            proc.wait(60)
            for r in readers:
                r.join(10)
            drainer.join(5)
            sock.close()
            broker.stop()
        warm = [s for s in samples if s[0] - samples[0][0] >= 30] or samples
        payload = _payload_bytes(work / "state" / "spool.sqlite", warm[0][5], warm[-1][5])
    cpu_share = (warm[-1][1] - warm[0][1]) / (warm[-1][0] - warm[0][0])
    third = warm[len(warm) // 3]
    steady_rss = statistics.mean(s[2] for s in warm[len(warm) // 2:]) / 1e6
    growth = (warm[-1][2] - third[2]) / 1e6
    disk_per_min = (warm[-1][4] - warm[0][4]) / ((warm[-1][0] - warm[0][0]) / 60)
    # Bytes the process caused to be written to storage (/proc/<pid>/io write_bytes) per byte of the
    # events' messages accepted in the same minutes.
    payload_per_min = payload / ((warm[-1][0] - warm[0][0]) / 60)
    amplification = disk_per_min / payload_per_min if payload_per_min else float("nan")
    ms = sorted(1000 * v for v in latencies)
    p50 = statistics.median(ms) if ms else float("nan")
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))] if ms else float("nan")
    kafka = status["components"].get("kafka", {})
    common = {"riders": RIDERS, "rate_hz": RATE_HZ, "seconds": duration, "pinned": bool(taskset)}
    return [
        ("daemon.cpu_share_of_one_core", {"value": round(100 * cpu_share, 1), "unit": "%", "target": "< 15 %",
                                          "ok": cpu_share < 0.15, **common}),
        ("daemon.rss_steady", {"value": round(steady_rss, 1), "unit": "MB", "target": "<= 60 MB",
                               "ok": steady_rss <= 60, "peak_mb": round(samples[-1][3] / 1e6, 1),
                               # What the live path must not carry (imported only by replays and files).
                               "numpy_loaded": "/numpy/" in mapped,
                               # OpenSSL is kept out of the daemon (gateway.watch.openssl) until a scrape.
                               "openssl_loaded": "libcrypto" in mapped}),
        ("daemon.rss_growth_over_run", {"value": round(growth, 1), "unit": "MB", "target": "< 5 MB", "ok": growth < 5,
                                        "rss_mb_every_5s": [round(s[2] / 1e6, 1) for s in samples]}),
        ("daemon.disk_written_per_minute", {"value": round(disk_per_min / 1e6, 2), "unit": "MB/min",
                                            "payload_mb_per_min": round(payload_per_min / 1e6, 2)}),
        ("daemon.write_amplification", {"value": round(amplification, 2), "unit": "x", "target": "<= 2x payload",
                                        "ok": amplification <= 2.0}),
        ("daemon.startup_to_ready", {"value": round(ready_s, 2), "unit": "s", "target": "< 0.3 s",
                                     "ok": ready_s < 0.3}),
        ("daemon.gate_to_browser_p95", {"value": round(p95, 1), "unit": "ms", "target": "< 200 ms", "ok": p95 < 200,
                                        "p50_ms": round(p50, 1), "points": len(ms),
                                        "kafka_delivered": kafka.get("delivered"),
                                        "backlog": kafka.get("backlog_rows")}),
    ]


BENCHMARKS = [("daemon", whole_daemon)]
