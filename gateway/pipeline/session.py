"""Which session live events belong to: one per outing, surviving restarts of the box."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence

from gateway.errors import GatewayError
from gateway.spool.store import Spool

CLOCK_SLACK_S = 300.0
TAG = re.compile(r"^[A-Za-z0-9_.-]{1,32}=[^\n]{0,64}$")


class SessionError(GatewayError):
    """A session that cannot be started or ended as asked."""

    http_status = 409


def parse_tags(tags: Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    """``["tyres=1.6bar", "bike=hardtail"]`` (or a mapping) as a dict; says which tag is wrong."""
    if tags is None:
        return {}
    items = list(tags.items()) if isinstance(tags, Mapping) else []
    if not isinstance(tags, Mapping):
        for tag in tags:
            if not isinstance(tag, str) or not TAG.match(tag.strip()):
                raise SessionError(f"tag {tag!r} is not name=value",
                                   hint="for example tyres=1.6bar: a name of letters, digits, _ . - (up to 32), "
                                        "a value of up to 64 characters")
            name, value = tag.strip().split("=", 1)
            items.append((name, value))
    for name, value in items:
        if not TAG.match(f"{name}={value}"):
            raise SessionError(f"tag {name}={value} is not name=value")
    return dict(items)


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
