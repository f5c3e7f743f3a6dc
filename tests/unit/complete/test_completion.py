"""A session completed by a rider's own recording (#31), on a real spool with the box's own
pipeline: the live session is what one box heard of a real ride (10 % of each lap, on a clock 37 s
off the head unit's and drifting 30 ppm), its gate crossings made from the file's laps; adding
the FIT file gives every lap's power whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from harness import DATA
from rides import FILE, box_clock, live_session, truth, write_axiamo

from gateway import config
from gateway.pipeline.completion import SessionCompletion
from gateway.pipeline.stored import stored_events
from gateway.readers.fit import read_fit
from gateway.results.sqlite import SpoolResults
from gateway.spool.store import Spool


@pytest.fixture
def completion(spool: Spool) -> SessionCompletion:
    return SessionCompletion(config.load(None).settings, spool)


def test_a_head_unit_file_completes_every_lap_and_its_clock_is_found(spool: Spool, completion: SessionCompletion
                                                                      ) -> None:
    session = live_session(spool, FILE)
    before = {r.number: r for r in SpoolResults(spool).results([session])}
    assert before and all(r.coverage < 0.2 for r in before.values())
    (outcome,) = completion.add(session, [(FILE, FILE.name)], who="coach")
    assert outcome.status == "added" and outcome.rider_id == "r1", outcome.message
    ride = read_fit(FILE)
    t0 = float(ride.times[0])
    errors = np.abs(outcome.alignment.to_box(ride.times) - box_clock(ride.times, t0))
    assert errors.max() < 0.5, errors.max()
    after = {r.number: r for r in SpoolResults(spool).results([session])}
    want = truth(FILE)
    assert set(after) == set(want)
    for number, result in after.items():
        assert result.coverage == pytest.approx(want[number].coverage, abs=0.01), number
        assert result.power_avg == pytest.approx(want[number].power_avg, abs=0.5), number
        assert result.normalized_power == pytest.approx(want[number].normalized_power, abs=0.5), number
    # The added samples travel with their identity (kind ``file``): the hub's course engine merges them.
    added = [e.event for e in stored_events(spool, session, "test") if e.event.source.startswith("file:")]
    assert added and all(e.raw == f"file:{FILE.name}:{e.wall_time:.3f}" for e in added)
    record = spool.sessions.record(session)
    (entry,) = record["files_added"]
    assert entry["name"] == FILE.name and entry["rider_id"] == "r1" and entry["added_by"] == "coach"
    # The same file again: nothing changes.
    rows = spool.ledger.last_seq()
    (again,) = completion.add(session, [(FILE, FILE.name)], who="coach")
    assert again.status == "already added" and spool.ledger.last_seq() == rows


def test_a_file_of_someone_not_in_the_session_is_never_merged(spool: Spool, completion: SessionCompletion) -> None:
    # The session's only rider rode other power (another real ride's, laid on this ride's time).
    session = live_session(spool, FILE, power_from=DATA / "fit" / "sweatpy-4078723797.fit")
    rows = spool.ledger.last_seq()
    (outcome,) = completion.add(session, [(FILE, FILE.name)], who="coach")
    assert outcome.status in ("refused", "choose") and spool.ledger.last_seq() == rows, outcome.message


def test_bad_files_are_refused_in_one_line_and_nothing_changes(spool: Spool, completion: SessionCompletion,
                                                                tmp_path: Path) -> None:
    session = live_session(spool, FILE)
    rows = spool.ledger.last_seq()
    other_day = DATA / "fit" / "sweatpy-4078723797.fit"
    text = tmp_path / "notes.txt"
    text.write_text("not a ride")
    outcomes = completion.add(session, [(DATA / "fit" / "activity-unexpected-eof.fit", "cut.fit"),
                                        (other_day, other_day.name), (text, "notes.txt"),
                                        (DATA / "fit" / "nick.fit", "zeros.fit")], who="coach")
    assert [o.status for o in outcomes] == ["refused"] * 4
    assert "truncated" in outcomes[0].message and "another ride" in outcomes[1].message
    assert "FIT files" in outcomes[2].message and outcomes[3].message.startswith("zeros.fit: ")
    assert all("\n" not in o.message and "nothing changed" in o.message for o in outcomes)
    # A logger that recorded no power (every sample zero): said, and nothing changed.
    ride = read_fit(FILE)
    flat = write_axiamo(tmp_path / "flat.xlsx", list(ride.times[:600]), [0.0] * 600, [80.0] * 600)
    (none,) = completion.add(session, [(flat, "flat.xlsx")], who="coach")
    assert none.status == "refused" and "no power data" in none.message
    assert spool.ledger.last_seq() == rows


def test_the_running_session_is_refused_with_what_to_do(spool: Spool) -> None:
    """Files complete a session that is over; the one running (even an automatic one, which has no
    record yet) is refused saying to end it first."""
    from gateway.pipeline.session import SessionError

    running = SessionCompletion(config.load(None).settings, spool, live_session=lambda: "demo-auto")
    with pytest.raises(SessionError) as refused:
        running.add("demo-auto", [(FILE, FILE.name)], who="coach")
    assert "still running" in refused.value.message and "end the session first" in (refused.value.hint or "")
