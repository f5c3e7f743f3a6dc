"""Whatever arrives on a topic, the hub's consumer turns each message into a row whose every value
fits its column, or into a dead letter with a reason; nothing it decodes raises. The messages are a
real box's (spooled by the box's own ingest), then garbled: each key given odd values or left out,
nested parts of a session record too, and bytes flipped, cut and spliced."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from gateway.config import parse, riders
from gateway.hub.consumer import HubConsumer
from gateway.model import GateCrossing, PowerSample, SegmentResult
from gateway.pipeline.ingest import Batching, Ingest
from gateway.pipeline.roster import Roster
from gateway.spool.store import Spool
from gateway.wire import Encoder

T = 1_700_000_000.0
RIDERS = [{"id": "r01", "name": "Anna", "transponder": "BD-1", "power_meters": [{"ant": 23456}]}]
RESULT = SegmentResult("s1", "r01", "Anna", "2.3", 2, 3, T, T + 61.5, 61.5, "G2", "G3", 250.0, 88.0, 262.5,
                       0.95, 1.6, 4.3, 246, 1.0, ("power_gap",), "ride")
TOPICS = {"power": "p", "crossing": "c", "segment": "g", "session": "x"}
ODD: list[Any] = [None, True, False, 0, -1, 1.5, 2**31, 2**63, -(2**63) - 1, 2**70, -1e308, 1e308, "", "x",
                  "x" * 300, "é", [], ["a"], [1], {}, {"a": 1}, [[]], [{"id": 5}], "1e3"]
SPLICE = [b'"', b"\\", b"\\u0000", b"1e999", b"-", b"NaN", b"{", b"[", b",", b":", b"null"]


class Message:
    """What confluent-kafka's consumer hands the hub, for one message."""

    def __init__(self, topic: str, value: bytes, offset: int) -> None:
        self._topic, self._value, self._offset = topic, value, offset

    def error(self) -> None:
        return None

    def value(self) -> bytes:
        return self._value

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset


@pytest.fixture(scope="module")
def box_messages(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, bytes]]:
    spool = Spool(tmp_path_factory.mktemp("box") / "spool.sqlite", "box-7").open()
    ingest = Ingest(spool, Roster(riders(RIDERS)), "s1", batching=Batching(0.01))
    ingest.start()
    try:
        ingest.submit(PowerSample("ant:23456", "23456", T, 250.0, 88.0, 30.5))
        ingest.submit(PowerSample("ant:23456", "23456", T + 0.25, 9999.0))  # implausible: flagged
        ingest.submit(GateCrossing("serial:/dev/ttyUSB0", "BD-1", "SF", T, receiver_time=8200.0, lap=2))
        ingest.submit(RESULT)
        assert ingest.flush()
        out = [(row.kind, bytes(row.payload)) for row in spool.queries.since(0)]
    finally:
        ingest.stop()
        spool.close()
    record = {"kind": "live", "name": "Hill repeats", "started": T, "ended": None, "notes": "",
              "course": {"id": "c", "gates": ["SF"], "segments": [], "debounce_s": 2.0},
              "riders": [{"id": "r01", "ftp_w": 250, "weight_kg": 70, "name": "Anna", "squad": "U23"}],
              "files": [], "tags": {}}
    out.append(("session", Encoder("box-7", "abcd1234ef").encode(9, "s1", record)))
    assert [kind for kind, _ in out] == ["power", "power", "crossing", "segment", "session"]
    return out


@pytest.fixture(scope="module")
def consumer() -> HubConsumer:
    config = parse(json.dumps({"gateway": {"id": "hub"}, "course": {"gates": [{"id": "SF"}]}, "riders": [],
                               "kafka": {"enabled": True, "bootstrap_servers": "127.0.0.1:9",
                                         "topics": {"power": "p", "crossings": "c", "segments": "g",
                                                    "sessions": "x"}}}))
    return HubConsumer(config.settings, lambda: None)


def _text(v: Any, null: bool = True) -> bool:
    return (v is None and null) or (type(v) is str and "\x00" not in v)


def _float(v: Any, null: bool = True) -> bool:
    return (v is None and null) or type(v) is float or (type(v) is int and -(2**63) <= v < 2**63)


def _int(v: Any, null: bool = True, bits: int = 64) -> bool:
    return (v is None and null) or (type(v) is int and -(2 ** (bits - 1)) <= v < 2 ** (bits - 1))


