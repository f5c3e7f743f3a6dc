"""The Flask application: the page, the JSON API and the health check."""

from __future__ import annotations

from importlib import resources
from typing import Any

from flask import Flask, Response, jsonify

from gateway import __version__
from gateway.config import Config
from gateway.status import StatusBoard


def create_app(config: Config, status: StatusBoard, *, spool: Any = None, replays: Any = None,
               bridge: Any = None) -> Flask:
    from gateway.web.api import create_api, register_errors

    app = Flask("gateway.web")
    app.register_blueprint(create_api(config, spool, replays, bridge))
    register_errors(app)
    page = resources.files("gateway").joinpath("resources/index.html").read_text(encoding="utf-8")

    @app.get("/")
    def index() -> Response:
        return Response(page, mimetype="text/html")

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        return jsonify({"ok": True, "version": __version__}), 200

    @app.get("/api/status")
    def api_status() -> Response:
        return jsonify(status.snapshot())

    @app.get("/api/config")
    def api_config() -> Response:
        return jsonify(_public_config(config))

    return app


def _public_config(config: Config) -> dict[str, Any]:
    """What the page may know: never the admin token."""
    web = {k: v for k, v in config.section("web").items() if k != "admin_token"}
    riders = [{k: r[k] for k in ("id", "name", "squad")} for r in config.section("riders")]
    return {"gateway": {"id": config.gateway_id}, "course": config.section("course"), "riders": riders, "web": web}
