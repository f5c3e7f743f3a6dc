"""The spool keeps every accepted event: across restarts, full spools and corrupt files (a real
full disk: tests/system/test_spool_full_disk.py)."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import older_spool, open_spool
from harness import power_event as power

from gateway.errors import SpoolError
from gateway.spool.store import NewEvent, Spool


def crossing(i: int, rider: str = "r01") -> NewEvent:
    return NewEvent("crossing", rider, "s1", 1000.0 + i, {"wallTime": 1000.0 + i, "gate": f"G{i}", "rider_id": rider})


def test_rows_get_sequence_ids_and_the_full_wire_message(tmp_path: Path) -> None:
    sp = open_spool(tmp_path / "s.sqlite")
    rows = sp.appender.append([power(0), power(1)])
    assert [r.seq for r in rows] == [1, 2]
    msg = rows[1].message
    assert msg["event_id"] == f"box1:{sp.spool_id}:2" and msg["seq"] == 2 and msg["gateway_id"] == "box1"
    assert msg["session_id"] == msg["simulation_id"] == "s1" and msg["spool_id"] == sp.spool_id
    assert msg["instantPower"] == 201 and msg["schema"] == 4
    sp.close()


def test_sequence_survives_restarts_and_is_never_reused_after_pruning(tmp_path: Path) -> None:
    sp = open_spool(tmp_path / "s.sqlite", retention_s=0.0)
    sp.appender.append([power(i) for i in range(10)])
    sp.ledger.mark_delivered_through(10)
    assert sp.appender.prune() == 10
    sp.close()
    first = sp.spool_id
    sp = open_spool(tmp_path / "s.sqlite")
    assert sp.spool_id == first and sp.appender.append([power(99)])[0].message["event_id"] == f"box1:{first}:11"
    sp.close()


def test_undelivered_backlog_and_delivery(tmp_path: Path) -> None:
    sp = open_spool(tmp_path / "s.sqlite")
    sp.appender.append([power(i) for i in range(5)], now=50.0)
    assert [r.seq for r in sp.outbox.undelivered(0, 10)] == [1, 2, 3, 4, 5]
    assert [r.seq for r in sp.outbox.undelivered(3, 10)] == [4, 5]
    sp.ledger.mark_delivered_through(2)
    assert sp.ledger.backlog() == (3, 50.0)
    assert [r.seq for r in sp.outbox.undelivered(0, 10)] == [3, 4, 5]
    topics = {"power": "p", "crossing": "c", "segment": "s", "session": "x"}
    assert [r[:3] for r in sp.outbox.outgoing(3, 10, topics)] == [(4, "p", "r01"), (5, "p", "r01")]
    sp.close()


def test_retention_prunes_only_delivered_rows(tmp_path: Path) -> None:
    sp = open_spool(tmp_path / "s.sqlite", retention_s=3600.0)
    sp.appender.append([power(i) for i in range(4)], now=1000.0)
    sp.appender.append([power(i) for i in range(4, 6)], now=2000.0)
    sp.ledger.mark_delivered_through(5)
    assert sp.appender.prune(now=1000.0 + 3599) == 0
    assert sp.appender.prune(now=1000.0 + 3601) == 4  # 5 and 6 are younger; 6 is not delivered either
    assert [r.seq for r in sp.queries.since(0)] == [5, 6]
    # 5 was stored in one commit with 6, which is not delivered: a commit's samples go together.
    assert sp.appender.prune(now=1e9) == 0
    sp.ledger.mark_delivered_through(6)
    assert sp.appender.prune(now=1e9) == 2
    assert list(sp.queries.since(0)) == []
    sp.close()


def test_full_spool_with_reject_policy_keeps_what_it_has(tmp_path: Path) -> None:
    sp = open_spool(tmp_path / "s.sqlite", max_bytes=256 * 1024, full_policy="reject")
    accepted = 0
    for batch in range(200):
        accepted += len(sp.appender.append([power(batch * 50 + i) for i in range(50)]))
    status = sp.status()
    assert status["full"] is True and status["rejected"] == 200 * 50 - accepted > 0
    # Every row it accepted is still there, in order.
    assert [r.seq for r in sp.queries.since(0)] == list(range(1, accepted + 1))
    # Delivered rows make room first, whatever their age.
    sp.ledger.mark_delivered_through(500)
    assert len(sp.appender.append([power(1)])) == 1
    assert sp.status()["full"] is False
    sp.close()


def test_full_spool_with_drop_oldest_keeps_the_newest(tmp_path: Path) -> None:
    sp = open_spool(tmp_path / "s.sqlite", max_bytes=256 * 1024, full_policy="drop_oldest")
    for batch in range(200):
        assert len(sp.appender.append([power(batch * 50 + i) for i in range(50)])) == 50
    status = sp.status()
    assert status["dropped"] > 0 and status["rejected"] == 0
    seqs = [r.seq for r in sp.queries.since(0)]
    assert seqs[-1] == 10_000 and len(seqs) == 10_000 - status["dropped"]
    assert seqs == list(range(seqs[0], 10_001))
    assert sp.ledger.backlog()[0] == len(seqs)
    sp.close()


def corrupt_pages(path: Path, pages: list[int]) -> None:
    """Overwrite part of some pages, as a flash controller losing blocks on a power cut would."""
    data = bytearray(path.read_bytes())
    for p in pages:
        data[p * 4096 + 8: p * 4096 + 1000] = os.urandom(992)
    path.write_bytes(bytes(data))


def damaged_spool(path: Path, damage: Callable[[int], list[int]]) -> Spool:
    """A spool of 4000 power samples whose pages ``damage`` (given the page count) picks are damaged,
    opened again (so salvaged)."""
    sp = open_spool(path)
    for b in range(40):
        sp.appender.append([power(b * 100 + i) for i in range(100)])
    sp.close()
    corrupt_pages(path, damage(path.stat().st_size // 4096))
    return open_spool(path)


def test_corrupt_file_is_moved_aside_and_readable_rows_salvaged(tmp_path: Path, caplog) -> None:
    path = tmp_path / "s.sqlite"
    sp = damaged_spool(path, lambda pages: [pages // 3, pages // 2, pages // 2 + 1])
    quarantined = [p for p in tmp_path.glob("s.sqlite.corrupt-*") if not p.name.endswith(("-wal", "-shm"))]
    assert len(quarantined) == 1
    rows = list(sp.queries.since(0))
    assert 0 < len(rows) < 4000
    # The new file keeps the damaged one's identity: its numbers go on, and so does its stream.
    assert all(json.loads(r.payload)["event_id"] == f"box1:{sp.spool_id}:{r.seq}" for r in rows)
    assert sp.status()["corrupt_rows"] > 0
    assert any("failed its integrity check" in m for m in caplog.messages)
    # New events continue after the highest salvaged sequence number: no event id is reused.
    assert sp.appender.append([power(1)])[0].seq > max(r.seq for r in rows)
    sp.close()
    assert open_spool(path).status()["corrupt_rows"] == 0  # healthy now: no crash loop


def test_a_file_that_is_not_a_database_starts_a_fresh_spool(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    path.write_bytes(os.urandom(10_000))
    sp = open_spool(path)
    assert sp.appender.append([power(0)])[0].seq == 1
    assert len([p for p in tmp_path.glob("s.sqlite.corrupt-*") if not p.name.endswith(("-wal", "-shm"))]) == 1
    sp.close()


def test_a_damaged_row_is_skipped_and_counted(tmp_path: Path) -> None:
    sp = open_spool(tmp_path / "s.sqlite")
    sp.appender.append([crossing(i) for i in range(3)])
    sp.appender.append([power(i) for i in range(3, 6)])
    sp.appender.append([power(i) for i in range(6, 9)])
    raw = sqlite3.connect(tmp_path / "s.sqlite")
    raw.execute("UPDATE event_rows SET payload = replace(payload, 'G1', 'G9') WHERE seq = 2")
    # A power sample's block: one flipped byte in its compressed messages.
    raw.execute("UPDATE blocks SET data = CAST(substr(data, 1, 10) || X'00' || substr(data, 12) AS BLOB) "
                "WHERE last_seq = 6")
    raw.commit()
    raw.close()
    assert [r.seq for r in sp.outbox.undelivered(0, 10)] == [1, 3, 7, 8, 9]
    assert sp.status()["corrupt_rows"] == 1 + 3  # the row, and the block's three samples
    sp.close()


def test_a_block_whose_bytes_became_text_is_skipped_not_the_whole_read(tmp_path: Path) -> None:
    sp = open_spool(tmp_path / "s.sqlite")
    sp.appender.append([power(i) for i in range(1, 4)])
    sp.appender.append([power(i) for i in range(4, 7)])
    raw = sqlite3.connect(tmp_path / "s.sqlite")
    # One bit in a record's header turns a BLOB into TEXT: here, bytes that are no UTF-8 stored as text.
    raw.execute("UPDATE blocks SET data = substr(data, 1, 4) || X'FF00FF' WHERE last_seq = 3")
    raw.commit()
    raw.close()
    assert [r.seq for r in sp.queries.since(0)] == [4, 5, 6]
    topics = {"power": "p", "crossing": "c", "segment": "s", "session": "x"}
    assert [r[0] for r in sp.outbox.outgoing(0, 10, topics)] == [4, 5, 6]
    assert sp.status()["corrupt_rows"] == 3 + 3  # the block's three samples, once per read
    sp.close()


def test_a_commits_power_samples_are_one_compressed_block_read_in_order(tmp_path: Path) -> None:
    sp = open_spool(tmp_path / "s.sqlite")
    rows = sp.appender.append([power(0), power(1), crossing(2), power(3)])
    raw = sqlite3.connect(tmp_path / "s.sqlite")
    assert raw.execute("SELECT COUNT(*) FROM blocks").fetchone()[0] == 1
    assert raw.execute("SELECT COUNT(*) FROM event_rows").fetchone()[0] == 1
    # The view reads one line per event, as the table did (a sample's message is in its block).
    assert raw.execute("SELECT seq, kind, rider_id, wall_time FROM events ORDER BY seq").fetchall() == [
        (1, "power", "r01", 1000.0), (2, "power", "r01", 1001.0), (3, "crossing", "r01", 1002.0),
        (4, "power", "r01", 1003.0)]
    raw.close()
    assert list(sp.queries.since(0)) == rows
    assert [r.seq for r in sp.queries.since(0, kinds=["power"])] == [1, 2, 4]
    topics = {"power": "p", "crossing": "c", "segment": "s", "session": "x"}
    assert [(r[0], r[1], r[3]) for r in sp.outbox.outgoing(0, 10, topics)] == [
        (r.seq, "c" if r.kind == "crossing" else "p", r.payload) for r in rows]
    assert [r[0] for r in sp.outbox.outgoing(1, 2, topics)] == [2, 3]
    sp.close()


def test_schema_is_versioned_and_migrated(tmp_path: Path) -> None:
    from gateway.spool.schema import SCHEMA_VERSION

    raw = older_spool(tmp_path / "s.sqlite", 1)  # a spool a version-1 gateway wrote
    raw.execute("PRAGMA user_version=1")
    raw.commit()
    raw.close()
    sp = open_spool(tmp_path / "s.sqlite")
    sp.appender.append([NewEvent("segment", "r01", "s1", 1.0, {"number": "1.1"})])
    sp.close()
    raw = sqlite3.connect(tmp_path / "s.sqlite")
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 10
    plan = raw.execute("EXPLAIN QUERY PLAN SELECT seq FROM events WHERE kind = 'segment' AND session_id = 's1'")
    assert "events_segments" in str(plan.fetchall())
    raw.execute("PRAGMA user_version=99")
    raw.close()
    with pytest.raises(SpoolError, match="schema version 99, newer than this gateway's 10"):
        open_spool(tmp_path / "s.sqlite")


def test_backlog_count_is_kept_across_appends_deliveries_drops_and_restarts(tmp_path: Path) -> None:
    sp = open_spool(tmp_path / "s.sqlite")
    sp.appender.append([power(i) for i in range(10)], now=5.0)
    sp.ledger.mark_delivered_through(4)
    assert sp.ledger.backlog() == (6, 5.0)
    sp.ledger.mark_delivered_through(2)  # an older watermark (a re-send acknowledged late) changes nothing
    assert sp.ledger.backlog()[0] == 6
    sp.close()
    sp = open_spool(tmp_path / "s.sqlite")
    assert sp.ledger.backlog() == (6, 5.0)
    sp.close()


def test_a_set_aside_row_stays_in_the_backlog_while_the_watermark_passes_it(tmp_path: Path) -> None:
    sp = open_spool(tmp_path / "s.sqlite", retention_s=0.0)
    sp.appender.append([power(i) for i in range(10)], now=5.0)
    sp.appender.append([power(10)], now=7.0)
    assert sp.outbox.set_aside(3, "MSG_SIZE_TOO_LARGE")
    sp.ledger.mark_delivered_through(10)
    assert sp.ledger.backlog() == (2, 5.0)  # row 3 (refused) and row 11
    assert [r.seq for r in sp.outbox.set_aside_rows()] == [3]
    assert sp.appender.prune(now=100.0) == 0  # never the set-aside row, nor the samples committed with it
    assert sp.status()["set_aside"] == 1
    sp.close()
    sp = open_spool(tmp_path / "s.sqlite")
    assert sp.ledger.backlog() == (2, 5.0)
    sp.outbox.clear_set_aside(3)
    assert sp.ledger.backlog() == (1, 7.0)
    sp.close()


def test_messages_are_stored_folded_and_read_whole(tmp_path: Path) -> None:
    import zlib

    sp = open_spool(tmp_path / "s.sqlite")
    whole = sp.appender.append([crossing(0)])[0].payload
    raw = sqlite3.connect(tmp_path / "s.sqlite")
    stored = raw.execute("SELECT payload FROM event_rows").fetchone()[0]
    # Stored without the identity the columns and the table of gateways hold: what the SD card is spared.
    assert stored == b'{"wallTime":1000.0,"gate":"G0","rider_id":"r01"}'
    assert len(stored) < 0.5 * len(whole)
    topics = {"power": "p", "crossing": "c", "segment": "s", "session": "x"}
    assert sp.outbox.undelivered(0, 1)[0].payload == whole == sp.outbox.outgoing(0, 1, topics)[0][3]
    assert json.loads(whole)["session_id"] == json.loads(whole)["simulation_id"] == "s1"
    assert json.loads(whole)["event_id"] == f"box1:{sp.spool_id}:1" and json.loads(whole)["seq"] == 1
    sp.close()
    # Rows a schema-3 gateway stored whole, and a schema-5 one folded after the event id, read the
    # same (rows from before the gateway was first named in the table): as the wire schema 2
    # messages they were.
    from gateway.wire import Encoder

    raw.execute("UPDATE gateways SET first_seq = 2")
    old = Encoder("box1").encode(1, "s1", json.loads(stored))
    folded = b'{"event_id":"box1:1",' + stored[1:]
    for older in (old, folded):
        raw.execute("UPDATE event_rows SET payload = ?, crc = ? WHERE seq = 1", (older, zlib.crc32(old)))
        raw.commit()
        sp = open_spool(tmp_path / "s.sqlite")
        assert sp.outbox.undelivered(0, 1)[0].payload == old == sp.outbox.outgoing(0, 1, topics)[0][3]
        assert json.loads(old)["schema"] == 2 and "spool_id" not in json.loads(old)
        sp.close()
    raw.close()


def test_rows_stored_before_the_box_was_renamed_keep_their_gateway(tmp_path: Path) -> None:
    old = Spool(tmp_path / "s.sqlite", "box1").open()
    before = old.appender.append([power(0)])[0].payload
    old.close()
    renamed = Spool(tmp_path / "s.sqlite", "trackside-north.2").open()
    after = renamed.appender.append([power(1)])[0].payload
    topics = {"power": "p", "crossing": "c", "segment": "s", "session": "x"}
    assert [r[3] for r in renamed.outbox.outgoing(0, 10, topics)] == [before, after]
    assert [json.loads(r.payload)["gateway_id"] for r in renamed.queries.since(0)] == ["box1", "trackside-north.2"]
    assert renamed.status()["corrupt_rows"] == 0
    renamed.close()


def test_a_number_once_given_is_never_given_again_after_a_kill_or_a_lost_tail(tmp_path: Path) -> None:
    from gateway.spool.ledger import SEQ_RESERVE

    path = tmp_path / "s.sqlite"
    killed = open_spool(path)
    killed.appender.append([power(i) for i in range(50)])
    # Killed (never closed, never used again): the next start goes on from the last row, without a gap.
    spool = open_spool(path, max_bytes=64 * 1024, full_policy="drop_oldest")
    assert spool.appender.append([power(50)])[0].seq == 51
    # Rows dropped for room, then the disk too full for the new batch: the spool may be left empty.
    while spool.status()["dropped"] == 0:
        spool.appender.append([power(i) for i in range(100)])
    given = spool.ledger.last_seq()
    spool.close()
    with sqlite3.connect(path) as raw:
        raw.execute("DELETE FROM event_rows")
        raw.execute("DELETE FROM blocks")
    assert open_spool(path).appender.append([power(0)])[0].seq > given - 100  # never a number given before the drop
    killed.close()

    # The newest rows lost to damage (a power cut on a failing card): their numbers may be in Kafka.
    sp = damaged_spool(tmp_path / "d.sqlite", lambda pages: [pages - 2, pages - 1])
    saved = [r.seq for r in sp.queries.since(0)]
    assert 0 < len(saved) < 4000 and max(saved) < 4000
    assert 4000 < sp.appender.append([power(1)])[0].seq <= 4000 + SEQ_RESERVE + 1
    sp.close()


def test_a_small_commit_writes_one_page_to_the_card(tmp_path: Path) -> None:
    """SQLite's AUTOINCREMENT rewrote its sequence page at every commit: twice the pages of a crossing."""
    sp = open_spool(tmp_path / "s.sqlite")
    sp.appender.append([power(0)])
    conn = sp.file.conn()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for i in range(1, 51):
        sp.appender.append([power(i)])
    frames = (os.path.getsize(f"{tmp_path / 's.sqlite'}-wal") - 32) // (4096 + 24)
    assert 50 <= frames <= 55  # a new leaf now and then adds a page
    sp.close()


