"""The page's own routes: its files, the live stream, what the box says of itself (/api/status,
/api/config, /healthz, /metrics)."""

from __future__ import annotations

import io
from pathlib import Path, PurePath
from typing import Any

from flask import Blueprint, Response, jsonify, request, send_from_directory

from gateway import __version__
from gateway.config import Config
from gateway.web.parts import WebParts
from gateway.web.stream import parse_last_id, stream_response

STATIC = Path(__file__).resolve().parent / "static"


def create_pages() -> Blueprint:
    bp = Blueprint("pages", __name__)

    @bp.get("/")
    def index() -> Response:
        return send_from_directory(STATIC, "index.html", max_age=0)

    @bp.get("/setup")
    def setup() -> Response:
        return send_from_directory(STATIC, "setup.html", max_age=0)

    @bp.get("/debrief")
    def debrief_page() -> Response:
        return send_from_directory(STATIC, "debrief.html", max_age=0)

    @bp.get("/favicon.ico")
    def favicon() -> Response:
        return send_from_directory(STATIC, "favicon.svg", mimetype="image/svg+xml", max_age=86400)

    @bp.get("/static/<path:name>")
    def static_file(name: str) -> Response:
        return send_from_directory(STATIC, name, max_age=3600 if name.startswith("vendor/") else 0)

    @bp.get("/qr.svg")
    def qr() -> Response:
        """A QR code of this page's own address, for the next phone at the course."""
        import segno

        out = io.BytesIO()
        segno.make(request.host_url, error="m").save(out, kind="svg", scale=6, border=2)
        return Response(out.getvalue(), mimetype="image/svg+xml", headers={"Cache-Control": "no-cache"})

    return bp


def create_live(parts: WebParts) -> Blueprint:
    bp = Blueprint("live", __name__)
    guards = parts.guards

    @bp.get("/stream")
    def stream() -> Any:
        if parts.broadcaster is None:
            return jsonify({"error": "no live stream on this server"}), 503
        last_id = parse_last_id(request.headers.get("Last-Event-ID"), request.args.get("last_id"))
        address = request.remote_addr or "?"
        refused = guards.streams.acquire(address)
        if refused is not None:
            return jsonify({"error": refused}), 429, {"Retry-After": "30"}
        return stream_response(parts.broadcaster, last_id, parts.stop,
                               on_close=lambda: guards.streams.release(address),
                               heartbeat_s=parts.config.settings.web.heartbeat_s)

    @bp.get("/metrics")
    def prometheus() -> tuple[Response, int]:
        """For Prometheus: no token, like the page (it tells nothing a viewer cannot see)."""
        if parts.metrics is None:
            return jsonify({"error": "no metrics on this server"}), 404
        # content_type is sent as it is (a mimetype would get a second "charset=utf-8" from Flask).
        return Response(parts.metrics(), content_type="text/plain; version=0.0.4; charset=utf-8"), 200

    @bp.get("/healthz")
    def healthz() -> tuple[Response, int]:
        verdict = parts.health() if parts.health is not None else {"ok": True, "checks": {}}
        return jsonify({**verdict, "version": __version__}), 200 if verdict["ok"] else 503

    @bp.get("/api/status")
    def api_status() -> Response:
        return jsonify(_viewers_status(parts))

    @bp.get("/api/config")
    def api_config() -> Response:
        public = public_config(parts.config)
        if parts.hub:  # the hub serves every box's sessions and controls no replay
            public["gateway"] = {"id": "hub"}
            public["web"]["control"] = False
            public["web"]["files"] = bool(parts.config.settings.web.admin_token)  # riders' files: the set-up page
            public["mode"] = "hub"
        return jsonify(public)

    return bp


def _viewers_status(parts: WebParts) -> dict[str, Any]:
    """The status board as a viewer may see it: no directories, no file paths."""
    snap = parts.status.snapshot()
    components = snap["components"]
    if parts.broadcaster is not None:
        g = parts.guards
        components["web"] = {"sse_clients": parts.broadcaster.clients, "resyncs": parts.broadcaster.resyncs,
                             "streams_refused": g.streams.refused, "failed_pins": g.pins.failed,
                             "heavy_refused": g.heavy.refused}
    if "spool" in components and components["spool"].get("path"):
        components["spool"]["path"] = PurePath(components["spool"]["path"]).name
    for replay in components.get("replays", {}).get("replays", []):
        replay.pop("files", None)
    return snap


def public_config(config: Config) -> dict[str, Any]:
    """What the page may know: never the admin token."""
    s = config.settings
    web = {"host": s.web.host, "port": s.web.port, "chart": s.web.chart, "view_sets": s.web.view_sets,
           "control": bool(s.web.admin_token), "heartbeat_s": s.web.heartbeat_s, "hub_url": s.web.hub_url}
    riders = [{"id": r.id, "name": r.name, "squad": r.squad} for r in s.riders]
    return {"gateway": {"id": config.gateway_id}, "course": s.course.as_dict(), "riders": riders, "web": web,
            "metrics": {"min_coverage": s.metrics.min_coverage, "np_window": s.metrics.np_window}}
