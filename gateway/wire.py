"""The Kafka wire format, in one place: every message the box stores and sends, and the hub reads.

One JSON object per event, its identity first::

    {"event_id":"<gateway>:<spool>:<seq>","gateway_id":…,"spool_id":…,"seq":…,"schema":3,"session_id":…,
     "simulation_id":…, <body>}

``spool_id`` names the spool that numbered the event (created with the spool file): a box whose
spool starts over under the same gateway id (a reinstall, a new SD card) numbers from 1 again, and
its events are a new stream, never taken for repeats of the old one's. ``simulation_id`` repeats
``session_id`` for the seed system's consumers. The body is the event's own fields (DESIGN.md,
"Events on the wire") and never repeats an identity key: schema 1 did, for segment results
(``session_id`` and ``simulation_id`` twice in one object), which strict consumers reject. Schema 2
had no ``spool_id`` (event id ``<gateway>:<seq>``). Decoding accepts schemas 1 to 3 and refuses
anything else with a ``WireError`` saying why (not JSON, a duplicate key, NaN, an unknown schema, a
missing or mistyped field), so a consumer can set the message aside and go on.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import GatewayError
from gateway.model import SegmentResult, SessionRecord

SCHEMA = 3
SCHEMAS = (1, 2, 3)
HEADER = ("event_id", "gateway_id", "spool_id", "seq", "schema", "session_id", "simulation_id")
SPOOL_ID = re.compile(r"^[0-9a-z]{4,32}$")
# A power sample's own fields, in the order its message has them (before name, rider_id and source).
POWER_FIELDS = ("wallTime", "instantPower", "cadence", "torque", "normalizedPower")
# Which topic (by its key in kafka.topics) each kind of event goes to.
TOPIC_KEYS = {"power": "power", "crossing": "crossings", "segment": "segments", "session": "sessions"}


def new_spool_id() -> str:
    """A spool's identity: 40 random bits, in hex (a box reinstalled a thousand times under one
    gateway id would see two alike with a chance of one in two million)."""
    return secrets.token_hex(5)


def identity_pieces(gateway: str, spool: str | None) -> tuple[str, str, str, str]:
    """A message's identity cut around what varies in it (the sequence number, twice, then the
    session, twice, as JSON): ``p0 <seq> p1 <seq> p2 <session> p3 <session>`` then the body's fields.
    ``spool`` None: the identity of schema 2, which rows numbered before their spool had an
    identity keep. The encoder and the spool's SQL (``spool.schema``) are both built from these."""
    if spool is None:
        return (f'{{"event_id":"{gateway}:', f'","gateway_id":"{gateway}","seq":',
                ',"schema":2,"session_id":', ',"simulation_id":')
    return (f'{{"event_id":"{gateway}:{spool}:', f'","gateway_id":"{gateway}","spool_id":"{spool}","seq":',
            f',"schema":{SCHEMA},"session_id":', ',"simulation_id":')


class WireError(GatewayError):
    """A message that is not a valid event of this format; ``reason`` says what is wrong."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason, where="message")


# -- encoding ------------------------------------------------------------------------------------------


class Encoder:
    """Builds messages for one box (the spool's writer: fast, so the identity is formatted directly).

    The spool stores each message *folded*: its body alone (a JSON object all the same), since its
    own columns and its table of gateways hold the identity (event id, gateway, sequence, schema,
    session twice). That header is half of a power sample's message, and every stored byte
    is written twice to the SD card (WAL, then checkpoint). The spool's readers rebuild the whole
    message (``spool.schema.whole_sql``).
    """

    def __init__(self, gateway_id: str, spool_id: str | None = None) -> None:
        # The config's pattern allows no character JSON would escape in a gateway id, nor SPOOL_ID in
        # a spool's.
        self._pieces = tuple(p.encode() for p in identity_pieces(gateway_id, spool_id))
        self._heads: dict[str | None, bytes] = {}

    def _identity(self, session_id: str | None) -> tuple[bytes, bytes, bytes]:
        """A session's identity fields cut around the sequence number's two places."""
        sid = orjson.dumps(session_id)
        p0, p1, p2, p3 = self._pieces
        return p0, p1, p2 + sid + p3 + sid

    def _head(self, session_id: str | None) -> bytes:
        """The identity of a session's messages as a format taking the sequence number twice (formatting
        two numbers into it takes 0.28 us here, all seven fields 0.72 us, once per message)."""
        head = self._heads.get(session_id)
        if head is None:
            if len(self._heads) > 64:
                self._heads.clear()
            head = self._heads[session_id] = b"%d".join(p.replace(b"%", b"%%") for p in self._identity(session_id))
        return head

    def power_run(self, first_seq: int, session_id: str | None, columns: Sequence[Sequence[float | None]],
                  name: str | None, rider_id: str | None, source: str) -> bytes:
        """The messages of a run of one meter's power samples, one per line, numbered from ``first_seq``:
        byte for byte what ``encode`` makes of each sample's body (``POWER_FIELDS`` from ``columns``,
        then name, rider and source), built from constant pieces and each column's numbers formatted
        in one call (1.4 us a sample here against 3.1 us one message at a time)."""
        n = len(columns[0])
        a, b, c = self._identity(session_id)
        tail = b',"name":%s,"rider_id":%s,"source":%s}\n' % (orjson.dumps(name), orjson.dumps(rider_id),
                                                             orjson.dumps(source))
        pieces: list[bytes] = [a, b"", b, b"", c]
        for field in POWER_FIELDS:
            pieces += (b',"%s":' % field.encode(), b"")
        pieces.append(tail)
        width = len(pieces)
        parts = pieces * n
        seqs = _numbers(list(range(first_seq, first_seq + n)))
        parts[1::width] = seqs
        parts[3::width] = seqs
        for k, column in enumerate(columns):
            parts[6 + 2 * k::width] = _numbers(column)
        return b"".join(parts)[:-1]

    def encode(self, seq: int, session_id: str | None, body: Mapping[str, Any]) -> bytes:
        return self.fold(seq, session_id, body)[0]

    def fold(self, seq: int, session_id: str | None, body: Mapping[str, Any]) -> tuple[bytes, bytes]:
        """(the whole message, the message as the spool stores it): see the class."""
        rest = orjson.dumps(body)  # NaN and infinities become null
        tail = b"," + rest[1:] if len(rest) > 2 else b"}"
        return self._head(session_id) % (seq, seq) + tail, rest


def _numbers(values: Sequence[float | int | None]) -> list[bytes]:
    """Each value as JSON, formatted in one call (NaN and infinities become null, as in a body)."""
    return orjson.dumps(values)[1:-1].split(b",")


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


def session_body(record: SessionRecord) -> dict[str, Any]:
    """The sessions topic's fields (keyed by session id, compacted)."""
    return {"kind": record.kind, "name": record.name, "started": record.started, "ended": record.ended,
            "course": dict(record.course), "riders": [dict(r) for r in record.riders], "files": list(record.files),
            "tags": dict(record.tags), "notes": record.notes, **dict(record.extra)}


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
    "power": (("cadence", NUM_OR_NONE), ("torque", NUM_OR_NONE), ("implausible", frozenset({list, type(None)}))),
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
    spool_id = _spool_of(schema, fields.get("spool_id", _MISSING))
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


