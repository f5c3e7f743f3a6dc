"""The Kafka wire format, in one place: every message the box stores and sends, and the hub reads.

One JSON object per event, its identity first::

    {"event_id":"<gateway>:<spool>:<seq>","gateway_id":…,"spool_id":…,"seq":…,"schema":4,"session_id":…,
     "simulation_id":…, <body>}

``spool_id`` names the spool that numbered the event (created with the spool file): a box whose
spool starts over under the same gateway id (a reinstall, a new SD card) numbers from 1 again, and
its events are a new stream, never taken for repeats of the old one's. ``simulation_id`` repeats
``session_id`` for the seed system's consumers. The body is the event's own fields (DESIGN.md,
"Events on the wire") and never repeats an identity key: schema 1 did, for segment results
(``session_id`` and ``simulation_id`` twice in one object), which strict consumers reject. Schema 2
had no ``spool_id`` (event id ``<gateway>:<seq>``). Schema 4 adds what makes an event the same at
another box: a power sample's ``raw`` (the radio identity: ``ant:<device>:<page hex>`` or
``ble:<address>:<notification hex>``; ``wallTime`` is when this box received it) and a crossing's
``receiverTime`` always (the timing system's own stamp). Decoding accepts schemas 1 to 4.

- ``identity``: the identity, the Kafka key rule, the SQL the spool rebuilds identities with;
- ``encode``: the encoder and every kind's body;
- ``decode``: strict decoding into typed events (``decode_event``);
- ``power``: the hub's fast decoder of power messages.
"""

from gateway.wire.decode import Decoded, Message, decode, decode_event, parse_strict, segment_result, typed
from gateway.wire.encode import POWER_FIELDS, Encoder, crossing_body, power_body, segment_body, session_body
from gateway.wire.identity import (
    HEADER,
    KEY_SQL,
    SCHEMA,
    SCHEMAS,
    SPOOL_ID,
    TOPIC_KEYS,
    WireError,
    identity_pieces,
    key_of,
    new_spool_id,
)
from gateway.wire.power import PowerMessage, decode_power

__all__ = ["HEADER", "KEY_SQL", "POWER_FIELDS", "SCHEMA", "SCHEMAS", "SPOOL_ID", "TOPIC_KEYS", "Decoded", "Encoder",
           "Message", "PowerMessage", "WireError", "crossing_body", "decode", "decode_event", "decode_power",
           "identity_pieces", "key_of", "new_spool_id", "parse_strict", "power_body", "segment_body",
           "segment_result", "session_body", "typed"]
