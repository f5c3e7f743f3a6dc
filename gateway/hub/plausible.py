"""What the hub refuses from a box, as the box refuses it from a sensor: values no box of this project
sends (power of 1e308 W not flagged implausible, wall times a century ahead, a coverage of 55),
identities too long to be ids. A refused message goes to the dead letters with the reason; the
stream goes on. Pure functions of a decoded message and the hub's clock."""

from __future__ import annotations

import json
import math
import re
from typing import Any

EARLIEST = 946_684_800.0  # 2000-01-01: no recording this project reads is older
AHEAD_S = 86_400.0  # a box's clock may run ahead (no NTP at the course), but not by more than a day
POWER_W = (0.0, 10_000.0)  # a reading outside this is never a cyclist's; the box flags far less
SPEC_W = (0.0, 5_000.0)  # a segment's averages
GATEWAY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # the config's gateway.id
ID_MAX = 128  # session, rider, source, transponder, gate ids
COUNT_MAX = 1_000_000  # laps and segments: whole numbers, stored as integer


def wall_problem(t: float, now: float, what: str = "wallTime") -> str | None:
    if not math.isfinite(t) or t < EARLIEST:
        return f"{what} {t!r} is before 2000"
    if t > now + AHEAD_S:
        return f"{what} {t!r} is more than a day ahead of the hub's clock ({t - now:.0f} s)"
    return None


def identity_problem(gateway: str, session: str | None) -> str | None:
    if not GATEWAY.match(gateway):
        return f"gateway_id {gateway[:80]!r} is not a gateway id (letters, digits, _ . -, up to 64)"
    if session is not None and len(session) > ID_MAX:
        return f"session_id is {len(session)} characters long (at most {ID_MAX})"
    return None


def power_problem(msg: Any, now: float) -> str | None:
    """A decoded power message (``wire.decode_power``)."""
    p = msg.instantPower
    if p is not None and not msg.implausible and not POWER_W[0] <= p <= POWER_W[1]:
        return f"instantPower {p!r} W is outside {POWER_W[0]:g}-{POWER_W[1]:g} W and not flagged implausible"
    if len(msg.source) > ID_MAX or (msg.rider_id is not None and len(msg.rider_id) > ID_MAX):
        return f"source or rider_id longer than {ID_MAX} characters"
    return wall_problem(msg.wallTime, now) or identity_problem(msg.gateway_id, msg.session_id)


