"""The hub's tables for analysts (#33): every table and column described in the database, the view
``results`` with dates and names, and the queries of docs/hub-schema.md running on a real PostgreSQL
server with the hub's schema."""

from __future__ import annotations

import json
import re
import time

import psycopg
from harness import ROOT

from gateway.engine.normalize import Population
from gateway.hub import schema_docs, schema_queries
from gateway.hub.results import PgResults
from gateway.hub.schema import migrate

SESSION = "box-1-20260614-090000-a1b2c3"
DOC = ROOT / "docs" / "hub-schema.md"


def _fill(conn: psycopg.Connection) -> None:
    """One rider on the demo loop, three laps of two segments, a sample a second: once in the week of
    8 June 2026 and once yesterday on box-1 (as r01); on box-2 the day before, one lap, as r07 with
    the name typed in other letter case and spacing, while box-2's r01 is someone else."""
    _session(conn, SESSION, "box-1", 1781427600.0, [("r01", "Tomáš Dvořák")], laps=3)
    _session(conn, "box-1-yesterday", "box-1", time.time() - 86400, [("r01", "Tomáš Dvořák")], laps=3)
    _session(conn, "box-2-20260613", "box-2", 1781427600.0 - 86400,
             [("r07", "tomáš  DVOŘÁK"), ("r01", "Marco Rossi")], laps=1)


def _session(conn: psycopg.Connection, session: str, box: str, t0: float, riders: list[tuple[str, str]],
             laps: int) -> None:
    record = {"name": "Hill repeats", "course": {"id": "demo-loop", "segments": [
        {"name": "First climb", "terrain": "climb"}, {"name": "Descent", "terrain": "descent"}]},
        "riders": [{"id": rid, "name": name, "ftp_w": 300, "weight_kg": 68} for rid, name in riders]}
    conn.execute("INSERT INTO sessions (session_id, gateway_id, kind, name, course_id, started, record) "
                 "VALUES (%s, %s, 'live', 'Hill repeats', 'demo-loop', %s, %s)", (session, box, t0, json.dumps(record)))
    seq = conn.execute("SELECT count(*) FROM segments").fetchone()[0]
    for rider, name in riders:
        t = t0
        for lap in range(1, laps + 1):
            for segment, (seconds, watts) in enumerate(((240, 300.0), (90, 150.0)), start=1):
                seq += 1
                conn.execute(
                    "INSERT INTO segments (gateway_id, seq, session_id, rider_id, name, number, lap, segment, start, "
                    '"end", duration, power_avg, normalized_power, watts_per_kg, samples, coverage) '
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 1.0)",
                    (box, seq, session, rider, name, f"{lap}.{segment}", lap, segment, t, t + seconds, seconds, watts,
                     watts, watts / 68, seconds))
                with conn.cursor().copy("COPY power (gateway_id, seq, session_id, rider_id, wall_time, power) "
                                        "FROM STDIN") as copy:
                    for k in range(seconds):
                        copy.write_row((box, seq * 1000 + k, session, rider, t + k, watts + (k % 7)))
                t += seconds


def test_every_table_and_column_is_described_and_the_documented_queries_run(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        migrate(conn)
        described = dict(conn.execute(
            "SELECT c.table_name || '.' || c.column_name, col_description((c.table_schema || '.' || c.table_name)"
            "::regclass, c.ordinal_position) FROM information_schema.columns c JOIN information_schema.tables t "
            "USING (table_schema, table_name) WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'"
        ).fetchall())
        assert described and all(described.values()), [k for k, v in described.items() if not v]
        assert {k.split(".")[0] for k in described} == set(schema_docs.COMMENTS) | set(schema_queries.COMMENTS)
        assert conn.execute("SELECT obj_description('results'::regclass)").fetchone()[0]
        _fill(conn)
        queries = re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.S)
        assert len(queries) == 5
        answers = [conn.execute(q).fetchall() for q in queries]
    history, laps, week, squad, power = answers
    # The rider on box-2 under another id and other letter case is the same person; box-2's r01 is not.
    assert len(history) == 7 and history[0][0] == "Hill repeats" and {row[1] for row in history} == {"box-1", "box-2"}
    assert [lap for lap, _ in laps] == [1, 2, 3] and all(200 < float(np_w) < 320 for _, np_w in laps)
    assert len(week) == 10 and {w[2] for w in week} == {"Tomáš Dvořák", "tomáš  DVOŘÁK", "Marco Rossi"}
    assert week[0][4] == "First climb"
    assert squad == [(squad[0][0], 3, squad[0][2], squad[0][3])] and squad[0][0] == "Tomáš Dvořák"
    assert [(row[0], row[3]) for row in power] == [("box-2-20260613", 330), (SESSION, 990)]  # June only


