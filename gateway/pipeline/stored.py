"""A stored session read back from the spool: its power samples and crossings as typed events with
their riders, as ingest accepted them (a review plays them again; added files complete them)."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

from gateway.model import GateCrossing, PowerSample
from gateway.spool.store import Spool
from gateway.wire import WireError, decode_event

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredEvent:
    event: PowerSample | GateCrossing
    rider_id: str | None


def stored_events(spool: Spool, session_id: str, where: str) -> Iterator[StoredEvent]:
    """Every usable power sample and crossing of ``session_id`` in spool order; a sample flagged
    implausible, of nobody's meter or without a value is left out (never averaged live either)."""
    for row in spool.queries.since(0, kinds=("power", "crossing"), session_id=session_id):
        try:
            decoded = decode_event(row.kind, row.payload)
        except WireError as exc:
            log.error("%s of %s: spool row %d skipped: %s", where, session_id, row.seq, exc.reason)
            continue
        event = decoded.event
        if isinstance(event, PowerSample):
            if row.rider_id is None or decoded.implausible or math.isnan(event.power):
                continue
            yield StoredEvent(event, row.rider_id)
        elif isinstance(event, GateCrossing):
            yield StoredEvent(event, row.rider_id)
