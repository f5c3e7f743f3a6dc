"""Which session the page shows when the coach chose none (#34): their running live session, not a
looping demo replay that started after it; else the latest session with results."""

from __future__ import annotations

from gateway.web.api import default_session


def _s(session: str, kind: str, last: float, *, results: int = 5, ended: float | None = None) -> dict[str, object]:
    return {"session": session, "kind": kind, "results": results, "last": last, "ended": ended}


def test_the_coachs_live_session_keeps_the_page_while_a_demo_replay_loops() -> None:
    sessions = [_s("box-1-0900", "live", 1000.0), _s("replay-box-1-0910", "replay", 1200.0)]
    assert default_session(sessions) == "box-1-0900"


def test_otherwise_the_latest_session_with_results() -> None:
    assert default_session([_s("box-1-0900", "live", 1000.0, ended=1100.0),
                            _s("replay-box-1-0910", "replay", 1200.0)]) == "replay-box-1-0910"
    # A live session a crash left open a day ago does not hold the page.
    assert default_session([_s("box-1-yesterday", "live", 1000.0),
                            _s("replay-box-1-0910", "replay", 1000.0 + 86400)]) == "replay-box-1-0910"
    assert default_session([_s("box-1-0900", "live", 0.0, results=0)]) is None