def _fits(kind: str, r: tuple[Any, ...]) -> bool:
    """Each value of a row of the kind's table (hub.schema) of its column's type, NOT NULL kept."""
    head = _text(r[0], False) and _int(r[1], False) and _text(r[2], False) and _text(r[-1], False)
    if kind == "power":
        return head and _text(r[3]) and _float(r[4], False) and all(map(_float, r[5:8])) and _text(r[8]) \
            and type(r[9]) is bool and _text(r[10])
    if kind == "crossing":
        return head and _text(r[3]) and _float(r[4], False) and _text(r[5], False) and _text(r[6], False) \
            and _text(r[7]) and _int(r[8], bits=32) and _float(r[9])
    return (head and _text(r[3], False) and _text(r[4]) and _text(r[5], False) and _int(r[6], False, 32)
            and _int(r[7], bits=32) and all(_float(v, False) for v in r[8:11]) and _text(r[11]) and _text(r[12])
            and all(map(_float, r[13:19])) and _int(r[19], False, 32) and _float(r[20], False)
            and type(r[21]) is list and all(_text(f, False) for f in r[21]) and _text(r[22], False)
            and type(r[23]) is bool)


def _variants(obj: dict[str, Any], depth: int = 0) -> Iterator[dict[str, Any]]:
    for key, value in obj.items():
        for odd in ODD:
            yield {**obj, key: odd}
        yield {k: v for k, v in obj.items() if k != key}
        if isinstance(value, dict) and depth < 2:
            for sub in _variants(value, depth + 1):
                yield {**obj, key: sub}
        if isinstance(value, list) and value and isinstance(value[0], dict) and depth < 2:
            for sub in _variants(value[0], depth + 1):
                yield {**obj, key: [sub]}
    yield {**obj, "extra": 1}


def _dumps(value: dict[str, Any]) -> bytes:
    """As a box writes it, but with integers of any size (orjson stops at 64 bits)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _garbled(payload: bytes, rng: random.Random) -> bytes:
    b = bytearray(payload)
    for _ in range(rng.randint(1, 4)):
        if not b:
            break
        i, op = rng.randrange(len(b)), rng.random()
        if op < 0.4:
            b[i] = rng.randrange(256)
        elif op < 0.6:
            del b[i]
        elif op < 0.8:
            b[i:i] = rng.choice(SPLICE)
        else:
            del b[i:]
    return bytes(b)


def _one(consumer: HubConsumer, kind: str, payload: bytes) -> tuple[list[Any], list[Any]]:
    batch = consumer.decode([Message(TOPICS[kind], payload, 0)])
    rows = {"power": batch.power, "crossing": batch.crossings, "segment": batch.segments}.get(kind)
    return (rows if rows is not None else list(batch.sessions.values())), batch.dead


def test_every_garbled_message_is_a_row_that_fits_or_a_dead_letter(
        box_messages: list[tuple[str, bytes]], consumer: HubConsumer) -> None:
    rng = random.Random(35)
    tried = dead = 0
    for kind, payload in box_messages:
        rows, letters = _one(consumer, kind, payload)
        assert len(rows) == 1 and not letters, (kind, letters)  # the box's own message is kept
        garbled = [_dumps(v) for v in _variants(orjson.loads(payload))]
        garbled += [_garbled(payload, rng) for _ in range(400)]
        for message in garbled:
            rows, letters = _one(consumer, kind, message)
            assert len(rows) + len(letters) == 1, message
            tried += 1
            dead += len(letters)
            if letters:
                assert letters[0][4], message  # a reason, always
            elif kind != "session":
                assert _fits(kind, rows[0]), (rows[0], message)
    assert tried > 3000 and 0 < dead < tried


@pytest.mark.parametrize(("kind", "change", "reason"), [
    ("segment", {"power_avg": True}, "power_avg true is not a number"),
    ("segment", {"tss": False}, "tss false is not a number"),
    ("segment", {"samples": 1.5}, "samples 1.5 is outside 0-10000000 (a whole number)"),
    ("session", {"riders": [{"id": "r01", "ftp_w": True}]}, "rider 'r01': ftp_w true is not a number"),
])
def test_a_true_for_a_number_or_a_fraction_for_a_count_is_refused_by_name(
        box_messages: list[tuple[str, bytes]], consumer: HubConsumer, kind: str, change: dict[str, Any],
        reason: str) -> None:
    """JSON's true is Python's 1: a rider's FTP of true was kept as 1 W, a segment's average of true
    failed its whole batch; a sample count of 1.5 went into an integer column as 2."""
    payload = next(p for k, p in box_messages if k == kind)
    rows, letters = _one(consumer, kind, _dumps({**orjson.loads(payload), **change}))
    assert not rows and reason in letters[0][4]


def test_the_box_values_the_checks_keep(box_messages: list[tuple[str, bytes]], consumer: HubConsumer) -> None:
    """Whole numbers where a number goes, and a count of 0, are kept: the checks refuse types, not values."""
    payload = next(p for k, p in box_messages if k == "segment")
    body = orjson.loads(payload)
    rows, letters = _one(consumer, "segment", _dumps({**body, "power_avg": 250, "samples": 0}))
    assert not letters and rows[0][13] == 250 and rows[0][19] == 0
