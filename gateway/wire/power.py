"""The hub's fast decoder of power messages (most of its stream), as exact as ``decode``."""

from __future__ import annotations

from typing import Any, Protocol, cast

from gateway.wire.decode import decode, spool_of
from gateway.wire.identity import SCHEMAS, SEQ_MAX, WireError


class PowerMessage(Protocol):
    """What ``decode_power`` gives: the fields the hub stores of a power message."""

    event_id: str
    gateway_id: str
    spool_id: str
    seq: int
    schema: int
    session_id: str | None
    wallTime: float
    instantPower: float | None
    cadence: float | None
    torque: float | None
    rider_id: str | None
    source: str
    implausible: list[str] | None
    raw: str | None


def _power_struct() -> Any:
    """Every key a box's power message has (``implausible`` only when flagged, ``spool_id`` from
    schema 3 on, ``raw`` from schema 4 on for a sample heard by radio); a message of any other shape
    is decoded the slow way, by ``decode``. What the hub does not store (``simulation_id``,
    ``normalizedPower``, ``name``) is skipped, not decoded."""
    import msgspec

    raw = msgspec.Raw
    power = msgspec.defstruct("PowerMessage", [
        ("event_id", str), ("gateway_id", str), ("seq", int), ("schema", int), ("session_id", str | None),
        ("simulation_id", raw), ("wallTime", float), ("instantPower", float | None), ("cadence", float | None),
        ("torque", float | None), ("normalizedPower", raw), ("name", raw), ("rider_id", str | None),
        ("source", str), ("spool_id", str | None, None), ("implausible", list[str] | None, None),
        ("raw", str | None, None)],
        forbid_unknown_fields=True)
    return msgspec.json.Decoder(power), msgspec.DecodeError, power


_POWER: Any = None
# The keys of a box's power message of schema 2 (identity 6, body 8); schema 3 adds spool_id.
_POWER_KEYS = 14


def decode_power(payload: bytes) -> PowerMessage:
    """A power message, checked as ``decode`` checks it, in a few microseconds: the hub reads most of
    its stream through here. A box's message (every key once, as the box writes it) is decoded by
    msgspec, whose last duplicate key would win silently: so the key separators are counted, and any
    other shape (a key twice, one missing or unknown, an escape in a text, a sequence number beyond
    bigint) goes through ``decode``, which names what is wrong. Needs ``msgspec`` (the hub extra)."""
    global _POWER
    if _POWER is None:
        _POWER = _power_struct()
    decoder, error, cls = _POWER
    try:
        msg = decoder.decode(payload)
    except error:
        return cast(PowerMessage, _power_slowly(payload, cls))
    spool = msg.spool_id
    optional = (spool is not None) + (msg.implausible is not None) + (msg.raw is not None)
    # An escape (rare in a box's message) goes the exact way: it may hide a NUL or a '":' in a text.
    if (payload.count(b'":') != _POWER_KEYS + optional or payload.find(b"\\") >= 0
            or not 0 <= msg.seq <= SEQ_MAX):
        return cast(PowerMessage, _power_slowly(payload, cls))
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
        spool_of(msg.schema, spool)  # says what is wrong with the spool, if that is it
        raise WireError(f"event_id {msg.event_id!r} does not match gateway_id, spool_id and seq")
    return cast(PowerMessage, msg)


def _power_slowly(payload: bytes, cls: Any) -> Any:
    """A power message of another shape than the box's, checked strictly, as the fast path's type."""
    m = decode(payload, "power")
    f = m.fields
    import msgspec

    return cls(event_id=m.event_id, gateway_id=m.gateway_id, seq=m.seq, schema=m.schema, session_id=m.session_id,
               simulation_id=msgspec.Raw(), wallTime=float(f["wallTime"]), instantPower=_float(f["instantPower"]),
               cadence=_float(f.get("cadence")), torque=_float(f.get("torque")), normalizedPower=msgspec.Raw(),
               name=msgspec.Raw(), rider_id=f["rider_id"], source=f["source"], spool_id=m.spool_id,
               implausible=f.get("implausible"), raw=f.get("raw"))


def _float(value: float | int | None) -> float | None:
    return None if value is None else float(value)