def test_the_uplink_reading_while_ingest_commits_sees_every_event_once_in_order(tmp_path: Path) -> None:
    """Rows and blocks are read in one snapshot: a commit landing between the two reads once showed its
    block but not its crossing, and the uplink passed the crossing by."""
    import threading

    sp = open_spool(tmp_path / "s.sqlite")
    done = threading.Event()

    def ingest() -> None:
        for b in range(400):
            sp.appender.append([power(b * 10 + i) for i in range(6)] + [crossing(b)]
                               + [power(b * 10 + 7 + i) for i in range(3)])
        done.set()

    writer = threading.Thread(target=ingest)
    writer.start()
    topics = {"power": "p", "crossing": "c", "segment": "s", "session": "x"}
    seen: list[int] = []
    while not done.is_set() or (seen and seen[-1] < sp.ledger.last_seq()) or not seen:
        seen += [r[0] for r in sp.outbox.outgoing(seen[-1] if seen else 0, 7, topics)]
    writer.join()
    sp.release_thread()
    assert seen == list(range(1, 4001))
    sp.close()


def test_power_samples_stored_as_rows_before_schema_7_are_still_read_and_sent(tmp_path: Path) -> None:
    import zlib

    from gateway.wire import Encoder

    raw = older_spool(tmp_path / "s.sqlite", 6)  # a schema-6 gateway stored power samples one row each
    for seq in (1, 2):
        whole, stored = Encoder("box1").for_spool(seq, "s1", {"wallTime": 1000.0 + seq, "instantPower": 200})
        raw.execute("INSERT INTO events (seq, kind, rider_id, session_id, wall_time, recv_time, payload, crc) "
                    "VALUES (?, 'power', 'r01', 's1', ?, 5.0, ?, ?)", (seq, 1000.0 + seq, stored, zlib.crc32(whole)))
    raw.execute("PRAGMA user_version=6")
    raw.commit()
    raw.close()
    sp = open_spool(tmp_path / "s.sqlite")
    sp.appender.append([power(3), crossing(4), power(5)])
    assert [(r.seq, r.kind) for r in sp.queries.since(0)] == [(1, "power"), (2, "power"), (3, "power"), (4, "crossing"),
                                                      (5, "power")]
    assert [r.seq for r in sp.queries.since(0, kinds=["power"])] == [1, 2, 3, 5]
    topics = {"power": "p", "crossing": "c", "segment": "s", "session": "x"}
    assert [r[0] for r in sp.outbox.outgoing(0, 10, topics)] == [1, 2, 3, 4, 5]
    assert sp.ledger.backlog()[0] == 5 and sp.status()["corrupt_rows"] == 0
    sp.close()


