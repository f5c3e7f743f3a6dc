"""The set-up API of the coach's morning: sessions, riders and their dated values, pairing meters and
chips with riders, notes on results. Viewing needs nothing; every change needs the admin PIN."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from gateway.errors import ApiError
from gateway.web.api import _body, _token_ok
from gateway.web.guard import TokenGuard


def create_morning(morning: Any, guard: TokenGuard) -> Blueprint:
    bp = Blueprint("morning", __name__)

    def needed() -> Any:
        if morning is None:
            raise ApiError(404, "no live sessions on this server (the hub shows what the boxes recorded)")
        return morning

    @bp.get("/api/session")
    def current_session() -> Response:
        return jsonify(needed().current())

    @bp.post("/api/session/start")
    def start_session() -> tuple[Response, int]:
        m = needed()
        _token_ok(guard)
        return jsonify(m.start(_body())), 201

    @bp.post("/api/session/end")
    def end_session() -> Response:
        m = needed()
        _token_ok(guard)
        return jsonify(m.end())

    @bp.get("/api/riders")
    def riders() -> Response:
        return jsonify(needed().riders())

    @bp.post("/api/riders")
    def add_rider() -> tuple[Response, int]:
        m = needed()
        _token_ok(guard)
        return jsonify(m.add_rider(_body())), 201

    @bp.post("/api/riders/<rider_id>/profile")
    def set_profile(rider_id: str) -> tuple[Response, int]:
        m = needed()
        _token_ok(guard)
        return jsonify(m.set_profile(rider_id, _body())), 201

    @bp.get("/api/radios")
    def radios() -> Response:
        return jsonify(needed().radios())

    @bp.post("/api/pair")
    def pair() -> Response:
        m = needed()
        _token_ok(guard)
        return jsonify(m.pair(_body()))

    @bp.post("/api/notes")
    def note() -> Response:
        m = needed()
        _token_ok(guard)
        return jsonify(m.note(_body()))

    return bp
