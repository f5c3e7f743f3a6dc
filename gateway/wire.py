"""The Kafka wire format, in one place: every message the box stores and sends, and the hub reads.

One JSON object per event, its identity first::

    {"event_id":"<gateway>:<seq>","gateway_id":…,"seq":…,"schema":2,"session_id":…,"simulation_id":…, <body>}

``simulation_id`` repeats ``session_id`` for the seed system's consumers. The body is the event's
own fields (DESIGN.md, "Events on the wire") and never repeats an identity key: schema 1 did, for
segment results (``session_id`` and ``simulation_id`` twice in one object), which strict consumers
reject. Decoding accepts schema 1 and 2 and refuses anything else with a ``WireError`` saying why
(not JSON, a duplicate key, NaN, an unknown schema, a missing or mistyped field), so a consumer can
set the message aside and go on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import GatewayError
from gateway.model import SegmentResult

SCHEMA = 2
SCHEMAS = (1, 2)
HEADER = ("event_id", "gateway_id", "seq", "schema", "session_id", "simulation_id")
# Which topic (by its key in kafka.topics) each kind of event goes to.
TOPIC_KEYS = {"power": "power", "crossing": "crossings", "segment": "segments"}


class WireError(GatewayError):
    """A message that is not a valid event of this format; ``reason`` says what is wrong."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason, where="message")


# -- encoding ------------------------------------------------------------------------------------------


class Encoder:
    """Builds messages for one box (the spool's writer: fast, so the identity is formatted directly)."""

    def __init__(self, gateway_id: str) -> None:
        # The config's pattern allows no character JSON would escape in a gateway id.
        self._gw = gateway_id.encode()
        self._sessions: dict[str | None, bytes] = {}

    def encode(self, seq: int, session_id: str | None, body: Mapping[str, Any]) -> bytes:
        sid = self._sessions.get(session_id)
        if sid is None:
            if len(self._sessions) > 64:
                self._sessions.clear()
            sid = self._sessions[session_id] = orjson.dumps(session_id)
        head = b'{"event_id":"%s:%d","gateway_id":"%s","seq":%d,"schema":%d,"session_id":%s,"simulation_id":%s' % (
            self._gw, seq, self._gw, seq, SCHEMA, sid, sid)
        rest = orjson.dumps(body)  # NaN and infinities become null
        return head + (b"," + rest[1:] if len(rest) > 2 else b"}")


def seq_of(payload: bytes) -> int:
    """The sequence number from a message's leading ``"event_id":"<gateway>:<seq>"``, without parsing it."""
    end = payload.index(b'"', 13)
    return int(payload[payload.rindex(b":", 0, end) + 1:end])


def segment_body(result: SegmentResult) -> dict[str, Any]:
    """The segments topic's fields of a result (its session is the message's identity)."""
    return {
        "rider_id": result.rider_id, "name": result.name, "number": result.number, "lap": result.lap,
        "segment": result.segment, "start": result.start, "end": result.end, "duration": result.duration,
        "start_gate": result.start_gate, "end_gate": result.end_gate, "power_avg": result.power_avg,
        "cadence_avg": result.cadence_avg, "normalized_power": result.normalized_power,
        "intensity_factor": result.intensity_factor, "tss": result.tss, "watts_per_kg": result.watts_per_kg,
        "samples": result.samples, "coverage": result.coverage, "flags": list(result.flags),
        "np_window": result.np_window,
    }


def segment_result(msg: Mapping[str, Any]) -> SegmentResult:
    """A segment message (or a row of the same fields) back into a result."""
    fields: dict[str, Any] = {name: msg.get(name) for name in SegmentResult.__dataclass_fields__}
    fields["flags"] = tuple(msg.get("flags") or ())
    fields["np_window"] = msg.get("np_window") or "segment"  # schema 1 results did not say
    return SegmentResult(**fields)


# -- decoding ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """A decoded message: its identity, and every field (identity included) as ``fields``."""

    event_id: str
    gateway_id: str
    seq: int
    schema: int
    session_id: str | None
    fields: dict[str, Any]


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _text(v: object) -> bool:
    return isinstance(v, str)


def _opt(check: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda v: v is None or check(v)


REQUIRED: dict[str, dict[str, Callable[[object], bool]]] = {
    "power": {"wallTime": _number, "instantPower": _opt(_number), "rider_id": _opt(_text), "source": _text},
    "crossing": {"wallTime": _number, "transponder": _text, "gate": _text, "rider_id": _opt(_text)},
    "segment": {"rider_id": _text, "number": _text, "start": _number, "end": _number, "duration": _number,
                "lap": _number, "segment": _opt(_number), "samples": _number, "coverage": _number},
}


def _reject_constant(name: str) -> float:
    raise WireError(f"{name} is not a JSON number")


def _strict_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise WireError(f"the key {key!r} appears twice")
        out[key] = value
    return out


def parse_strict(payload: bytes) -> dict[str, Any]:
    """JSON with no duplicate key and no NaN or infinity (slow: for tests and doubtful messages)."""
    try:
        value = json.loads(payload, object_pairs_hook=_strict_pairs, parse_constant=_reject_constant)
    except WireError:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise WireError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise WireError("not a JSON object")
    return value


def decode(payload: bytes, kind: str) -> Message:
    """A message of ``kind`` (power, crossing, segment), checked; raises WireError."""
    try:
        fields = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise WireError(f"not JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise WireError("not a JSON object")
    schema = fields.get("schema")
    # orjson keeps the last of duplicate keys silently: a message with more key separators than keys
    # has a duplicate (or a string value containing '":'), and the strict parser decides which.
    # Schema 1 segments repeated session_id and simulation_id, with the same values: tolerated.
    if schema != 1 and payload.count(b'":') > len(fields):
        parse_strict(payload)
    if schema not in SCHEMAS:
        raise WireError(f"unknown schema version {schema!r} (this gateway reads {', '.join(map(str, SCHEMAS))})")
    event_id, gateway_id, seq = fields.get("event_id"), fields.get("gateway_id"), fields.get("seq")
    if not (isinstance(event_id, str) and isinstance(gateway_id, str) and isinstance(seq, int)
            and not isinstance(seq, bool)):
        raise WireError("the identity (event_id, gateway_id, seq) is missing or not of its type")
    if event_id != f"{gateway_id}:{seq}":
        raise WireError(f"event_id {event_id!r} does not match gateway_id and seq")
    session = fields.get("session_id")
    if session is not None and not _text(session):
        raise WireError("session_id is not text")
    for name, check in REQUIRED.get(kind, {}).items():
        if name not in fields:
            raise WireError(f"a {kind} message needs {name!r}")
        if not check(fields[name]):
            raise WireError(f"{name!r} of a {kind} message has the wrong type ({fields[name]!r})")
        value = fields[name]
        if isinstance(value, float) and not math.isfinite(value):
            raise WireError(f"{name!r} is not finite")
    return Message(event_id, gateway_id, seq, schema, session, fields)
