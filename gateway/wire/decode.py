"""Decoding, strict: a message of a kind is checked (JSON, no key twice, no NaN, a known schema, its
identity, each field's type) and becomes the typed event it carries; ``WireError`` says what is
wrong, so a consumer can set the message aside and go on."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.model import GateCrossing, PowerSample, SegmentResult, SessionRecord
from gateway.wire.identity import SCHEMAS, SEQ_MAX, SPOOL_ID, WireError


@dataclass(frozen=True)
class Message:
    """A decoded message: its identity, and every field (identity included) as ``fields``."""

    event_id: str
    gateway_id: str
    spool_id: str  # "" for schemas 1 and 2
    seq: int
    schema: int
    session_id: str | None
    fields: dict[str, Any]


NUM: frozenset[type] = frozenset({int, float})
NUM_OR_NONE: frozenset[type] = frozenset({int, float, type(None)})
TEXT: frozenset[type] = frozenset({str})
TEXT_OR_NONE: frozenset[type] = frozenset({str, type(None)})
OBJECT: frozenset[type] = frozenset({dict})
LIST: frozenset[type] = frozenset({list})

# The fields a consumer needs, by kind, and the types they may have (checked with one set lookup
# each: the hub reads tens of thousands of these a second).
REQUIRED: dict[str, tuple[tuple[str, frozenset[type]], ...]] = {
    "power": (("wallTime", NUM), ("instantPower", NUM_OR_NONE), ("rider_id", TEXT_OR_NONE), ("source", TEXT)),
    "crossing": (("wallTime", NUM), ("transponder", TEXT), ("gate", TEXT), ("rider_id", TEXT_OR_NONE)),
    "segment": (("rider_id", TEXT), ("number", TEXT), ("start", NUM), ("end", NUM), ("duration", NUM),
                ("lap", NUM), ("segment", NUM_OR_NONE), ("samples", NUM), ("coverage", NUM)),
    "session": (("kind", TEXT), ("started", NUM), ("ended", NUM_OR_NONE), ("course", OBJECT), ("riders", LIST)),
}
# Fields a message may leave out, and their types when it does not.
OPTIONAL: dict[str, tuple[tuple[str, frozenset[type]], ...]] = {
    "power": (("cadence", NUM_OR_NONE), ("torque", NUM_OR_NONE), ("implausible", frozenset({list, type(None)})),
              ("raw", TEXT_OR_NONE)),
    "crossing": (("receiverTime", NUM_OR_NONE),),
}


def _reject_constant(name: str) -> float:
    raise WireError(f"{name} is not a JSON number")


# Schema 1 segments repeated session_id and simulation_id, with the same values: tolerated, nothing else.
_REPEATED_IN_SCHEMA_1 = frozenset({"session_id", "simulation_id"})


def _strict_pairs(pairs: list[tuple[str, Any]], repeatable: frozenset[str] = frozenset()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out and not (key in repeatable and out[key] == value):
            raise WireError(f"the key {key!r} appears twice")
        out[key] = value
    return out


def _schema_1_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return _strict_pairs(pairs, _REPEATED_IN_SCHEMA_1)


def parse_strict(payload: bytes, *, schema_1: bool = False) -> dict[str, Any]:
    """JSON with no duplicate key and no NaN or infinity (slow: for tests and doubtful messages)."""
    try:
        value = json.loads(payload, object_pairs_hook=_schema_1_pairs if schema_1 else _strict_pairs,
                           parse_constant=_reject_constant)
    except WireError:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise WireError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise WireError("not a JSON object")
    return value


def decode(payload: bytes, kind: str) -> Message:
    """A message of ``kind`` (power, crossing, segment, session), checked; raises WireError."""
    try:
        fields = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise WireError(f"not JSON: {exc}") from None
    if type(fields) is not dict:
        raise WireError("not a JSON object")
    schema = fields.get("schema")
    # orjson keeps the last of duplicate keys silently: a message with more key separators than keys
    # has a duplicate (or a nested object, or a string value containing '":'), and the strict parser
    # decides which.
    if payload.count(b'":') > len(fields):
        parse_strict(payload, schema_1=schema == 1)
    if schema not in SCHEMAS:
        raise WireError(f"unknown schema version {schema!r} (this gateway reads {', '.join(map(str, SCHEMAS))})")
    event_id, gateway_id, seq = fields.get("event_id"), fields.get("gateway_id"), fields.get("seq")
    if type(event_id) is not str or type(gateway_id) is not str or type(seq) is not int:
        raise WireError("the identity (event_id, gateway_id, seq) is missing or not of its type")
    if not 0 <= seq <= SEQ_MAX:
        raise WireError(f"seq {seq} is outside 0-{SEQ_MAX}")
    if b"\\u0000" in payload:  # JSON's only way to carry a NUL character
        refuse_nul(fields)
    spool_id = spool_of(schema, fields.get("spool_id", _MISSING))
    if event_id != _event_id(gateway_id, spool_id, seq):
        raise WireError(f"event_id {event_id!r} does not match gateway_id, spool_id and seq")
    session = fields.get("session_id")
    if session is not None and type(session) is not str:
        raise WireError("session_id is not text")
    for name, allowed in REQUIRED.get(kind, ()):
        value = fields.get(name, _MISSING)
        if type(value) not in allowed:
            if value is _MISSING:
                raise WireError(f"a {kind} message needs {name!r}")
            raise WireError(f"{name!r} of a {kind} message has the wrong type ({value!r})")
    for name, allowed in OPTIONAL.get(kind, ()):
        value = fields.get(name)
        if type(value) not in allowed:
            raise WireError(f"{name!r} of a {kind} message has the wrong type ({str(value)[:40]!r})")
    return Message(event_id, gateway_id, spool_id, seq, schema, session, fields)


_MISSING = object()


def refuse_nul(fields: dict[str, Any]) -> None:
    """Raise WireError naming the field with a NUL character in a text (a key too): PostgreSQL's
    text and jsonb hold none, and one such message failed a hub's whole batch, again and again."""
    for name, value in fields.items():
        if "\x00" in name or _has_nul(value):
            raise WireError(f"{name.replace(chr(0), '?')} contains a NUL character (\\u0000), which no "
                            "text in the hub's database can hold: leave it out")