def test_blocks_written_by_schema_7_as_zlib_streams_are_read_beside_new_ones(tmp_path: Path) -> None:
    import zlib

    from gateway.wire import Encoder

    raw = older_spool(tmp_path / "s.sqlite", 7)  # a schema-7 gateway wrote its blocks as zlib streams
    wholes = [Encoder("box1").for_spool(seq, "s1", {"wallTime": 1000.0 + seq, "instantPower": 200})[0]
              for seq in (1, 2)]
    data = zlib.compress(b"\n".join(wholes), 1)
    idx = json.dumps({"seq": [1, 2], "rider": ["r01", "r01"], "wall": [1001.0, 1002.0]})
    raw.execute("INSERT INTO blocks VALUES (2, 1, 2, 's1', 5.0, ?, ?, ?)", (idx, data, zlib.crc32(data)))
    raw.execute("PRAGMA user_version=7")
    raw.commit()
    raw.close()
    sp = open_spool(tmp_path / "s.sqlite")
    sp.appender.append([power(3), crossing(4), power(5)])
    stored = sp.file.conn().execute("SELECT substr(data, 1, 4) FROM blocks ORDER BY last_seq").fetchall()
    assert [d[0][:1] for d in stored] == [b"\x78", b"\x28"]  # zlib, then a Zstandard frame
    rows = list(sp.queries.since(0))
    assert [(r.seq, r.kind) for r in rows] == [(1, "power"), (2, "power"), (3, "power"), (4, "crossing"),
                                               (5, "power")]
    assert rows[0].payload == wholes[0] and json.loads(rows[4].payload)["event_id"] == f"box1:{sp.spool_id}:5"
    topics = {"power": "p", "crossing": "c", "segment": "s", "session": "x"}
    assert [r[3] for r in sp.outbox.outgoing(0, 10, topics)][:2] == wholes
    assert sp.status()["corrupt_rows"] == 0
    sp.close()


