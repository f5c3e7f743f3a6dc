"""The report's plain words, before any number table: where a rider lost time across the laps, and
whether their power fell there or something else did (line, technique, traffic). Pure: the debrief's
fatigue data in, sentences out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.results.export import clock

QUADRANT_WORDS = {"efficient": "Efficient (faster with less power)", "strong": "Strong (faster with more power)",
                  "costly": "Costly (slower with more power)", "easy": "Easy (slower with less power)",
                  "": "about average (time or power within half a standard deviation)"}
# Below this a lap's loss is timing noise, not a story for the rider.
MEANINGFUL_S = 0.5
# A power change smaller than this is a meter's lap-to-lap noise, not a fall.
POWER_DROP = 0.02


def _segment(s: Mapping[str, Any]) -> str:
    return f"{s['segment']} {s['segment_name']}"


def _lap_totals(series: Sequence[Mapping[str, Any]]) -> dict[int, float]:
    """Each lap's time over the segments ridden on every lap (a lap missing one is left out)."""
    segments = {s["segment"] for s in series}
    times: dict[int, dict[int, float]] = {}
    for s in series:
        for lap in s["laps"]:
            times.setdefault(lap["lap"], {})[s["segment"]] = float(lap["time_s"])
    return {lap: sum(t.values()) for lap, t in sorted(times.items()) if set(t) == segments}


def _whole_laps(series: Sequence[Mapping[str, Any]]) -> str | None:
    totals = _lap_totals(series)
    if len(totals) < 2:
        return None
    first, last = min(totals), max(totals)
    change = totals[last] - totals[first]
    way = "longer" if change > 0 else "shorter"
    return (f"Lap {last} took {clock(totals[last])}, {abs(change):.1f} s ({100 * abs(change) / totals[first]:.1f} %) "
            f"{way} than lap {first} ({clock(totals[first])}).")


def _worst(series: Sequence[Mapping[str, Any]]) -> tuple[Mapping[str, Any], Mapping[str, Any]] | None:
    """The segment and lap with the most time lost against the rider's first lap there."""
    best: tuple[float, Mapping[str, Any], Mapping[str, Any]] | None = None
    for s in series:
        first = s["laps"][0]
        for lap in s["laps"][1:]:
            lost = float(lap["time_s"]) - float(first["time_s"])
            if best is None or lost > best[0]:
                best = (lost, s, lap)
    if best is None or best[0] < MEANINGFUL_S:
        return None
    return best[1], best[2]


def _why(s: Mapping[str, Any], lap: Mapping[str, Any]) -> str:
    """Whether power explains a lap's loss (the segment's own power-time slope across the squad)."""
    first = s["laps"][0]
    if not lap.get("power_w") or not first.get("power_w"):
        return "No power was heard there on both laps, so power and technique cannot be told apart."
    powers = f"{first['power_w']:.0f} W on lap {first['lap']}, {lap['power_w']:.0f} W on lap {lap['lap']}"
    explained, rest = lap.get("power_explains_s"), lap.get("rest_s")
    if explained is None or rest is None:
        return f"Power: {powers} (too few results on this segment to say how much of the time it explains)."
    lost = explained + rest
    drop = 1 - float(lap["power_w"]) / float(first["power_w"])
    if drop > POWER_DROP and explained > 0 and rest < MEANINGFUL_S:
        return f"Power fell there ({powers}) and explains the loss."
    if drop > POWER_DROP and explained > 0:
        share = "explains about" if explained >= lost / 2 else "explains only about"
        return (f"Power fell there ({powers}) and {share} {min(explained, lost):.1f} s of it; the other "
                f"{max(rest, 0.0):.1f} s is line, technique or traffic.")
    if drop > POWER_DROP:
        return (f"Power fell there ({powers}), but on this segment the squad's laps show no time cost of power: "
                f"the {lost:.1f} s is line, technique or traffic.")
    return f"Power held there ({powers}): the {lost:.1f} s lost is line, technique or traffic, not power."


def _trends(series: Sequence[Mapping[str, Any]]) -> list[str]:
    out = []
    for s in series:
        t = s["time_trend"]
        if t["low_pct"] is None or t["high_pct"] is None or (t["low_pct"] <= 0 <= t["high_pct"]):
            continue
        way = "Slower" if t["low_pct"] > 0 else "Faster"
        out.append(f"{way} lap after lap on {_segment(s)}: {t['per_lap_pct']:+.1f} % a lap "
                   f"(95 % interval {t['low_pct']:+.1f} to {t['high_pct']:+.1f} %).")
    return out


def quadrant_tally(rows: Sequence[Mapping[str, Any]]) -> str | None:
    """Where the rider's segments fell on the matrix, in words."""
    from gateway.debrief.fatigue import quadrant

    counts = Counter(quadrant(r) for r in rows if r.get("time_zscore") is not None
                     and r.get("power_zscore") is not None)
    if not counts:
        return None
    parts = [f"{n} {QUADRANT_WORDS[q]}" for q, n in counts.most_common()]
    return f"On the matrix, {sum(counts.values())} segments against the squad: " + "; ".join(parts) + "."


def rider(series: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """A rider's session in a few sentences: ``series`` is their part of the debrief's fatigue."""
    out: list[str] = []
    laps = sorted({lap["lap"] for s in series for lap in s["laps"]})
    if len(laps) < 2:
        out.append("One lap: nothing to compare across laps; the matrix shows each segment against the squad.")
    else:
        whole = _whole_laps(series)
        if whole:
            out.append(whole)
        worst = _worst(series)
        if worst is None:
            out.append(f"No segment was more than {MEANINGFUL_S} s slower than on lap {laps[0]}.")
        else:
            s, lap = worst
            first = s["laps"][0]
            lost = float(lap["time_s"]) - float(first["time_s"])
            out.append(f"Most time lost on {_segment(s)}: lap {lap['lap']} was {lost:.1f} s "
                       f"({100 * lost / float(first['time_s']):.1f} %) slower than lap {first['lap']}.")
            out.append(_why(s, lap))
        out += _trends(series)
    tally = quadrant_tally(rows)
    if tally:
        out.append(tally)
    return out


def squad(fatigue: Mapping[str, Any]) -> list[str]:
    """The squad's session in a few sentences, segment by segment."""
    laps = {lap["lap"] for s in fatigue["series"] for lap in s["laps"]}
    if len(laps) < 2:
        return ["One lap: no change across laps to show; the lap grid and the matrix show the segments."]
    out = []
    for seg in fatigue["squad"]:
        if seg["median_per_lap_pct"] is None:
            continue
        text = (f"{seg['segment']} {seg['segment_name']}: the squad's median change "
                f"{seg['median_per_lap_pct']:+.1f} % a lap")
        if seg["fading"]:
            text += "; slower lap after lap: " + ", ".join(seg["fading"])
        out.append(text + ".")
    return out
