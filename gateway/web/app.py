"""The Flask application: the page, its static files, the SSE stream, the JSON API and the health check."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request, send_from_directory

from gateway import __version__
from gateway.config import Config
from gateway.status import StatusBoard

STATIC = Path(__file__).resolve().parent / "static"


def create_app(config: Config, status: StatusBoard, *, spool: Any = None, replays: Any = None,
               bridge: Any = None, broadcaster: Any = None, stop: threading.Event | None = None,
               health: Any = None) -> Flask:
    from gateway.web.api import create_api, register_errors
    from gateway.web.stream import parse_last_id, stream_response

    if not (STATIC / "vendor" / "chart.umd.min.js").exists():
        import logging

        logging.getLogger(__name__).error(
            "the page's libraries are missing from %s: run tools/build-page (make demo does)", STATIC / "vendor")
    app = Flask("gateway.web", static_folder=None)
    app.register_blueprint(create_api(config, spool, replays, bridge))
    register_errors(app)
    stop = stop or threading.Event()

    @app.get("/")
    def index() -> Response:
        return send_from_directory(STATIC, "index.html", max_age=0)

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return send_from_directory(STATIC, "favicon.svg", mimetype="image/svg+xml", max_age=86400)

    @app.get("/static/<path:name>")
    def static_file(name: str) -> Response:
        return send_from_directory(STATIC, name, max_age=3600 if name.startswith("vendor/") else 0)

    @app.get("/stream")
    def stream() -> Any:
        if broadcaster is None:
            return jsonify({"error": "no live stream on this server"}), 503
        last_id = parse_last_id(request.headers.get("Last-Event-ID"), request.args.get("last_id"))
        return stream_response(broadcaster, last_id, stop)

    @app.get("/qr.svg")
    def qr() -> Response:
        """A QR code of this page's own address, for the next phone at the course."""
        import io

        import segno

        out = io.BytesIO()
        segno.make(request.host_url, error="m").save(out, kind="svg", scale=6, border=2)
        return Response(out.getvalue(), mimetype="image/svg+xml", headers={"Cache-Control": "no-cache"})

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        verdict = health() if health is not None else {"ok": True, "checks": {}}
        return jsonify({**verdict, "version": __version__}), 200 if verdict["ok"] else 503

    @app.get("/api/status")
    def api_status() -> Response:
        snap = status.snapshot()
        if broadcaster is not None:
            snap["components"]["web"] = {"sse_clients": broadcaster.clients, "resyncs": broadcaster.resyncs}
        return jsonify(snap)

    @app.get("/api/config")
    def api_config() -> Response:
        return jsonify(_public_config(config))

    return app


def _public_config(config: Config) -> dict[str, Any]:
    """What the page may know: never the admin token."""
    web = {k: v for k, v in config.section("web").items() if k != "admin_token"}
    web["control"] = bool(config.section("web")["admin_token"])
    riders = [{k: r[k] for k in ("id", "name", "squad")} for r in config.section("riders")]
    return {"gateway": {"id": config.gateway_id}, "course": config.section("course"), "riders": riders, "web": web}