def test_any_damage_to_one_page_is_salvaged_never_a_refusal_to_start(tmp_path: Path) -> None:
    """Random bytes over one page, 60 ways: whatever SQLite then says (corrupt, not a database,
    "string or blob too big"), the spool opens, salvaging what it can. The fault test met "too big"
    by chance, and the box refused to start."""
    import random

    template = tmp_path / "template.sqlite"
    sp = open_spool(template)
    for b in range(30):
        sp.appender.append([power(b * 100 + i) for i in range(100)])
    sp.close()
    original = template.read_bytes()
    page = len(original) // 4096 // 2
    for seed in range(60):
        path = tmp_path / f"s{seed}.sqlite"
        data = bytearray(original)
        data[page * 4096 + 8: page * 4096 + 1000] = random.Random(seed).randbytes(992)
        path.write_bytes(bytes(data))
        spool = open_spool(path)  # raises SpoolError before the change for some of the seeds
        assert spool.appender.append([power(1)]), seed
        spool.close()


def test_a_new_spool_is_made_at_its_schema_in_one_line(tmp_path: Path, caplog) -> None:
    """#28, point 12: a fresh spool logged eight migrations at its first start."""
    import logging

    from gateway.spool.schema import SCHEMA_VERSION

    caplog.set_level(logging.INFO, "gateway.spool")
    open_spool(tmp_path / "s.sqlite").close()
    said = [m for m in caplog.messages if "schema" in m]
    assert said == [f"spool {tmp_path / 's.sqlite'}: created (schema {SCHEMA_VERSION})"], said




