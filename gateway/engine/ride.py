"""Whole-ride and per-lap metrics of a recorded ride: what `trackside-gateway metrics` prints."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

from gateway.engine.metrics import PowerMetrics, Stretch, power_metrics, training_stress_score, tss_seconds
from gateway.readers.fit import Lap, Ride

REPORT_KEYS = ("duration_s", "power_avg", "cadence_avg", "normalized_power", "intensity_factor", "tss",
               "watts_per_kg", "coverage", "samples", "flags")


def _stretch(ride: Ride, lap: Lap, ftp: float | None, weight: float | None, tss_time: str,
             np_window: str) -> PowerMetrics:
    start, end = lap.start, lap.end
    m = power_metrics(Stretch(ride.times, ride.power, ride.cadence, start, end), ftp_w=ftp, weight_kg=weight,
                      duration_s=lap.timer_time, np_window=np_window)
    if m.normalized_power is None or not ftp:
        return m
    inside = (ride.times >= start) & (ride.times < end)
    seconds = tss_seconds(tss_time, m, ride.power[inside])
    return replace(m, tss=training_stress_score(seconds, m.normalized_power, ftp))


def _as_dict(m: PowerMetrics) -> dict[str, Any]:
    d = asdict(m)
    d["flags"] = list(m.flags)
    return {k: d[k] for k in REPORT_KEYS}


def ride_report(ride: Ride, *, ftp_w: float | None = None, weight_kg: float | None = None,
                tss_time: str = "rolling", np_window: str = "segment") -> dict[str, Any]:
    """The ride's and each lap's metrics; FTP and weight default to what the file records.

    The ride's NP is the same under both windows (the ride is its own window); laps differ.
    """
    ftp = ftp_w if ftp_w is not None else ride.ftp_w
    weight = weight_kg if weight_kg is not None else ride.weight_kg
    whole = _stretch(ride, Lap(ride.start, ride.end, ride.timer_time), ftp, weight, tss_time, "segment")
    laps = [{"lap": i + 1, **_as_dict(_stretch(ride, lap, ftp, weight, tss_time, np_window))}
            for i, lap in enumerate(ride.laps)]
    return {
        "file": ride.path,
        "sport": ride.sport,
        "note": ride.note,
        "ftp_w": ftp,
        "weight_kg": weight,
        "tss_time": tss_time,
        "np_window": np_window,
        "ride": _as_dict(whole),
        "laps": laps,
        "device": asdict(ride.device),
    }


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _clock(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def format_report(report: dict[str, Any]) -> str:
    ftp, weight = report["ftp_w"], report["weight_kg"]
    lines = [
        f"{report['file']}: {report['sport'] or 'unknown sport'}, "
        f"FTP {_fmt(ftp, '.0f')} W, weight {_fmt(weight, '.1f')} kg, TSS time: {report['tss_time']}, "
        f"lap NP window: {report['np_window']}",
        f"{'':8} {'duration':>9} {'avg W':>7} {'NP W':>7} {'IF':>6} {'TSS':>7} {'W/kg':>6} {'cover':>6}",
    ]
    rows = [("ride", report["ride"])] + [(f"lap {lap['lap']}", lap) for lap in report["laps"]]
    for label, m in rows:
        lines.append(
            f"{label:8} {_clock(m['duration_s']):>9} {_fmt(m['power_avg'], '.0f'):>7} "
            f"{_fmt(m['normalized_power'], '.1f'):>7} {_fmt(m['intensity_factor'], '.3f'):>6} "
            f"{_fmt(m['tss'], '.1f'):>7} {_fmt(m['watts_per_kg'], '.2f'):>6} {m['coverage']:>6.0%}"
            + (f"  {', '.join(m['flags'])}" if m["flags"] else "")
        )
    if report.get("note"):
        lines.insert(1, report["note"])
    dev = report["device"]
    if dev.get("normalized_power") is not None:
        lines.append(f"head unit: NP {_fmt(dev['normalized_power'], '.0f')} W, "
                     f"IF {_fmt(dev['intensity_factor'], '.3f')}, "
                     f"TSS {_fmt(dev['tss'], '.1f')}, FTP {_fmt(dev['ftp_w'], '.0f')} W")
    return "\n".join(lines)
