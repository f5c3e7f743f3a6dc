"""What a sports scientist reads beside the debrief: W' through a session with critical power from
the rider's history, and the plan of an equipment test (JSON for the debrief page)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from gateway.errors import ApiError
from gateway.results.store import ResultsStore
from gateway.web.debrief import chosen_session
from gateway.web.guard import HeavyWork


def create_analysis(store: ResultsStore | None, heavy: HeavyWork) -> Blueprint:
    bp = Blueprint("analysis", __name__)

    def chosen() -> tuple[ResultsStore, str]:
        return chosen_session(store)

    @bp.get("/api/wbalance")
    def wbalance() -> Response:
        """The chosen rider's W' through the session, with CP and W' from their history."""
        from gateway.debrief.wbalance import w_balance

        results, session = chosen()
        rider = request.args.get("rider") or ""
        if not rider:
            raise ApiError(400, "give the rider: /api/wbalance?session=S&rider=R")
        with heavy.slot("this W' balance"):
            return jsonify(w_balance(results, session, rider[:128]))

    @bp.get("/api/plan")
    def test_plan() -> Response:
        """A balanced order for an equipment test of this session's riders, and the runs it needs
        from the noise of this squad's history on the course."""
        from dataclasses import asdict

        from gateway.debrief.plan import plan

        results, session = chosen()
        tag, a, b = (request.args.get(k) or "" for k in ("tag", "a", "b"))
        if not (tag and a and b):
            raise ApiError(400, "give the tag and its two values: /api/plan?tag=tyres&a=1.8bar&b=1.6bar&runs=4")
        if a == b:
            raise ApiError(400, f"setups A and B are both {a[:64]!r}: give two different values of {tag[:32]!r}")
        try:
            runs = min(20, max(2, int(request.args.get("runs") or 4)))
        except ValueError:
            raise ApiError(400, "runs must be a whole number") from None
        with heavy.slot("this plan"):
            course = results.course_of(session)
            same = [s["session"] for s in results.sessions() if results.course_of(s["session"]) == course]
            history = [asdict(r) for r in results.results(same)]
            riders = sorted({r["rider_id"] for r in history if r["session_id"] == session})
            return jsonify({"tag": tag, "a": a, "b": b, **plan(riders, a, b, runs, history)})

    return bp