def test_rows_numbered_under_wire_schema_3_keep_it_after_the_upgrade(tmp_path: Path) -> None:
    """Wire schema 4 (#30): an event's identity says the schema it was numbered under. Rows a schema-3
    gateway stored are rebuilt with "schema":3 (their checksum is of that message), new ones with 4."""
    import zlib

    path = tmp_path / "s.sqlite"
    sp = open_spool(path)
    old = sp.appender.append([crossing(i) for i in range(3)])
    sp.close()
    raw = sqlite3.connect(path)  # as a schema-3 gateway left it: its rows' messages said 3
    raw.execute("UPDATE gateways SET wire = 3")
    for row in old:
        as_3 = row.payload.replace(b'"schema":4', b'"schema":3')
        raw.execute("UPDATE event_rows SET crc = ? WHERE seq = ?", (zlib.crc32(as_3), row.seq))
    raw.commit()
    raw.close()
    sp = open_spool(path)
    sp.appender.append([crossing(3)])
    sent = sp.outbox.outgoing(0, 10, {"power": "p", "crossing": "c", "segment": "s", "session": "x"})
    assert [json.loads(m)["schema"] for _, _, _, m, _ in sent] == [3, 3, 3, 4]
    assert [json.loads(m)["seq"] for _, _, _, m, _ in sent] == [1, 2, 3, 4]
    assert sp.counters.corrupt_rows == 0
    sp.close()


def test_threads_that_come_and_go_share_a_few_connections(tmp_path: Path) -> None:
    """The page's requests run on any of the server's threads: each gives its connection back, and
    the spool keeps a few for the next instead of one per thread that ever asked."""
    import threading

    from gateway.spool.file import IDLE_KEPT

    spool = open_spool(tmp_path / "spool.sqlite")
    spool.appender.append([crossing(i) for i in range(5)])
    seen: list[int] = []
    connect, opened = spool.file._connect, []
    spool.file._connect = lambda: opened.append(1) or connect()  # type: ignore[method-assign]

    def ask() -> None:
        seen.append(len(list(spool.queries.since(0))))
        spool.release_thread()

    for _ in range(3):  # in waves, as requests come
        threads = [threading.Thread(target=ask) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert seen == [5] * 60
    assert len(opened) <= 20 + IDLE_KEPT  # reused across waves, not one per thread (60)
    kept = len(spool.file._connections)
    assert kept <= IDLE_KEPT + 1  # the idle ones, and this thread's (the append)
    spool.close()
    assert spool.file._connections == [] and spool.file._idle == []
