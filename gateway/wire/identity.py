"""Who numbered an event, as every message begins: the identity, the Kafka key, and the SQL with
which the spool rebuilds an identity it does not store (built from the same pieces as the encoder,
so the two cannot drift: a test compares their bytes)."""

from __future__ import annotations

import re
import secrets

from gateway.errors import GatewayError

SCHEMA = 4
SCHEMAS = (1, 2, 3, 4)
HEADER = ("event_id", "gateway_id", "spool_id", "seq", "schema", "session_id", "simulation_id")
SPOOL_ID = re.compile(r"^[0-9a-z]{4,32}$")
SEQ_MAX = 2**63 - 1  # a box numbers its events with SQLite's rowid; the hub stores them as bigint
# Which topic (by its key in kafka.topics) each kind of event goes to.
TOPIC_KEYS = {"power": "power", "crossing": "crossings", "segment": "segments", "session": "sessions"}
UNKNOWN_KEY = "unknown"  # the Kafka key of an event of nobody's (a meter or chip not in the roster)


class WireError(GatewayError):
    """A message that is not a valid event of this format; ``reason`` says what is wrong."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason, where="message")


def new_spool_id() -> str:
    """A spool's identity: 40 random bits, in hex (a box reinstalled a thousand times under one
    gateway id would see two alike with a chance of one in two million)."""
    return secrets.token_hex(5)


def key_of(kind: str, rider_id: str | None, session_id: str | None) -> str:
    """The Kafka key: a session record's session (its topic is compacted), else the rider (a rider's
    events keep their order within one partition), else ``UNKNOWN_KEY``."""
    return (session_id if kind == "session" else rider_id) or UNKNOWN_KEY


# ``key_of`` as SQL over a row's columns ``kind``, ``rider_id`` and ``session_id``.
KEY_SQL = f"COALESCE(CASE kind WHEN 'session' THEN session_id ELSE rider_id END, '{UNKNOWN_KEY}')"


def identity_pieces(gateway: str, spool: str | None, wire: int | str = SCHEMA) -> tuple[str, str, str, str]:
    """A message's identity cut around what varies in it (the sequence number, twice, then the
    session, twice, as JSON): ``p0 <seq> p1 <seq> p2 <session> p3 <session>`` then the body's fields.
    ``wire`` is the schema number the identity says (3 for events a spool numbered before schema 4);
    ``spool`` None: the identity of schema 2, which rows numbered before their spool had an identity
    keep."""
    if spool is None:
        return (f'{{"event_id":"{gateway}:', f'","gateway_id":"{gateway}","seq":',
                ',"schema":2,"session_id":', ',"simulation_id":')
    return (f'{{"event_id":"{gateway}:{spool}:', f'","gateway_id":"{gateway}","spool_id":"{spool}","seq":',
            f',"schema":{wire},"session_id":', ',"simulation_id":')


def _sql_text(text: str) -> str:
    """``text`` inside an SQL string literal that format() reads: quotes doubled, % escaped."""
    return text.replace("%", "%%").replace("'", "''")


def identity_sql(body: str, spool: bool, *, gateway: str | None = None, spool_id: str | None = None,
                 wire: int = SCHEMA, lookups: tuple[str, str, str] = ("", "", "")) -> str:
    """SQL (SQLite) for a whole message over a row's ``seq`` and ``session_id``: its identity (with a
    spool or, ``spool`` False, as schema 2 had it), then ``body`` (SQL for what follows the
    identity). The gateway's id, the spool's and the wire schema are ``gateway``, ``spool_id`` and
    ``wire``, written into the format, or what the SQL ``lookups`` (gateway, spool, wire) find. One
    format() call: cheaper for SQLite than a dozen concatenations, for every row the uplink reads."""
    if gateway is None:
        lookup, spool_lookup, wire_lookup = lookups
        pieces = identity_pieces("\0g", "\0s", "\0v") if spool else identity_pieces("\0g", None)
        args = ([lookup, spool_lookup, "seq", lookup, spool_lookup, "seq", wire_lookup] if spool
                else [lookup, "seq", lookup, "seq"])
    else:
        pieces = identity_pieces(gateway, spool_id if spool else None, wire)
        args = ["seq", "seq"]
    p0, p1, p2, p3 = (_sql_text(p).replace("\0g", "%s").replace("\0s", "%s").replace("\0v", "%s")
                      for p in pieces)
    template = f"{p0}%d{p1}%d{p2}%s{p3}%s%s"
    return f"format('{template}', {', '.join(args)}, json_quote(session_id), json_quote(session_id), {body})"


def event_id_prefixed_sql(prefix: bytes) -> str:
    """SQL for the whole message of a row stored before the spool's schema 6: folded after its event
    id (``{"event_id":"<gateway>:<seq>", <body>``) or whole. The gateway comes from the stored event
    id (a gateway id has no ':'); ``prefix``, the spool's own ``<gateway>:``, spares looking for the
    ':' in the common case. Such rows have the identity of wire schema 2."""
    own = f"X'{prefix.hex()}'"
    colon = (f"(CASE WHEN substr(payload, 14, {len(prefix)}) = {own} THEN {len(prefix)} "
             "ELSE instr(CAST(substr(payload, 14, 80) AS TEXT), ':') END)")  # the gateway's length + 1
    rest = f"({colon} + length(seq) + 15)"  # 1-based: the byte after '{{"event_id":"<gateway>:<seq>"'
    head = (f"substr(payload, 1, {rest} - 1) || ',\"gateway_id\":\"' || CAST(substr(payload, 14, {colon} - 1) AS TEXT)"
            " || '\",\"seq\":' || seq || "
            "',\"schema\":2,\"session_id\":' || json_quote(session_id) || ',\"simulation_id\":' || "
            "json_quote(session_id)")
    return (f"CASE WHEN CAST(substr(payload, {rest}, 14) AS TEXT) = ',\"gateway_id\":' THEN payload "
            f"ELSE {head} || substr(payload, {rest}) END")


EVENT_ID_OPENING = b'{"event_id":"'
