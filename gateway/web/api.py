"""The JSON API: sessions and results with z-scores, and replay control (admin only)."""

from __future__ import annotations

import datetime as dt
import io
import re
from dataclasses import replace
from pathlib import PurePath
from typing import Any

import orjson
from flask import Blueprint, Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from gateway.config import Config
from gateway.engine.normalize import Population
from gateway.errors import ApiError, GatewayError, NotFound
from gateway.model import parse_day
from gateway.replay.player import check_factor
from gateway.results.export import table, write
from gateway.results.rows import annotate
from gateway.results.store import ResultsStore
from gateway.web.guard import HeavyWork, TokenGuard


def _token_ok(guard: TokenGuard) -> None:
    if guard.token is None:
        raise ApiError(403, "control is switched off on this box: set web.admin_token in the config")
    address = request.remote_addr or "?"
    wait = guard.blocked_for(address)
    if wait:
        raise ApiError(429, f"too many wrong PINs from this address: try again in {int(wait) + 1} s",
                       headers={"Retry-After": str(int(wait) + 1)})
    given = request.headers.get("X-Admin-Token") or request.headers.get("Authorization", "").removeprefix("Bearer ")
    if not guard.check(address, given or None, f"{request.method} {request.path}"):
        if not given:
            raise ApiError(401, "this needs the admin PIN (header X-Admin-Token)")
        raise ApiError(401, "wrong admin PIN")


def _body() -> dict[str, Any]:
    if request.form or request.files:  # a form's fields were silently ignored
        raise ApiError(415, "send the body as JSON (Content-Type: application/json), not as a form")
    if not request.data:
        return {}
    try:
        # orjson: NaN, Infinity and numbers too large for a double are refused, not read as inf.
        data = orjson.loads(request.data)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return data


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


def attachment(name: str, extension: str) -> dict[str, str]:
    """The download's header. The name comes from the request: only safe characters reach it (a quote
    let the client write its own Content-Disposition)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:120]
    return {"Content-Disposition": f'attachment; filename="{safe}.{extension}"'}


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
        return Population(rider_id=value)
    if kind == "sessions" and value:
        return Population(frozenset(v for v in value.split(",") if v))
    raise ApiError(400, f"unknown population {spec!r}: use session, all, squad:NAME, rider:ID or sessions:A,B")


def _viewer_safe(status: dict[str, Any]) -> dict[str, Any]:
    """A replay's status without the box's directories: file names only."""
    out = dict(status)
    out["files"] = [PurePath(f).name for f in status.get("files", [])]
    out["label"] = ", ".join(PurePath(p.strip()).name for p in str(status.get("label", "")).split(",") if p.strip())
    return out


def create_api(config: Config, store: ResultsStore | None, replays: Any, bridge: Any, guard: TokenGuard,
               heavy: HeavyWork) -> Blueprint:
    api = Blueprint("api", __name__)

    def opened() -> ResultsStore:
        if store is None:
            raise ApiError(503, "no results on this server")
        return store

    @api.get("/api/sessions")
    def list_sessions() -> Response:
        return jsonify(store.sessions() if store is not None else [])

    def selected() -> tuple[ResultsStore, str | None, list[Any], list[Any]]:
        """The session asked for (the latest by default), its results, and the population's."""
        results_store = opened()
        since, until = _day(request.args.get("from")), _day(request.args.get("to"), end=True)  # checked first
        session = request.args.get("session")
        if not session:  # the latest session with results
            known = [s for s in results_store.sessions() if s["results"]]
            session = known[-1]["session"] if known else None
        if session is None:
            return results_store, None, [], []
        population = population_of(session, request.args.get("population"))
        if population.sessions != frozenset({session}):
            # Across sessions only on the same course: z-scores compare the same terrain.
            population = replace(population, course=results_store.course_of(session), since=since, until=until)
        targets = results_store.results([session])
        pool = targets if population == Population(frozenset({session})) else results_store.population(population)
        return results_store, session, targets, pool

    @api.get("/api/results")
    def results() -> Response:
        results_store, session, targets, pool = selected()
        if session is None:
            return jsonify({"session": None, "last_seq": results_store.last_seq(), "results": []})
        return jsonify({"session": session, "population": request.args.get("population") or "session",
                        "last_seq": results_store.last_seq(),
                        "course": results_store.course(session) or config.settings.course.as_dict(),
                        "notes": results_store.notes(session),
                        "results": annotate(targets, pool)})

    @api.get("/api/export")
    def export_results() -> Response:
        """The selection (a session, scored against its population) as csv, json or xlsx."""
        fmt = request.args.get("format", "csv")
        if fmt not in ("csv", "json", "xlsx"):
            raise ApiError(400, "format must be csv, json or xlsx")
        with heavy.slot("this export"):
            results_store, session, targets, pool = selected()
            if session is None:
                raise NotFound("no results to export yet")
            if not targets:
                raise NotFound(f"no results of session {session[:128]!r} to export")
            columns, rows = table(targets, pool, results_store)
            buffer = io.BytesIO() if fmt == "xlsx" else io.StringIO(newline="")
            write(buffer, fmt, session, columns, rows)
            data = buffer.getvalue()
        mime = {"csv": "text/csv", "json": "application/json",
                "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}[fmt]
        return Response(data, mimetype=mime, headers=attachment(session, fmt))

    @api.get("/api/replays")
    def list_replays() -> Response:
        return jsonify([_viewer_safe(s) for s in bridge.call(replays.statuses)] if replays is not None else [])

    @api.post("/api/replays")
    def start_replay() -> tuple[Response, int]:
        _token_ok(guard)
        with heavy.slot("this replay"):
            return start_replay_of(_body())

    def manager() -> Any:
        if replays is None:
            raise ApiError(404, "replays are not played on this server (the hub shows what the boxes recorded)")
        return replays

    def start_replay_of(body: dict[str, Any]) -> tuple[Response, int]:
        manager()
        if body.get("session") is not None:  # a stored session played again (the coach's review)
            speed = body.get("speed")
            if speed is not None:
                check_factor(speed)
            session = bridge.call(replays.review, str(body["session"]), factor=speed)
            return jsonify(_viewer_safe(bridge.call(replays.status, session))), 201
        files = body.get("files") or ["@sample"]
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise ApiError(400, "files must be a list of file names")
        speed = body.get("speed")
        if speed is not None:
            check_factor(speed)
        from_file = body.get("course_from_file")
        if from_file is not None and not isinstance(from_file, bool):
            raise ApiError(400, "course_from_file must be true or false")
        from gateway.pipeline.session import parse_tags

        session = bridge.call(replays.start, files, factor=speed, loop=bool(body.get("loop", False)),
                              course_from_file=from_file, tags=parse_tags(body.get("tags")))
        return jsonify(_viewer_safe(bridge.call(replays.status, session))), 201

    @api.get("/api/replays/<session>")
    def replay_status(session: str) -> Response:
        return jsonify(_viewer_safe(bridge.call(manager().status, session)))

    @api.post("/api/replays/<session>/<action>")
    def control(session: str, action: str) -> Response:
        _token_ok(guard)
        factor = _body().get("factor")
        if factor is not None:
            check_factor(factor)
        return jsonify(_viewer_safe(bridge.call(manager().control, session, action, factor)))

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
