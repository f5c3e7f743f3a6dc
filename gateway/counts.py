"""Counts by name that stay small: a flood of names (20 000 strangers' chips on the Wi-Fi's doorstep,
made-up meters) must not grow the status, /api/radios and status.json without end. Shared by the
engine and ingest, which count devices they do not know."""

from __future__ import annotations

KEPT = 200  # names counted; past it the one counted longest ago goes


def bump(counts: dict[str, int], key: str, n: int = 1, kept: int = KEPT) -> int:
    """Count ``n`` more for ``key``, kept newest last; past ``kept`` names the oldest goes. Returns the
    count before."""
    before = counts.pop(key, 0)
    counts[key] = before + n
    if len(counts) > kept:
        del counts[next(iter(counts))]
    return before
