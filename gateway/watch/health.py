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
    # struct timex (adjtimex(2)) up to the fields read here; the padding covers the rest of the
    # kernel's struct.
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("pad", ctypes.c_byte * 256)]


# Programs that discipline the clock, as /proc/<pid>/comm names them (15 characters at most).
CLOCK_DAEMONS = {"chronyd": "chrony", "ntpd": "ntpd", "systemd-timesyn": "systemd-timesyncd", "gpsd": "gps",
                 "ptp4l": "ptp", "phc2sys": "ptp"}


def _adjtimex() -> tuple[int, _Timex] | None:
    timex = _Timex()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        state = int(libc.adjtimex(ctypes.byref(timex)))  # modes 0: read only
    except (OSError, AttributeError):
        return None
    return None if state < 0 else (state, timex)


def clock_synchronised() -> bool | None:
    """True/False from the kernel (adjtimex), None where it cannot be asked."""
    got = _adjtimex()
    return None if got is None else got[0] != TIME_ERROR


def clock_state() -> dict[str, Any]:
    """What the box's clock is worth, for its session record (the hub places a box's events with it
    when no broadcast links the box to the others): synchronised or not, the kernel's estimated and
    maximum error in seconds, and what disciplines the clock (chrony, ntpd, systemd-timesyncd, a
    GPS, PTP; a list, empty when nothing runs)."""
    got = _adjtimex()
    sources = set()
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            name = comm.read_text().strip()
        except OSError:
            continue
        if name in CLOCK_DAEMONS:
            sources.add(CLOCK_DAEMONS[name])
    if got is None:
        return {"synchronised": None, "est_error_s": None, "max_error_s": None, "sources": sorted(sources)}
    state, timex = got
    return {"synchronised": state != TIME_ERROR, "est_error_s": timex.esterror / 1e6,
            "max_error_s": timex.maxerror / 1e6, "sources": sorted(sources)}


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
        out.append("clock not synchronised: segment times are the timing gates' own and stay exact; only matching "
                   "this box's power with other boxes' relies on the clock")
    degraded = components.get("degraded", {})
    if degraded.get("reason"):
        out.insert(0, f"degraded: {degraded['reason']}")
    out += components.get("hub", {}).get("warnings") or []
    out += components.get("course", {}).get("warnings") or []
    out += components.get("files", {}).get("warnings") or []
    if components.get("riderbook", {}).get("damaged"):
        out.append(f"rider book: {components['riderbook']['damaged']}")
    if components.get("security", {}).get("weak_admin_token"):
        out.append("the admin PIN is weak (the shipped example, or shorter than 8 characters): set web.admin_token")
    return out
