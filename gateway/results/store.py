"""Segment results as stored in the spool: per session, with withdrawn results taken out."""

from __future__ import annotations

from typing import Any

from gateway.model import SegmentResult
from gateway.spool.store import Spool


def sessions(spool: Spool) -> list[dict[str, Any]]:
    """Every session that has segment results, oldest first."""
    return [{"session": s, "results": n, "first": first, "last": last}
            for s, n, first, last in spool.segment_sessions()]


def session_results(spool: Spool, session_ids: list[str] | str) -> list[SegmentResult]:
    """The valid results of the given sessions, in the order they were produced."""
    wanted = [session_ids] if isinstance(session_ids, str) else session_ids
    out: dict[tuple[str, str, float, float, str], SegmentResult] = {}
    for session in wanted:
        for row in spool.segment_rows(session):
            result = SegmentResult.from_wire(row.message)
            key = (result.session_id, result.rider_id, result.start, result.end, result.number)
            if "withdrawn" in result.flags:
                out.pop(key, None)
            else:
                out[key] = result
    return list(out.values())
