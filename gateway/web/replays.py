"""The replays' API: list them, start one (files, or a stored session played again: a review), and
pause, resume, stop or change its speed. Anything that changes state needs the admin PIN; the
manager runs on the daemon's event loop (``LoopBridge``)."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from flask import Blueprint, Response, jsonify

from gateway.errors import ApiError
from gateway.pipeline.session import parse_tags
from gateway.replay.manager import ReplayManager
from gateway.replay.player import check_factor
from gateway.web.bridge import LoopBridge
from gateway.web.parts import WebParts
from gateway.web.requests import json_body, require_pin


def create_replays(parts: WebParts) -> Blueprint:
    bp = Blueprint("replays", __name__)
    guards = parts.guards

    def manager() -> tuple[ReplayManager, LoopBridge]:
        if parts.replays is None or parts.bridge is None:
            raise ApiError(404, "replays are not played on this server (the hub shows what the boxes recorded)")
        return parts.replays, parts.bridge

    @bp.get("/api/replays")
    def list_replays() -> Response:
        if parts.replays is None or parts.bridge is None:
            return jsonify([])
        replays, bridge = manager()
        return jsonify([viewer_safe(s) for s in bridge.call(replays.statuses)])

    @bp.post("/api/replays")
    def start_replay() -> tuple[Response, int]:
        require_pin(guards.pins)
        with guards.heavy.slot("this replay"):
            return jsonify(viewer_safe(start(json_body()))), 201

    def start(body: dict[str, Any]) -> dict[str, Any]:
        replays, bridge = manager()
        speed = body.get("speed")
        if speed is not None:
            check_factor(speed)
        if body.get("session") is not None:  # a stored session played again (the coach's review)
            session = bridge.call(replays.review, str(body["session"]), factor=speed)
            return dict(bridge.call(replays.status, session))
        files = body.get("files") or ["@sample"]
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise ApiError(400, "files must be a list of file names")
        from_file = body.get("course_from_file")
        if from_file is not None and not isinstance(from_file, bool):
            raise ApiError(400, "course_from_file must be true or false")
        session = bridge.call(replays.start, files, factor=speed, loop=bool(body.get("loop", False)),
                              course_from_file=from_file, tags=parse_tags(body.get("tags")))
        return dict(bridge.call(replays.status, session))

    @bp.get("/api/replays/<session>")
    def replay_status(session: str) -> Response:
        replays, bridge = manager()
        return jsonify(viewer_safe(bridge.call(replays.status, session)))

    @bp.post("/api/replays/<session>/<action>")
    def control(session: str, action: str) -> Response:
        require_pin(guards.pins)
        factor = json_body().get("factor")
        if factor is not None:
            check_factor(factor)
        replays, bridge = manager()
        return jsonify(viewer_safe(bridge.call(replays.control, session, action, factor)))

    return bp


def viewer_safe(status: dict[str, Any]) -> dict[str, Any]:
    """A replay's status without the box's directories: file names only."""
    out = dict(status)
    out["files"] = [PurePath(f).name for f in status.get("files", [])]
    out["label"] = ", ".join(PurePath(p.strip()).name for p in str(status.get("label", "")).split(",") if p.strip())
    return out