def _spool_of(schema: int, value: object) -> str:
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


def _power_struct() -> Any:
    """Every key a box's power message has (``implausible`` only when flagged, ``spool_id`` from
    schema 3 on); a message of any other shape is decoded the slow way, by ``decode``. What the hub
    does not store (``simulation_id``, ``normalizedPower``, ``name``) is skipped, not decoded."""
    import msgspec

    raw = msgspec.Raw
    power = msgspec.defstruct("PowerMessage", [
        ("event_id", str), ("gateway_id", str), ("seq", int), ("schema", int), ("session_id", str | None),
        ("simulation_id", raw), ("wallTime", float), ("instantPower", float | None), ("cadence", float | None),
        ("torque", float | None), ("normalizedPower", raw), ("name", raw), ("rider_id", str | None),
        ("source", str), ("spool_id", str | None, None), ("implausible", list[str] | None, None)],
        forbid_unknown_fields=True)
    return msgspec.json.Decoder(power), msgspec.DecodeError, power


_POWER: Any = None
# The keys of a box's power message of schema 2 (identity 6, body 8); schema 3 adds spool_id.
_POWER_KEYS = 14


def decode_power(payload: bytes) -> Any:
    """A power message, checked as ``decode`` checks it, in a few microseconds: the hub reads most of
    its stream through here. A box's message (every key once, as the box writes it) is decoded by
    msgspec, whose last duplicate key would win silently: so the key separators are counted, and any
    other shape (a key twice, one missing or unknown, '":' inside a text) goes through ``decode``,
    which names what is wrong. Needs ``msgspec`` (the hub extra)."""
    global _POWER
    if _POWER is None:
        _POWER = _power_struct()
    decoder, error, cls = _POWER
    try:
        msg = decoder.decode(payload)
    except error:
        return _power_slowly(payload, cls)
    spool = msg.spool_id
    if payload.count(b'":') != _POWER_KEYS + (spool is not None) + (msg.implausible is not None):
        return _power_slowly(payload, cls)
    if msg.schema not in SCHEMAS:
        raise WireError(f"unknown schema version {msg.schema!r} (this gateway reads {', '.join(map(str, SCHEMAS))})")
    if spool is None:
        if msg.schema >= 3:
            raise WireError(f"a schema {msg.schema} message needs spool_id")
        msg.spool_id = ""
        if msg.event_id != f"{msg.gateway_id}:{msg.seq}":
            raise WireError(f"event_id {msg.event_id!r} does not match gateway_id, spool_id and seq")
    elif (msg.schema < 3 or not (4 <= len(spool) <= 32 and spool.isascii() and spool.isalnum())
          or msg.event_id != f"{msg.gateway_id}:{spool}:{msg.seq}"):  # SPOOL_ID's rule, cheaper than the regex
        _spool_of(msg.schema, spool)  # says what is wrong with the spool, if that is it
        raise WireError(f"event_id {msg.event_id!r} does not match gateway_id, spool_id and seq")
    return msg


def _power_slowly(payload: bytes, cls: Any) -> Any:
    """A power message of another shape than the box's, checked strictly, as the fast path's type."""
    m = decode(payload, "power")
    f = m.fields
    import msgspec

    return cls(event_id=m.event_id, gateway_id=m.gateway_id, seq=m.seq, schema=m.schema, session_id=m.session_id,
               simulation_id=msgspec.Raw(), wallTime=float(f["wallTime"]), instantPower=_float(f["instantPower"]),
               cadence=_float(f.get("cadence")), torque=_float(f.get("torque")), normalizedPower=msgspec.Raw(),
               name=msgspec.Raw(), rider_id=f["rider_id"], source=f["source"], spool_id=m.spool_id,
               implausible=f.get("implausible"))


def _float(value: float | int | None) -> float | None:
    return None if value is None else float(value)
