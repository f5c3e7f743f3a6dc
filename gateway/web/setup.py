"""The set-up API of the coach's morning: sessions, riders and their dated values, pairing meters and
chips with riders, notes on results. Viewing needs nothing; every change needs the admin PIN."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from flask import Blueprint, Response, jsonify

from gateway.errors import ApiError
from gateway.web.guard import TokenGuard
from gateway.web.requests import json_body, require_pin


class SetUp(Protocol):
    """What the set-up page asks of the box (``service.setup.SetUpService``)."""

    def current(self) -> dict[str, Any]: ...
    def start(self, body: Mapping[str, Any]) -> dict[str, Any]: ...
    def end(self) -> dict[str, Any]: ...
    def riders(self) -> list[dict[str, Any]]: ...
    def add_rider(self, body: Mapping[str, Any]) -> list[dict[str, Any]]: ...
    def set_profile(self, rider_id: str, body: Mapping[str, Any]) -> dict[str, Any]: ...
    def radios(self) -> dict[str, Any]: ...
    def pair(self, body: Mapping[str, Any]) -> dict[str, Any]: ...
    def note(self, body: Mapping[str, Any]) -> list[dict[str, Any]]: ...


def create_setup(setup: SetUp | None, pins: TokenGuard) -> Blueprint:
    bp = Blueprint("setup", __name__)

    def needed(change: bool = False) -> SetUp:
        if setup is None:
            raise ApiError(404, "no live sessions on this server (the hub shows what the boxes recorded)")
        if change:
            require_pin(pins)
        return setup

    @bp.get("/api/session")
    def current_session() -> Response:
        return jsonify(needed().current())

    @bp.post("/api/session/start")
    def start_session() -> tuple[Response, int]:
        return jsonify(needed(True).start(json_body())), 201

    @bp.post("/api/session/end")
    def end_session() -> Response:
        return jsonify(needed(True).end())

    @bp.get("/api/riders")
    def riders() -> Response:
        return jsonify(needed().riders())

    @bp.post("/api/riders")
    def add_rider() -> tuple[Response, int]:
        return jsonify(needed(True).add_rider(json_body())), 201

    @bp.post("/api/riders/<rider_id>/profile")
    def set_profile(rider_id: str) -> tuple[Response, int]:
        return jsonify(needed(True).set_profile(rider_id, json_body())), 201

    @bp.get("/api/radios")
    def radios() -> Response:
        return jsonify(needed().radios())

    @bp.post("/api/pair")
    def pair() -> Response:
        return jsonify(needed(True).pair(json_body()))

    @bp.post("/api/notes")
    def note() -> Response:
        return jsonify(needed(True).note(json_body()))

    return bp
