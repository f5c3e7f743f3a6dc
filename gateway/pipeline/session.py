"""Which session live events belong to: one per outing, surviving restarts of the box."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping

from gateway.errors import GatewayError
from gateway.spool.store import Spool

CLOCK_SLACK_S = 300.0
TAG = re.compile(r"^[A-Za-z0-9_.-]{1,32}=[^\n]{0,64}$")


class SessionError(GatewayError):
    """A session that cannot be started or ended as asked (the box's state: HTTP 409)."""

    http_status = 409


class SessionInputError(SessionError):
    """What was asked of a session is not well formed: a tag, a name, a note (HTTP 400)."""

    http_status = 400


MAX_TAGS = 20


def parse_tags(tags: object) -> dict[str, str]:
    """``["tyres=1.6bar", "bike=hardtail"]`` (or a mapping of text to text) as a dict; says which tag
    is wrong. At most ``MAX_TAGS``: they travel in every record of the session."""
    if tags is None:
        return {}
    if isinstance(tags, Mapping):
        items = list(tags.items())
    elif isinstance(tags, list | tuple):
        items = []
        for tag in tags:
            if not isinstance(tag, str) or not TAG.match(tag.strip()):
                raise SessionInputError(f"tag {str(tag)[:80]!r} is not name=value",
                                   hint="for example tyres=1.6bar: a name of letters, digits, _ . - (up to 32), "
                                        "a value of up to 64 characters")
            name, value = tag.strip().split("=", 1)
            items.append((name, value))
    else:
        raise SessionInputError("tags must be a list of name=value texts", hint='["tyres=1.6bar"]')
    for name, value in items:
        if not isinstance(name, str) or not isinstance(value, str) or not TAG.match(f"{name}={value}"):
            raise SessionInputError(f"tag {str(name)[:32]}={str(value)[:64]} is not name=value (both text)")
    if len(items) > MAX_TAGS:
        raise SessionInputError(f"{len(items)} tags; a session takes at most {MAX_TAGS}")
    return dict(items)


def new_session_id(gateway_id: str, now: float | None = None, *, prefix: str = "", suffix: str = "") -> str:
    """A session id no other session shares, on this box or another: the gateway, the UTC time to the
    second and six random hex digits. Ids to the second alone collided: three starts in one second
    replaced a session's record, and two boxes replaying in the same second became one session at
    the hub."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{prefix}{gateway_id}-{stamp}-{secrets.token_hex(3)}{suffix}"


def live_session(spool: Spool, gateway_id: str, gap_h: float, now: float | None = None) -> str:
    """The session recorded in the spool, unless the spool has been quiet for ``gap_h`` hours.

    A restart in the middle of a training keeps its session (so the engine can rebuild its open
    segments); switching the box on the next morning starts a new one.
    """
    now = time.time() if now is None else now
    mark = spool.sessions.live()
    current, last = mark.session, mark.seen
    # A clock that went backwards (a box without NTP that booted on an old time) is not "a restart in
    # the middle of a training": it could be last month's session.
    if current and last is not None and -CLOCK_SLACK_S <= now - last < gap_h * 3600:
        return current
    session = new_session_id(gateway_id, now)
    spool.sessions.begin_live(session, now)
    return session


def touch(spool: Spool, now: float | None = None) -> None:
    spool.sessions.touch(time.time() if now is None else now)
