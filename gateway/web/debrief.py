"""The debrief on the page: fatigue, quadrant changes, comparisons (JSON), and the report (PDF)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from gateway.config import Config
from gateway.errors import ApiError, NotFound
from gateway.results.store import ResultsStore
from gateway.web.guard import HeavyWork
from gateway.web.requests import attachment


def report_name(store: ResultsStore, session: str, rider: str | None) -> str:
    """A report's file name for people: the session's day and name, and the rider's name."""
    import time

    record = store.record(session) or {}
    day = time.strftime("%Y-%m-%d", time.gmtime(record["started"])) if record.get("started") else ""
    name = str(record.get("name") or session)
    who = next((str(r.get("name") or rider) for r in record.get("riders") or () if r.get("id") == rider), rider)
    return " ".join(p for p in (day, name) if p) + (f" - {who}" if rider else "")


def chosen_session(store: ResultsStore | None) -> tuple[ResultsStore, str]:
    """The store and the session asked for (``?session=``), else the newest with results."""
    if store is None:
        raise ApiError(503, "no results on this server")
    session = request.args.get("session")
    if not session:
        known = [s["session"] for s in store.sessions() if s["results"]]
        if not known:
            raise NotFound("no results to debrief yet")
        session = known[-1]
    return store, session


def create_debrief(config: Config, store: ResultsStore | None, heavy: HeavyWork) -> Blueprint:
    bp = Blueprint("debrief", __name__)

    def chosen() -> tuple[ResultsStore, str]:
        return chosen_session(store)

    @bp.get("/api/debrief")
    def debrief() -> Response:
        from gateway.debrief.view import debrief as build

        results, session = chosen()
        a, b = (request.args.get(k) or None for k in ("a", "b"))
        with heavy.slot("this debrief"):
            return jsonify(build(results, session, min_coverage=config.settings.metrics.min_coverage,
                                 rider=request.args.get("rider") or None, tag=request.args.get("tag") or None,
                                 pair=(a, b)))

    @bp.get("/api/report.pdf")
    def report() -> Response:
        from gateway.debrief.report import build

        results, session = chosen()
        rider = request.args.get("rider") or None
        with heavy.slot("this report"):
            pdf = build(results, session, config.settings, rider=rider)
        return Response(pdf, mimetype="application/pdf",
                        headers=attachment(report_name(results, session, rider), "pdf"))

    return bp
