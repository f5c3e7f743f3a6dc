"""The Flask application: the page, the JSON API and the health check."""

from __future__ import annotations

from importlib import resources
from typing import Any

from flask import Flask, Response, jsonify

from gateway import __version__
from gateway.config import Config
from gateway.status import StatusBoard


def create_app(config: Config, status: StatusBoard) -> Flask:
    app = Flask("gateway.web")
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

    @app.errorhandler(404)
    def not_found(_: Exception) -> tuple[Response, int]:
        return jsonify({"error": "no such page or API endpoint"}), 404

    @app.errorhandler(405)
    def bad_method(_: Exception) -> tuple[Response, int]:
        return jsonify({"error": "method not allowed here"}), 405

    return app


def _public_config(config: Config) -> dict[str, Any]:
    """What the page may know: never the admin token."""
    web = {k: v for k, v in config.section("web").items() if k != "admin_token"}
    riders = [{k: r[k] for k in ("id", "name", "squad")} for r in config.section("riders")]
    return {"gateway": {"id": config.gateway_id}, "course": config.section("course"), "riders": riders, "web": web}
