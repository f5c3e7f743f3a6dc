"""The JSON API of sessions and results: z-scores against a chosen population, exports."""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import replace
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from gateway.engine.normalize import Population
from gateway.errors import ApiError, GatewayError, NotFound
from gateway.model import parse_day
from gateway.results.export import table, write
from gateway.results.marks import session_marks
from gateway.results.rows import annotate
from gateway.results.store import ResultsStore
from gateway.web.parts import WebParts
from gateway.web.requests import attachment


def _day(text: str | None, end: bool = False) -> float | None:
    """?from=YYYY-MM-DD / ?to=YYYY-MM-DD (UTC days; ``to`` includes its day)."""
    if not text:
        return None
    try:
        day = dt.datetime.combine(parse_day(text), dt.time(), dt.UTC)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    # The day after the last (``to`` includes its day); 9999-12-31 has none, and means "to the end".
    return day.timestamp() + (86_400.0 if end else 0.0)


LIVE_RECENT_S = 12 * 3600.0


def default_session(sessions: list[dict[str, Any]]) -> str | None:
    """The page's session when none is chosen: the coach's running live session if it has results
    (a looping demo replay does not take the page over), else the latest session with results."""
    known = [s for s in sessions if s["results"]]
    newest = max((s.get("last") or 0.0 for s in known), default=0.0)
    # A live session a crash left without an end is not "running" a day later.
    running = [s for s in known if s.get("kind") == "live" and not s.get("ended")
               and (s.get("last") or 0.0) >= newest - LIVE_RECENT_S]
    chosen = running or known
    return str(chosen[-1]["session"]) if chosen else None


def population_of(session: str, spec: str | None) -> Population:
    """?population=session (default) | all | squad:NAME | rider:ID | sessions:A,B"""
    if not spec or spec == "session":
        return Population(frozenset({session}))
    if spec == "all":
        return Population()
    kind, _, value = spec.partition(":")
    if kind == "squad" and value:
        return Population(squad=value)
    if kind == "rider" and value:
        return Population(rider_id=value, rider_of=session)
    if kind == "sessions" and value:
        return Population(frozenset(v for v in value.split(",") if v))
    raise ApiError(400, f"unknown population {spec!r}: use session, all, squad:NAME, rider:ID or sessions:A,B")


def _selected(store: ResultsStore | None) -> tuple[ResultsStore, str | None, list[Any], list[Any]]:
    """The session asked for (the latest by default), its results, and the population's."""
    if store is None:
        raise ApiError(503, "no results on this server")
    results_store = store
    since, until = _day(request.args.get("from")), _day(request.args.get("to"), end=True)  # checked first
    session = request.args.get("session")
    if not session:
        session = default_session(results_store.sessions())
    if session is None:
        return results_store, None, [], []
    population = population_of(session, request.args.get("population"))
    if population.sessions != frozenset({session}):
        # Across sessions only on the same course: z-scores compare the same terrain.
        population = replace(population, course=results_store.course_of(session), since=since, until=until)
    targets = results_store.results([session])
    pool = targets if population == Population(frozenset({session})) else results_store.population(population)
    return results_store, session, targets, pool


def create_api(parts: WebParts) -> Blueprint:
    """Sessions and results with their z-scores, and exports (the replays' API: ``web.replays``)."""
    api = Blueprint("api", __name__)
    config, store, heavy = parts.config, parts.results, parts.guards.heavy

    @api.get("/api/sessions")
    def list_sessions() -> Response:
        return jsonify(store.sessions() if store is not None else [])

    @api.get("/api/results")
    def results() -> Response:
        results_store, session, targets, pool = _selected(store)
        if session is None:
            return jsonify({"session": None, "last_seq": results_store.last_seq(), "results": []})
        return jsonify({"session": session, "population": request.args.get("population") or "session",
                        "last_seq": results_store.last_seq(),
                        "course": results_store.course(session) or config.settings.course.as_dict(),
                        "notes": results_store.notes(session),
                        "heard_by": results_store.heard_by(session),
                        "marks": {k: m.as_dict() for k, m in session_marks(results_store.record(session),
                                                                            targets).items()},
                        "results": annotate(targets, pool, config.settings.metrics.min_coverage)})

    @api.get("/api/heard-by")
    def heard_by() -> Response:
        """Which boxes each result of a session rests on (the page asks again for results newer than
        its last /api/results)."""
        session = request.args.get("session") or ""
        return jsonify(store.heard_by(session[:200]) if store is not None and session else {})

    @api.get("/api/export")
    def export_results() -> Response:
        """The selection (a session, scored against its population) as csv, json or xlsx."""
        fmt = request.args.get("format", "csv")
        if fmt not in ("csv", "json", "xlsx"):
            raise ApiError(400, "format must be csv, json or xlsx")
        with heavy.slot("this export"):
            results_store, session, targets, pool = _selected(store)
            if session is None:
                raise NotFound("no results to export yet")
            if not targets:
                raise NotFound(f"no results of session {session[:128]!r} to export")
            columns, rows = table(targets, pool, config.settings.metrics.min_coverage, results_store)
            buffer = io.BytesIO() if fmt == "xlsx" else io.StringIO(newline="")
            write(buffer, fmt, session, columns, rows)
            data = buffer.getvalue()
        mime = {"csv": "text/csv", "json": "application/json",
                "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}[fmt]
        return Response(data, mimetype=mime, headers=attachment(session, fmt))

    return api


def register_errors(app: Flask) -> None:
    @app.errorhandler(GatewayError)
    def gateway_error(exc: GatewayError) -> tuple[Response, int, dict[str, str]]:
        # Whose fault it is decides the status: a wrong request 400, an unknown name 404, a full
        # spool 503 (not the client's), a refused PIN 401 or 429.
        text = exc.message if isinstance(exc, ApiError) else str(exc)
        return jsonify({"error": text}), exc.http_status, getattr(exc, "headers", {})

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        words = {404: "no such page or API endpoint", 405: "method not allowed here",
                 413: "the request body is too large"}
        code = exc.code or 500
        return jsonify({"error": words.get(code, exc.description or exc.name)}), code

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        app.logger.exception("web: unexpected error")
        return jsonify({"error": f"internal error: {type(exc).__name__}"}), 500