def _has_nul(value: Any) -> bool:
    if type(value) is str:
        return "\x00" in value
    if type(value) is dict:
        return any("\x00" in k or _has_nul(v) for k, v in value.items())
    if type(value) is list:
        return any(_has_nul(v) for v in value)
    return False


def spool_of(schema: int, value: object) -> str:
    """The spool of a message: required from schema 3 on, absent before ("")."""
    if schema >= 3:
        if type(value) is not str or not SPOOL_ID.match(value):
            raise WireError(f"a schema {schema} message needs spool_id (4 to 32 lowercase letters or digits)"
                            + ("" if value is _MISSING else f", got {str(value)[:40]!r}"))
        return value
    if value is not _MISSING:
        raise WireError(f"spool_id in a schema {schema} message (it came with schema 3)")
    return ""


def _event_id(gateway_id: str, spool_id: str, seq: int) -> str:
    return f"{gateway_id}:{spool_id}:{seq}" if spool_id else f"{gateway_id}:{seq}"




@dataclass(frozen=True, slots=True)
class Decoded:
    """A message as the typed event it carries, with its identity. Power samples and crossings say
    whose they are (``rider_id``; results and records carry their own); ``implausible`` is what the
    box flagged as out of range (such a reading is kept, never averaged)."""

    message: Message
    event: PowerSample | GateCrossing | SegmentResult | SessionRecord
    rider_id: str | None = None
    implausible: tuple[str, ...] = ()


# What a session record's body holds besides its own fields (the rest is the record's ``extra``).
_SESSION_FIELDS = frozenset({"kind", "name", "started", "ended", "course", "riders", "files", "tags", "notes"})
_IDENTITY = frozenset({"event_id", "gateway_id", "spool_id", "seq", "schema", "session_id", "simulation_id"})


def decode_event(kind: str, payload: bytes) -> Decoded:
    """A message of ``kind`` (power, crossing, segment, session) as its typed event; raises WireError."""
    return typed(decode(payload, kind), kind)


def typed(message: Message, kind: str) -> Decoded:
    """A checked message (``decode``) as its typed event."""
    f = message.fields
    if kind == "power":
        power = f["instantPower"]
        sample = PowerSample(f["source"], "", float(f["wallTime"]), math.nan if power is None else float(power),
                             _number(f.get("cadence")), _number(f.get("torque")), f.get("raw"))
        return Decoded(message, sample, f["rider_id"], tuple(f.get("implausible") or ()))
    if kind == "crossing":
        crossing = GateCrossing(f.get("source") or "", f["transponder"], f["gate"], float(f["wallTime"]),
                                receiver_time=_number(f.get("receiverTime")), lap=f.get("lap"))
        return Decoded(message, crossing, f["rider_id"])
    if kind == "segment":
        return Decoded(message, segment_result(f))
    if kind == "session":
        record = SessionRecord(message.session_id or "", f["kind"], f.get("name") or message.session_id or "",
                               float(f["started"]), _number(f.get("ended")), f["course"], tuple(f["riders"]),
                               tuple(f.get("files") or ()), dict(f.get("tags") or {}), f.get("notes") or "",
                               {k: v for k, v in f.items() if k not in _SESSION_FIELDS and k not in _IDENTITY})
        return Decoded(message, record)
    raise WireError(f"no event of kind {kind!r}")


def _number(value: float | int | None) -> float | None:
    return None if value is None else float(value)


def segment_result(msg: Mapping[str, Any]) -> SegmentResult:
    """A segment message (or a row of the same fields) back into a result."""
    fields: dict[str, Any] = {name: msg.get(name) for name in SegmentResult.__dataclass_fields__}
    fields["flags"] = tuple(msg.get("flags") or ())
    fields["np_window"] = msg.get("np_window") or "segment"  # schema 1 results did not say
    return SegmentResult(**fields)