def test_a_rider_population_finds_the_person_on_every_box(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        migrate(conn)
        _fill(conn)
        conn.commit()
    store = PgResults(lambda: psycopg.connect(pg_dsn))
    try:
        mine = store.population(Population(rider_id="r01", rider_of=SESSION))
        marco = store.population(Population(rider_id="r01", rider_of="box-2-20260613"))
    finally:
        store.close()
    assert {(r.session_id, r.rider_id) for r in mine} == {
        (SESSION, "r01"), ("box-1-yesterday", "r01"), ("box-2-20260613", "r07")}
    assert {(r.session_id, r.rider_id) for r in marco} == {("box-2-20260613", "r01")}


def test_a_hub_of_schema_5_keeps_its_current_results_and_learns_its_riders(pg_dsn: str) -> None:
    from gateway.hub.schema import MIGRATIONS

    with psycopg.connect(pg_dsn) as conn:
        conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, applied_at timestamptz "
                     "NOT NULL DEFAULT now())")
        for version in range(1, 6):
            conn.execute(MIGRATIONS[version])
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
        _fill(conn)
        insert = ("INSERT INTO segments (gateway_id, seq, session_id, rider_id, name, number, lap, segment, start, "
                  '"end", duration, samples, coverage, withdrawn) '
                  "VALUES (%s, %s, %s, %s, %s, %s, 1, 1, %s, %s, 60, 60, 1, %s)")
        # A result corrected once (seq 901 then 902) and one withdrawn (903, then 904 withdraws it).
        for seq, number, start, withdrawn in ((901, "7.1", 5.0, False), (902, "7.1", 5.0, False),
                                              (903, "8.1", 9.0, False), (904, "8.1", 9.0, True)):
            conn.execute(insert, ("box-1", seq, SESSION, "r01", "Tomáš Dvořák", number, start, start + 60, withdrawn))
        before = conn.execute("SELECT gateway_id, seq FROM segments_current ORDER BY 1, 2").fetchall()
        conn.commit()
        assert migrate(conn) == 6
        after = conn.execute("SELECT gateway_id, seq FROM segments_current ORDER BY 1, 2").fetchall()
        assert after == before and ("box-1", 902) in after and ("box-1", 901) not in after
        assert all(seq not in (903, 904) for _, seq in after)
        # A later correction, written after the migration, replaces the current row (the trigger).
        conn.execute(insert, ("box-1", 905, SESSION, "r01", "Tomáš Dvořák", "7.1", 5.0, 66.0, False))
        current = conn.execute("SELECT seq FROM segments_current WHERE number = '7.1'").fetchall()
        assert current == [(905,)]
        keys = conn.execute("SELECT DISTINCT rider_key FROM session_riders WHERE rider_id IN ('r01', 'r07') "
                            "AND name <> 'Marco Rossi'").fetchall()
        assert keys == [("name:tomáš dvořák",)]


