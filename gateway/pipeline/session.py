"""Which session live events belong to: one per outing, surviving restarts of the box."""

from __future__ import annotations

import time

from gateway.spool.store import Spool

CLOCK_SLACK_S = 300.0


def live_session(spool: Spool, gateway_id: str, gap_h: float, now: float | None = None) -> str:
    """The session recorded in the spool, unless the spool has been quiet for ``gap_h`` hours.

    A restart in the middle of a training keeps its session (so the engine can rebuild its open
    segments); switching the box on the next morning starts a new one.
    """
    now = time.time() if now is None else now
    current = spool.meta("live_session")
    last = spool.meta("live_session_seen")
    # A clock that went backwards (a box without NTP that booted on an old time) is not "a restart in
    # the middle of a training": it could be last month's session.
    if current and last and -CLOCK_SLACK_S <= now - float(last) < gap_h * 3600:
        return current
    session = f"{gateway_id}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now))}"
    if session == current:
        session += "-2"
    spool.set_meta("live_session_started", repr(now))
    spool.set_meta("live_session", session)
    spool.set_meta("live_session_seen", repr(now))
    return session


def touch(spool: Spool, now: float | None = None) -> None:
    spool.set_meta("live_session_seen", repr(time.time() if now is None else now))
