"""What can go wrong at the course, in plain words: disk, clock, uplink, sensors, the pipeline itself."""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import time
from pathlib import Path
from typing import Any

LOW_DISK_BYTES = 500 * 1024 * 1024
LOW_DISK_SHARE = 0.05
UPLINK_DOWN_WARN_S = 300.0
TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised


class _Timex(ctypes.Structure):
    # Only the leading fields matter; the rest is padding large enough for the kernel's struct.
    _fields_ = [("modes", ctypes.c_uint), ("pad", ctypes.c_byte * 256)]


def clock_synchronised() -> bool | None:
    """True/False from the kernel (adjtimex), None where it cannot be asked."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        state = libc.adjtimex(ctypes.byref(_Timex()))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return bool(state != TIME_ERROR)


def disk(path: Path) -> dict[str, Any]:
    usage = shutil.disk_usage(path)
    low = usage.free < LOW_DISK_BYTES or usage.free < usage.total * LOW_DISK_SHARE
    return {"free_bytes": usage.free, "total_bytes": usage.total, "low": low}


def warnings(components: dict[str, dict[str, Any]], disk_info: dict[str, Any], synced: bool | None,
             now: float | None = None) -> list[str]:
    """The plain-word warnings for the status strip, most urgent first."""
    now = time.time() if now is None else now
    out = []
    spool = components.get("spool", {})
    if spool.get("full"):
        what = "the oldest are dropped" if spool.get("policy") == "drop_oldest" else "new events are refused"
        out.append(f"spool full: {what}")
    if disk_info.get("low"):
        out.append(f"low disk: {disk_info['free_bytes'] // (1024 * 1024)} MB free")
    kafka = components.get("kafka", {})
    if kafka.get("enabled") and spool.get("set_aside"):
        why = f" (last: {kafka['refused_last']})" if kafka.get("refused_last") else ""
        out.append(f"uplink: {spool['set_aside']} event(s) refused by Kafka, kept on the box and set aside; the "
                   f"stream goes on{why}")
    if kafka.get("enabled") and not kafka.get("connected") and kafka.get("down_since"):
        down = now - kafka["down_since"]
        if down > UPLINK_DOWN_WARN_S:
            out.append(f"uplink down for {int(down // 60)} min: events are kept on the box")
    for name, part in components.items():
        if name.startswith("task.") and part.get("state") == "restarting":
            out.append(f"{name[5:]} failed {part.get('failures')} times, restarted ({part.get('error')})")
        if name.startswith("source.") and part.get("state") in ("lost", "no adapter", "error"):
            out.append(f"{name[7:]}: {part['state']}" + (f" ({part['detail']})" if part.get("detail") else ""))
    if synced is False:
        out.append("clock not synchronised: segment times still come from the timing gates")
    degraded = components.get("degraded", {})
    if degraded.get("reason"):
        out.insert(0, f"degraded: {degraded['reason']}")
    out += components.get("hub", {}).get("warnings") or []
    if components.get("riderbook", {}).get("damaged"):
        out.append(f"rider book: {components['riderbook']['damaged']}")
    if components.get("security", {}).get("weak_admin_token"):
        out.append("the admin PIN is weak (the shipped example, or shorter than 8 characters): set web.admin_token")
    return out