def test_a_course_result_is_numbered_in_commit_order(pg_dsn: str) -> None:
    """The page's feed sends results after the last hub_seq it sent, so hub_seq must follow commit
    order. Before: a course result took its hub_seq at insert and waited for the segments' lock only
    in the insert's trigger, so a box batch holding that lock committed a later hub_seq first, and a
    page fed meanwhile never got the course result."""
    import threading

    from gateway.hub import coursedb
    from gateway.hub.course import Change
    from gateway.hub.writer import SEGMENT_LOCK
    from gateway.model import SegmentResult

    with psycopg.connect(pg_dsn) as conn:
        migrate(conn)
    course_result = SegmentResult("course-1", "r01", "Anna", "1.1", 1, 1, 0.0, 100.0, 100.0, "SF", "G1",
                                  200.0, None, None, None, None, None, 10, 1.0)
    with psycopg.connect(pg_dsn) as box, psycopg.connect(pg_dsn, autocommit=True) as course, \
            psycopg.connect(pg_dsn, autocommit=True) as look:
        box.execute("SELECT pg_advisory_xact_lock(%s)", (SEGMENT_LOCK,))  # a box batch, as hub.writer takes it
        writer = threading.Thread(target=coursedb.write, args=(course, [Change(course_result, ())]))
        writer.start()
        deadline = time.monotonic() + 10
        waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        while not look.execute(waiting).fetchone()[0]:
            assert time.monotonic() < deadline, "the course writer never waited for the segments' lock"
            time.sleep(0.02)
        box.execute("INSERT INTO segments (gateway_id, seq, session_id, rider_id, name, number, lap, segment, start, "
                    '"end", duration, power_avg, samples, coverage) VALUES '
                    "('box-1', 1, 'box-1-s', 'r01', 'Anna', '1.1', 1, 1, 0, 90, 90, 210, 90, 1.0)")
        box.commit()
        writer.join(10)
        assert not writer.is_alive()
        order = look.execute("SELECT gateway_id FROM segments ORDER BY hub_seq").fetchall()
    assert [g for (g,) in order] == ["box-1", coursedb.COURSE_GATEWAY]


def _listed_by_counting_all(conn: psycopg.Connection) -> list[tuple[object, ...]]:
    """The session list as counted over the whole season (what the page showed before it counted
    only what changed)."""
    return conn.execute(
        'SELECT session_id, count(*), min("end"), max("end") FROM segments_current GROUP BY session_id '
        "ORDER BY min(hub_seq)").fetchall()


def test_the_session_list_follows_new_corrected_and_withdrawn_results(pg_dsn: str) -> None:
    """The hub counts a session's results again only when they changed: what it lists after new
    results, a correction, a withdrawal of a session's every result and a new session is what
    counting the whole season says."""
    with psycopg.connect(pg_dsn) as conn:
        migrate(conn)
        _fill(conn)
    store = PgResults(lambda: psycopg.connect(pg_dsn))
    try:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            def listed() -> list[tuple[object, ...]]:
                return [(s["session"], s["results"], s["first"], s["last"]) for s in store.sessions()]

            assert listed() == _listed_by_counting_all(conn) and len(listed()) == 3
            insert = ("INSERT INTO segments (gateway_id, seq, session_id, rider_id, name, number, lap, segment, "
                      'start, "end", duration, power_avg, samples, coverage, withdrawn) '
                      "VALUES (%s, %s, %s, %s, 'x', %s, %s, 1, %s, %s, 60, 250, 60, 1.0, %s)")
            first = conn.execute("SELECT start, \"end\" FROM segments WHERE session_id = %s ORDER BY hub_seq LIMIT 1",
                                 (SESSION,)).fetchone()
            conn.execute(insert, ("box-1", 900, SESSION, "r01", "9.1", 9, 1.79e9, 1.79e9 + 60, False))  # a new lap
            conn.execute(insert, ("box-1", 901, SESSION, "r01", "1.1", 1, first[0], first[1] + 5, False))  # corrected
            for seq, (rider, number, start) in enumerate(conn.execute(
                    "SELECT rider_id, number, start FROM segments WHERE session_id = 'box-2-20260613'").fetchall()):
                conn.execute(insert, ("box-2", 950 + seq, "box-2-20260613", rider, number, 1, start, start + 60, True))
            conn.execute("INSERT INTO sessions (session_id, gateway_id, kind, name, started) "
                         "VALUES ('box-3-new', 'box-3', 'live', 'New', 1781427600)")
            conn.execute(insert, ("box-3", 1, "box-3-new", "r05", "1.1", 1, 1781427700.0, 1781427760.0, False))
            after = listed()
            assert after == _listed_by_counting_all(conn)
            assert [s for s, *_ in after] == [SESSION, "box-1-yesterday", "box-3-new"]  # box-2's all withdrawn
            assert after[0][1] == 7 and after[0][3] == 1.79e9 + 60  # six and a new one; one corrected
    finally:
        store.close()