class PowerChecks:
    """``power_problem`` for a batch's power messages at the hub's clock ``now``, in fewer steps: a
    message every value of which is plainly in range, from a box and session already found good, is
    passed at once; any other is checked in full, which names what is wrong. The same verdict as
    ``power_problem``, message for message (a box's stream repeats its box and session)."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.latest = now + AHEAD_S
        self.known: set[tuple[str, str | None]] = set()

    def problem(self, msg: Any) -> str | None:
        p, wall, rider = msg.instantPower, msg.wallTime, msg.rider_id
        # Every comparison with NaN is false: a NaN power or time is never passed here.
        if ((p is None or POWER_W[0] <= p <= POWER_W[1] or msg.implausible) and EARLIEST <= wall <= self.latest
                and len(msg.source) <= ID_MAX and (rider is None or len(rider) <= ID_MAX)
                and (msg.gateway_id, msg.session_id) in self.known):
            return None
        bad = power_problem(msg, self.now)
        if bad is None:
            self.known.add((msg.gateway_id, msg.session_id))
        return bad


def _texts(fields: dict[str, Any], names: tuple[str, ...], longest: int | None = ID_MAX) -> str | None:
    """Each of ``names`` absent, null or a text of at most ``longest`` characters (None: any length;
    a list or an object where a text column waits could fail the whole batch's insert, every try)."""
    for name in names:
        value = fields.get(name)
        if value is None:
            continue
        if type(value) is not str:
            return f"{name} {str(value)[:40]!r} is not text"
        if longest is not None and len(value) > longest:
            return f"{name} is {len(value)} characters long (at most {longest})"
    return None


def _within(fields: dict[str, Any], names: tuple[str, ...], low: float, high: float) -> str | None:
    for name in names:
        value = fields.get(name)
        if value is None:
            continue
        # Not a bool: JSON's true is Python's 1 (a rider's FTP of true was kept as 1 W; a segment's
        # average of true failed its batch, written again by halves to find it).
        if type(value) not in (int, float):
            return f"{name} {json.dumps(value)[:40]} is not a number"
        if not low <= value <= high:
            return f"{name} {value!r} is outside {low:g}-{high:g}"
    return None


def _whole(fields: dict[str, Any], names: tuple[str, ...], most: int = COUNT_MAX) -> str | None:
    for name in names:
        value = fields.get(name)
        if value is not None and not (type(value) is int and 0 <= value <= most):
            return f"{name} {value!r} is outside 0-{most} (a whole number)"
    return None


def message_problem(kind: str, fields: dict[str, Any], gateway: str, session: str | None, now: float) -> str | None:
    """A decoded crossing, segment or session message (``wire.decode``: types already checked)."""
    out = identity_problem(gateway, session)
    if out:
        return out
    if kind == "crossing":
        return (wall_problem(fields["wallTime"], now) or _whole(fields, ("lap",))
                or _texts(fields, ("transponder", "gate", "rider_id", "source")))
    if kind == "segment":
        start, end = fields["start"], fields["end"]
        return (wall_problem(start, now, "start") or wall_problem(end, now, "end")
                or (f"end {end!r} is before start {start!r}" if end < start else None)
                or _whole(fields, ("lap", "segment"))
                or _within(fields, ("duration",), 0.0, 7 * 86_400.0)
                or _within(fields, ("coverage",), 0.0, 1.0)
                or _within(fields, ("power_avg", "normalized_power"), *SPEC_W)
                or _within(fields, ("cadence_avg",), 0.0, 300.0)
                or _within(fields, ("intensity_factor",), 0.0, 5.0)
                or _within(fields, ("tss",), 0.0, 10_000.0)
                or _within(fields, ("watts_per_kg",), 0.0, 100.0)
                or _whole(fields, ("samples",), 10_000_000)  # an integer column: 1.5 was stored as 2
                or _texts(fields, ("rider_id", "number", "name", "start_gate", "end_gate", "np_window")))
    if kind == "session":
        ended = fields.get("ended")
        return (wall_problem(fields["started"], now, "started")
                or (wall_problem(ended, now, "ended") if ended is not None else None)
                or _texts(fields, ("name", "notes"), longest=None) or _record_problem(fields))
    return None


def _record_problem(fields: dict[str, Any]) -> str | None:
    """A session record's parts that the hub's course engine and page read, each of the shape a box
    writes them in: a record with `"files": 5` or a rider without an id stopped the consumer (or
    the course engine) at every try."""
    course = fields["course"]
    bad = (_texts(course, ("id",)) or _within(course, ("debounce_s", "max_segment_s"), 0.0, 7 * 86_400.0))
    if bad:
        return f"the course's {bad}"
    gates = course.get("gates")
    if gates is not None and (type(gates) is not list or not all(
            type(g) is str or (type(g) is dict and type(g.get("id")) is str) for g in gates)):
        return "the course's gates are not a list of gates with an id (text)"
    if type(course.get("segments") or []) is not list:
        return "the course's segments are not a list"
    for rider in fields["riders"]:
        if type(rider) is not dict or type(rider.get("id")) is not str or len(rider["id"]) > ID_MAX:
            return "riders are not a list of riders with an id (text, up to 128 characters)"
        bad = (_within(rider, ("ftp_w",), *SPEC_W) or _within(rider, ("weight_kg",), 0.0, 500.0)
               or _texts(rider, ("name", "squad"), longest=None))
        if bad:
            return f"rider {rider['id']!r}: {bad}"
    if type(fields.get("files") or []) is not list or type(fields.get("tags") or {}) is not dict:
        return "files is not a list or tags is not an object"
    return None
