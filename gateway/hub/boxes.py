"""Each box's spools as the hub saw them: a box that started a new spool (reinstalled, a new SD card,
its state directory deleted) and two spools of one gateway id sending at the same time (two boxes
configured alike), in plain words for the status strip. Pure: rows of the ``spools`` table in."""

from __future__ import annotations

import time
from collections.abc import Sequence
from itertools import combinations
from typing import Any

OVERLAP_S = 60.0  # two spools interleave when both their times of arrival and their events' overlap this long
CHANGE_SHOWN_S = 86_400.0  # a new spool is said on the status strip for a day


def _clock(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))


def spool_report(rows: Sequence[Sequence[Any]], now: float) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """(box -> its spools, oldest first; warnings). A row: gateway, spool ('' for events older than
    spool ids), first and last seen by the hub (unix s), first and last event time, events."""
    boxes: dict[str, dict[str, Any]] = {}
    for gateway, spool, first_seen, last_seen, first_wall, last_wall, events in rows:
        box = boxes.setdefault(gateway, {"spools": []})
        box["spools"].append({"spool": spool, "first_seen": first_seen, "last_seen": last_seen,
                              "first_event": first_wall, "last_event": last_wall, "events": events})
    warnings = []
    for gateway, box in sorted(boxes.items()):
        spools = sorted(box["spools"], key=lambda s: s["first_seen"])
        box["spools"] = spools
        box["spool"] = spools[-1]["spool"]
        own = [s for s in spools if s["spool"]]
        for a, b in combinations(own, 2):
            arrived = min(a["last_seen"], b["last_seen"]) - max(a["first_seen"], b["first_seen"])
            happened = (min(a["last_event"], b["last_event"]) - max(a["first_event"], b["first_event"])
                        if None not in (a["last_event"], b["last_event"], a["first_event"], b["first_event"]) else 0)
            if arrived > OVERLAP_S and happened > OVERLAP_S:
                box["interleaved"] = True
                warnings.append(f"{gateway}: two spools ({a['spool']} and {b['spool']}) send events of the same "
                                f"time: two boxes have gateway.id {gateway}; give each box its own id")
        if len(own) > 1:  # from '' to a spool of its own is an upgrade, not a box that started over
            newest = spools[-1]
            box["changed"] = newest["first_seen"]
            if not box.get("interleaved") and now - newest["first_seen"] < CHANGE_SHOWN_S:
                warnings.append(f"{gateway} started a new spool ({newest['spool']}) at {_clock(newest['first_seen'])} "
                                "(reinstalled, a new SD card or its state deleted): its events since then are a new "
                                "stream, and none are lost")
    return boxes, warnings
