"""W' through a session (#32): critical power and W' from the rider's history on the box's spool
(a real ride, completed by its FIT file), then what each lap cost."""

from __future__ import annotations

import pytest
from rides import FILE, live_session

from gateway import config
from gateway.debrief.wbalance import w_balance
from gateway.engine.wprime import best_efforts, critical_power
from gateway.pipeline.completion import SessionCompletion
from gateway.readers.fit import read_fit
from gateway.results.sqlite import SpoolResults
from gateway.spool.store import Spool


def test_cp_from_history_and_w_prime_spent_lap_by_lap(spool: Spool) -> None:
    session = live_session(spool, FILE)
    store = SpoolResults(spool)
    thin = w_balance(store, session, "r1")  # only what one box heard: no 3-minute effort whole
    assert thin["cp_w"] is None and "not enough history" in thin["reason"]
    SessionCompletion(config.load(None).settings, spool).add(session, [(FILE, FILE.name)], who="coach")
    out = w_balance(store, session, "r1")
    cp, w_prime = critical_power(best_efforts(read_fit(FILE).power))
    assert out["cp_w"] == pytest.approx(cp, abs=2.0) and out["w_prime_j"] == pytest.approx(w_prime, rel=0.1)
    assert out["sessions_used"] == 1 and [lap["lap"] for lap in out["laps"]] == list(range(1, 9))
    for lap in out["laps"]:
        assert lap["lowest_pct"] <= 100 and lap["spent_j"] >= 0
    # Below 0 the ride went beyond what the history's CP and W' allow: said, not hidden.
    assert out["beyond_history"] == any(lap["lowest_pct"] < 0 for lap in out["laps"])
    hardest = max(out["laps"], key=lambda lap: lap["spent_j"])
    assert hardest["spent_j"] > 1000 and hardest["lowest_pct"] < 90  # the hard laps dig into W'
    assert len(out["segments"]) == 8 and all(s["w_bal_end_j"] <= out["w_prime_j"] for s in out["segments"])
