"""The Flask application: the page, its static files, the SSE stream, the JSON API and the health check."""

from __future__ import annotations

import threading
from pathlib import Path, PurePath
from typing import Any

import orjson
from flask import Flask, Response, jsonify, request, send_from_directory
from flask.json.provider import JSONProvider

from gateway import __version__
from gateway.config import Config
from gateway.results.store import ResultsStore
from gateway.status import StatusBoard
from gateway.web.guard import HeavyWork, StreamBudget, TokenGuard

STATIC = Path(__file__).resolve().parent / "static"

# Alpine.js evaluates its attributes with Function(): 'unsafe-eval' for scripts; Chart.js sizes its
# canvas with inline styles. Everything else comes from the box itself, and nothing may frame it.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")


class StrictJSON(JSONProvider):
    """Every JSON the box emits is strict: NaN and infinities become null (a phone's JSON.parse
    refuses bare NaN, and the whole status strip would die with it)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)


def create_app(config: Config, status: StatusBoard, *, results: ResultsStore | None = None, replays: Any = None,
               bridge: Any = None, broadcaster: Any = None, stop: threading.Event | None = None,
               health: Any = None, budget: StreamBudget | None = None, guard: TokenGuard | None = None,
               hub: bool = False, morning: Any = None, metrics: Any = None) -> Flask:
    from gateway.web.api import create_api, register_errors
    from gateway.web.stream import parse_last_id, stream_response

    web = config.settings.web
    budget = budget or StreamBudget(web.max_streams, web.streams_per_address)
    guard = guard or TokenGuard(web.admin_token)
    heavy = HeavyWork(web.heavy_requests)

    if not (STATIC / "vendor" / "chart.umd.min.js").exists():
        import logging

        logging.getLogger(__name__).error(
            "the page's libraries are missing from %s: run tools/build-page (make demo does)", STATIC / "vendor")
    app = Flask("gateway.web", static_folder=None)
    app.json = StrictJSON(app)
    app.config["MAX_CONTENT_LENGTH"] = web.max_body_kb * 1024
    app.register_blueprint(create_api(config, results, replays, bridge, guard, heavy))
    from gateway.web.morning import create_morning

    app.register_blueprint(create_morning(morning, guard))
    from gateway.web.debrief import create_debrief

    app.register_blueprint(create_debrief(config, results, heavy))
    register_errors(app)
    stop = stop or threading.Event()

    packed = Compressor()

    @app.before_request
    def no_nul() -> tuple[Response, int] | None:
        # A NUL is no part of any name or id here, and PostgreSQL refuses it in text (a 500 at the hub).
        if "\x00" in request.path or any("\x00" in k or "\x00" in v for k, v in request.args.items(multi=True)):
            return jsonify({"error": "a NUL character in the request"}), 400
        return None

    @app.after_request
    def compress(response: Response) -> Response:
        return packed(response)

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    @app.get("/")
    def index() -> Response:
        return send_from_directory(STATIC, "index.html", max_age=0)

    @app.get("/setup")
    def setup() -> Response:
        return send_from_directory(STATIC, "setup.html", max_age=0)

    @app.get("/debrief")
    def debrief_page() -> Response:
        return send_from_directory(STATIC, "debrief.html", max_age=0)

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
        address = request.remote_addr or "?"
        refused = budget.acquire(address)
        if refused is not None:
            return jsonify({"error": refused}), 429, {"Retry-After": "30"}
        return stream_response(broadcaster, last_id, stop, on_close=lambda: budget.release(address),
                               heartbeat_s=config.settings.web.heartbeat_s)

    @app.get("/qr.svg")
    def qr() -> Response:
        """A QR code of this page's own address, for the next phone at the course."""
        import io

        import segno

        out = io.BytesIO()
        segno.make(request.host_url, error="m").save(out, kind="svg", scale=6, border=2)
        return Response(out.getvalue(), mimetype="image/svg+xml", headers={"Cache-Control": "no-cache"})

    @app.get("/metrics")
    def prometheus() -> tuple[Response, int]:
        """For Prometheus: no token, like the page (it tells nothing a viewer cannot see)."""
        if metrics is None:
            return jsonify({"error": "no metrics on this server"}), 404
        # content_type is sent as it is (a mimetype would get a second "charset=utf-8" from Flask).
        return Response(metrics(), content_type="text/plain; version=0.0.4; charset=utf-8"), 200

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        verdict = health() if health is not None else {"ok": True, "checks": {}}
        return jsonify({**verdict, "version": __version__}), 200 if verdict["ok"] else 503

    @app.get("/api/status")
    def api_status() -> Response:
        snap = status.snapshot()
        parts = snap["components"]
        if broadcaster is not None:
            parts["web"] = {"sse_clients": broadcaster.clients, "resyncs": broadcaster.resyncs,
                            "streams_refused": budget.refused, "failed_pins": guard.failed,
                            "heavy_refused": heavy.refused}
        if "spool" in parts and parts["spool"].get("path"):
            parts["spool"]["path"] = PurePath(parts["spool"]["path"]).name  # viewers see no directories
        for replay in parts.get("replays", {}).get("replays", []):
            replay.pop("files", None)
        return jsonify(snap)

    @app.get("/api/config")
    def api_config() -> Response:
        public = _public_config(config)
        if hub:  # the hub serves every box's sessions and controls no replay
            public["gateway"] = {"id": "hub"}
            public["web"]["control"] = False
            public["mode"] = "hub"
        return jsonify(public)

    return app


COMPRESSED = frozenset({"application/json", "text/javascript", "application/javascript", "text/css", "text/html",
                        "image/svg+xml", "text/csv", "text/plain"})


class Compressor:
    """gzip for a phone that asks (Accept-Encoding), on text worth it: /api/results was 478 KB for 660
    results, and a first load about 300 KB of JavaScript over the box's Wi-Fi. The live stream is
    never compressed (it must flush each event). Static files are compressed once per version (ETag)."""

    MIN_BYTES = 1024

    def __init__(self) -> None:
        self._static: dict[tuple[str, str], bytes] = {}
        self._lock = threading.Lock()

    def __call__(self, response: Response) -> Response:
        import gzip

        if (response.status_code != 200 or response.mimetype not in COMPRESSED or "Content-Encoding" in response.headers
                or "gzip" not in request.headers.get("Accept-Encoding", "").lower()):
            return response
        response.vary.add("Accept-Encoding")
        etag = response.headers.get("ETag")
        key = (request.path, etag or "")
        packed = self._static.get(key) if etag else None
        if packed is None:
            response.direct_passthrough = False  # a file's body is read here, once per version
            data = response.get_data()
            if len(data) < self.MIN_BYTES:
                return response
            packed = gzip.compress(data, compresslevel=6 if etag else 4, mtime=0)
            if etag:
                with self._lock:
                    if len(self._static) > 64:
                        self._static.clear()
                    self._static[key] = packed
        if response.direct_passthrough:  # a file not read here (its packed body was cached): closed now
            response.close()
            response.direct_passthrough = False
        response.set_data(packed)
        response.headers["Content-Encoding"] = "gzip"
        return response


def _public_config(config: Config) -> dict[str, Any]:
    """What the page may know: never the admin token."""
    s = config.settings
    web = {"host": s.web.host, "port": s.web.port, "chart": s.web.chart, "view_sets": s.web.view_sets,
           "control": bool(s.web.admin_token), "heartbeat_s": s.web.heartbeat_s}
    riders = [{"id": r.id, "name": r.name, "squad": r.squad} for r in s.riders]
    return {"gateway": {"id": config.gateway_id}, "course": s.course.as_dict(), "riders": riders, "web": web}
