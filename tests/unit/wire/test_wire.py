"""The wire format: every message kind the box writes parses strictly and decodes back; bad ones say why."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import riders
from gateway.model import GateCrossing, PowerSample, SegmentResult
from gateway.pipeline.ingest import Batching, Ingest
from gateway.pipeline.roster import Roster
from gateway.spool.store import Spool
from gateway.wire import (
    SCHEMA,
    Encoder,
    WireError,
    decode,
    parse_strict,
    power_body,
    segment_body,
    segment_result,
)

RIDERS = [{"id": "r01", "name": "Anna", "transponder": "BD-1", "power_meters": [{"ant": 23456}]}]
RESULT = SegmentResult("s1", "r01", "Anna", "2.3", 2, 3, 1000.0, 1061.5, 61.5, "G2", "G3", 250.0, 88.0, 262.5,
                       0.95, 1.6, 4.3, 246, 1.0, ("power_gap",), "ride")


@pytest.fixture
def stored(tmp_path: Path) -> list:
    spool = Spool(tmp_path / "spool.sqlite", "box-7").open()
    ingest = Ingest(spool, Roster(riders(RIDERS)), "s1", batching=Batching(0.01))
    ingest.start()
    try:
        ingest.submit(PowerSample("ant:23456", "23456", 1000.0, 250.0, 88.0, 30.5))
        ingest.submit(PowerSample("ant:23456", "23456", 1000.25, 9999.0))  # implausible: flagged
        ingest.submit(GateCrossing("serial:/dev/ttyUSB0", "BD-1", "SF", 1000.0, receiver_time=8200.0, lap=2))
        ingest.submit(RESULT)
        assert ingest.flush()
        return list(spool.queries.since(0))  # the rows as the uplink reads them
    finally:
        ingest.stop()
        spool.close()


def test_every_kind_parses_strictly_and_round_trips(stored: list) -> None:
    spool_id = parse_strict(stored[0].payload)["spool_id"]
    kinds = [a.kind for a in stored]
    assert kinds == ["power", "power", "crossing", "segment"]
    for a in stored:
        strict = parse_strict(a.payload)  # no duplicate key, no NaN
        msg = decode(a.payload, a.kind)
        assert msg.fields == strict
        assert msg.schema == SCHEMA and msg.gateway_id == "box-7" and msg.session_id == "s1"
        assert msg.spool_id == spool_id and len(spool_id) == 10
        assert msg.event_id == f"box-7:{spool_id}:{msg.seq}" and msg.seq == a.seq
        assert list(strict)[:7] == ["event_id", "gateway_id", "spool_id", "seq", "schema", "session_id",
                                    "simulation_id"]
        assert strict["simulation_id"] == strict["session_id"]
    power, flagged, crossing, segment = (decode(a.payload, a.kind).fields for a in stored)
    assert (power["instantPower"], power["cadence"], power["torque"], power["rider_id"]) == (250.0, 88.0, 30.5, "r01")
    assert flagged["implausible"] == ["power"]
    assert (crossing["receiverTime"], crossing["lap"], crossing["gate"]) == (8200.0, 2, "SF")
    assert segment_result(segment) == RESULT
    assert segment_body(RESULT).keys().isdisjoint({"session_id", "simulation_id", "event_id"})


@pytest.mark.parametrize("payload, kind, reason", [
    (b"not json", "power", "not JSON"),
    (b"[1, 2]", "power", "not a JSON object"),
    (b'{"event_id":"b:1","gateway_id":"b","seq":1,"schema":2,"session_id":"s","wallTime":NaN,"instantPower":1,'
     b'"rider_id":null,"source":"x"}', "power", "not JSON"),
    (b'{"event_id":"b:1","gateway_id":"b","seq":1,"schema":9,"session_id":"s"}', "power", "unknown schema version 9"),
    (b'{"event_id":"b:1","gateway_id":"b","seq":1,"schema":2,"session_id":"s","wallTime":1.0,"instantPower":1,'
     b'"rider_id":null}', "power", "needs 'source'"),
    (b'{"event_id":"b:1","gateway_id":"b","seq":1,"schema":2,"session_id":"s","wallTime":"soon","transponder":"T",'
     b'"gate":"SF","rider_id":null}', "crossing", "'wallTime' of a crossing message has the wrong type"),
    (b'{"event_id":"b:2","gateway_id":"b","seq":1,"schema":2,"session_id":"s"}', "power", "does not match"),
    (b'{"event_id":"b:1","gateway_id":"b","seq":1,"schema":3,"session_id":"s"}', "power", "needs spool_id"),
    (b'{"event_id":"b:ab12:1","gateway_id":"b","spool_id":"ab12","seq":1,"schema":2,"session_id":"s"}', "power",
     "spool_id in a schema 2 message"),
    (b'{"event_id":"b:1","gateway_id":"b","spool_id":"ab12","seq":1,"schema":3,"session_id":"s"}', "crossing",
     "does not match"),
    (b'{"event_id":"b:A B:1","gateway_id":"b","spool_id":"A B","seq":1,"schema":3,"session_id":"s"}', "segment",
     "needs spool_id"),
    (b'{"event_id":"b:1","gateway_id":"b","seq":1,"schema":2,"session_id":"s","gate":"SF","gate":"G1",'
     b'"wallTime":1.0,"transponder":"T","rider_id":null}', "crossing", "the key 'gate' appears twice"),
])
def test_bad_messages_are_refused_with_the_reason(payload: bytes, kind: str, reason: str) -> None:
    with pytest.raises(WireError, match=reason):
        decode(payload, kind)


def test_schema_1_segments_with_their_doubled_session_still_decode() -> None:
    """What boxes sent before: session_id and simulation_id twice in one object."""
    body = segment_body(RESULT)
    import orjson

    old = (b'{"event_id":"b:5","gateway_id":"b","seq":5,"schema":1,"session_id":"s1","simulation_id":"s1",'
           + orjson.dumps({"session_id": "s1", "simulation_id": "s1", **body})[1:])
    with pytest.raises(WireError, match="appears twice"):
        parse_strict(old)
    assert segment_result(decode(old, "segment").fields) == RESULT


def test_the_hubs_fast_power_decoder_refuses_a_key_twice_and_reads_other_shapes_strictly() -> None:
    """msgspec keeps the last of two equal keys: a foreign producer's `"instantPower":200,
    "instantPower":2000` was stored as 2000 W. Every other shape than the box's goes through the
    strict decoder."""
    from gateway.wire import Encoder, decode_power

    body = {"wallTime": 1e9, "instantPower": 200.0, "cadence": 90.0, "torque": None, "normalizedPower": 210.0,
            "name": "Anna", "rider_id": "r01", "source": "ant:1"}
    box = Encoder("box-7", "ab12cd34ef").encode(5, "s1", body)
    assert decode_power(box).instantPower == 200.0 and decode_power(box).spool_id == "ab12cd34ef"
    twice = box.replace(b'"instantPower":200.0,', b'"instantPower":200.0,"instantPower":2000.0,')
    with pytest.raises(WireError, match="the key 'instantPower' appears twice"):
        decode_power(twice)
    older = Encoder("box-7").encode(5, "s1", {**body, "implausible": ["power"]})  # schema 2, flagged
    assert decode_power(older).spool_id == "" and decode_power(older).implausible == ["power"]
    minimal = b'{"event_id":"b:1","gateway_id":"b","seq":1,"schema":2,"session_id":"s","wallTime":1,' \
              b'"instantPower":100,"rider_id":null,"source":"x","extra":{"a":1}}'
    assert decode_power(minimal).instantPower == 100.0
    with pytest.raises(WireError, match="'cadence' of a power message has the wrong type"):
        decode_power(minimal.replace(b'"source"', b'"cadence":"fast","source"'))
    with pytest.raises(WireError, match="the key 'number' appears twice"):  # schema 1 repeats only its session
        decode(b'{"event_id":"b:1","gateway_id":"b","seq":1,"schema":1,"session_id":"s","session_id":"s",'
               b'"number":"1.1","number":"1.2"}', "segment")


@pytest.mark.parametrize("gateway, spool", [("box-7", "ab12cd34ef"), ("box-7", None), ("b.x_1", "0000")])
@pytest.mark.parametrize("session", ["s1", None, 'it\'s "odd" % ünïcode'])
def test_the_spools_identity_sql_gives_the_encoders_bytes(gateway: str, spool: str | None, session: str | None) -> None:
    """The spool stores a message's body and rebuilds its identity in SQL as it reads: both come from
    ``wire.identity_pieces``, and must give the same bytes (the row's checksum is of the whole)."""
    import sqlite3

    from gateway.wire import Encoder
    from gateway.wire.identity import SCHEMA, identity_sql

    body = {"wallTime": 1e9, "instantPower": 200.5, "cadence": None, "name": "Zoë", "rider_id": "r01", "source": "x"}
    whole, stored = Encoder(gateway, spool).for_spool(41, session, body)
    empty_whole, empty_stored = Encoder(gateway, spool).for_spool(42, session, {})
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (seq INTEGER, session_id TEXT, payload BLOB)")
    conn.executemany("INSERT INTO t VALUES (?, ?, ?)", [(41, session, stored), (42, session, empty_stored)])
    rest = "(CASE WHEN length(payload) > 2 THEN ',' || substr(payload, 2) ELSE '}' END)"
    for sql in (identity_sql(rest, spool is not None, gateway=gateway, spool_id=spool),
                identity_sql(rest, spool is not None, lookups=("'" + gateway + "'", f"'{spool}'", str(SCHEMA)))):
        got = [bytes(r[0], "utf-8") for r in conn.execute(f"SELECT {sql} FROM t ORDER BY seq")]
        assert got == [whole, empty_whole]
    conn.close()


def test_one_key_rule_in_python_and_in_sql() -> None:
    import sqlite3

    from gateway.wire import KEY_SQL, key_of

    rows = [("power", "r01", "s1"), ("power", None, "s1"), ("crossing", None, "s1"), ("session", None, "s1"),
            ("session", "r01", None), ("segment", "r02", "s2")]
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (kind TEXT, rider_id TEXT, session_id TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?, ?)", rows)
    assert [k for (k,) in conn.execute(f"SELECT {KEY_SQL} FROM t")] == [key_of(*r) for r in rows] == [
        "r01", "unknown", "unknown", "s1", "unknown", "r02"]
    conn.close()


def test_every_kind_decodes_to_its_typed_event(stored: list) -> None:
    import math

    from gateway.model import GateCrossing, PowerSample
    from gateway.wire import decode_event

    power, flagged, crossing, segment = (decode_event(a.kind, a.payload) for a in stored)
    assert isinstance(power.event, PowerSample) and power.rider_id == "r01" and not power.implausible
    assert (power.event.power, power.event.cadence, power.event.torque) == (250.0, 88.0, 30.5)
    assert flagged.implausible == ("power",) and not math.isnan(flagged.event.power)
    assert isinstance(crossing.event, GateCrossing) and crossing.event.receiver_time == 8200.0
    assert (crossing.event.gate, crossing.event.lap, crossing.rider_id) == ("SF", 2, "r01")
    assert segment.event == RESULT and segment.message.seq == stored[3].seq


def test_an_ant_page_keeps_its_radio_identity_from_the_stick_to_the_decoded_sample(spool) -> None:
    """Wire schema 4 (#30): every box in range of a meter receives the same page; the sample carries
    the page (and the device number) so the hub can tell it is one sample heard twice."""
    from fakes import crank

    from gateway.sources.ant import AntSource
    from gateway.wire import decode_event

    ingest = Ingest(spool, Roster(riders(RIDERS)), "s1", batching=Batching(0.01)).start()
    try:
        source = AntSource(ingest.submit, [23456], node_factory=lambda: None)
        for n in range(3):
            source.on_page(23456, crank(n, 1365 * n, 960 * n), 1000.0 + n)
        assert ingest.flush(10)
    finally:
        ingest.stop()
    rows = [r for r in spool.queries.since(0) if r.kind == "power"]
    decoded = [decode_event("power", r.payload) for r in rows]
    assert [d.message.schema for d in decoded] == [4, 4]
    assert [d.event.raw for d in decoded] == [f"ant:23456:{crank(n, 1365 * n, 960 * n).hex()}" for n in (1, 2)]
    assert [d.event.wall_time for d in decoded] == [1001.0, 1002.0]  # when this box received them


def test_messages_of_schema_3_without_a_radio_identity_still_decode() -> None:
    from gateway.wire import decode_event

    power = (b'{"event_id":"b:ab12:1","gateway_id":"b","spool_id":"ab12","seq":1,"schema":3,"session_id":"s",'
             b'"simulation_id":"s","wallTime":1.0,"instantPower":200,"rider_id":"r01","source":"ant:1"}')
    assert decode_event("power", power).event.raw is None
    bad = power.replace(b'"schema":3', b'"schema":4').replace(b'"source"', b'"raw":7,"source"')
    with pytest.raises(WireError, match="'raw' of a power message has the wrong type"):
        decode_event("power", bad)


def test_the_hubs_fast_decoder_keeps_the_radio_identity(stored: list) -> None:
    """The hub reads most power messages through ``decode_power``: the raw identity must survive it,
    on the fast path and on the strict one (a message of another shape)."""
    from gateway.wire.power import decode_power

    raw = "ant:23456:12010a5a5505c003"
    box = Encoder("box1", "ab12cd").encode(7, "s1", power_body(1000.0, (250.0, 90.0, None), 249.0,
                                                               ("Anna", "r01", "ant:23456"), raw))
    assert decode_power(box).raw == raw
    other_shape = box.replace(b',"source"', b',"note":"a key no box writes","source"')
    assert decode_power(other_shape).raw == raw
    assert decode_power(stored[0].payload).raw is None  # a sample from no radio


@pytest.mark.parametrize("kind, body, said", [
    ("power", {"wallTime": 1e9, "instantPower": 200.0, "rider_id": "r\x0001", "source": "ant:1"},
     "rider_id contains a NUL character"),
    ("crossing", {"wallTime": 1e9, "transponder": "T1", "gate": "SF", "rider_id": None, "\x00": 1},
     "? contains a NUL character"),
    ("session", {"kind": "live", "started": 1e9, "ended": None, "course": {"id": "c"}, "riders": [{"n": "a\x00"}]},
     "riders contains a NUL character"),
])
def test_a_nul_character_anywhere_is_refused_by_name_on_both_paths(kind: str, body: dict, said: str) -> None:
    """PostgreSQL's text and jsonb hold no NUL: one such message failed a hub's batch at every try.
    The fast power decoder sends any message with an escape the strict way, which names the field."""
    from gateway.wire.power import decode_power

    payload = Encoder("box-7", "ab12cd34ef").encode(5, "s1", body)
    assert b"\\u0000" in payload
    with pytest.raises(WireError, match=said.replace("?", r"\?")):
        decode(payload, kind)
    if kind == "power":
        with pytest.raises(WireError, match=said):
            decode_power(payload)
        text = Encoder("box-7", "ab12cd34ef").encode(6, "s1", {**body, "rider_id": "a \\u0000 b"})  # no NUL
        assert decode(text, kind).fields["rider_id"] == decode_power(text).rider_id == "a \\u0000 b"


@pytest.mark.parametrize("seq", [-1, 2**63, 2**64 - 1])
def test_a_sequence_number_beyond_bigint_is_refused_on_both_paths(seq: int) -> None:
    from gateway.wire.power import decode_power

    body = {"wallTime": 1e9, "instantPower": 200.0, "cadence": 90.0, "torque": None, "normalizedPower": 210.0,
            "name": "Anna", "rider_id": "r01", "source": "ant:1"}
    payload = Encoder("box-7", "ab12cd34ef").encode(seq, "s1", body)
    for read in (lambda: decode(payload, "power"), lambda: decode_power(payload)):
        with pytest.raises(WireError, match=f"seq {seq} is outside 0-9223372036854775807"):
            read()
    assert decode_power(Encoder("box-7", "ab12cd34ef").encode(2**63 - 1, "s1", body)).seq == 2**63 - 1
