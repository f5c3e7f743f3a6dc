"""`trackside-gateway status` in plain words, from the daemon's status file."""

from __future__ import annotations

import time
from typing import Any


def _ago(t: float | None, now: float) -> str:
    if not t:
        return "-"
    s = int(now - t)
    return f"{s} s ago" if s < 120 else f"{s // 60} min ago"


def report(doc: dict[str, Any]) -> str:
    now = time.time()
    c = doc.get("components", {})
    daemon, spool, kafka, engine = c.get("daemon", {}), c.get("spool", {}), c.get("kafka", {}), c.get("engine", {})
    health = c.get("health", {})
    state = "NOT RUNNING (last seen " + _ago(doc.get("time"), now) + ")" if doc.get("stale") else "running"
    lines = [f"trackside-gateway: {state}, pid {doc.get('pid')}, up {int(doc.get('uptime_s', 0)) // 60} min, "
             f"page on port {daemon.get('web_port') or 'off'}",
             f"session: {engine.get('session', '-')}, riders seen {engine.get('riders_seen', 0)}, "
             f"segment results {engine.get('results', 0)}"]
    sources = [f"{name[7:]} {part.get('state')}" for name, part in c.items() if name.startswith("source.")]
    lines.append("sources: " + (", ".join(sources) if sources else "none running"))
    for replay in c.get("replays", {}).get("replays", []):
        share = 100 * replay["elapsed_s"] / replay["duration_s"] if replay.get("duration_s") else 100
        lines.append(f"replay {replay['session']}: {replay['state']}, {share:.0f}%, {replay['results']} results")
    used = spool.get("used_bytes", 0) / 1e6
    waiting = (f"{spool.get('backlog_rows', 0)} not yet delivered (oldest {_ago(spool.get('backlog_oldest'), now)})"
               if kafka.get("enabled") else "kept on the box")
    lines.append(f"spool: {spool.get('last_seq', 0)} events, {waiting}, {used:.1f} of "
                 f"{spool.get('max_bytes', 0) / 1e6:.0f} MB" + (", FULL" if spool.get("full") else ""))
    if not kafka.get("enabled"):
        lines.append("uplink: off (Kafka disabled in the config)")
    elif kafka.get("connected"):
        lines.append(f"uplink: connected, {kafka.get('delivered', 0)} delivered, {kafka.get('in_flight', 0)} in flight")
    else:
        lines.append(f"uplink: DOWN since {_ago(kafka.get('down_since'), now)}; last error: {kafka.get('last_error')}")
    disk = health.get("disk", {})
    if disk:
        lines.append(f"disk: {disk.get('free_bytes', 0) / 1e9:.1f} GB free" + (" (LOW)" if disk.get("low") else ""))
    synced = health.get("clock_synchronised")
    lines.append("clock: " + {True: "synchronised", False: "NOT synchronised", None: "unknown"}[synced])
    for warning in health.get("warnings") or []:
        lines.append(f"warning: {warning}")
    return "\n".join(lines)
