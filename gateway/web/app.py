"""The Flask application, put together from its parts (``web.parts``): the page and its files
(``web.site``), the JSON API (``web.api``, ``web.setup``, ``web.debrief``), and what every answer
gets: strict JSON, no NUL, gzip when asked, the security headers."""

from __future__ import annotations

import threading
from typing import Any

import orjson
from flask import Flask, Response, jsonify, request
from flask.json.provider import JSONProvider

from gateway.web.parts import WebParts
from gateway.web.site import STATIC, create_live, create_pages

# No 'unsafe-eval': the page runs Alpine's CSP build, which reads its attributes without Function().
# Chart.js sizes its canvas with inline styles. Everything else comes from the box itself, and
# nothing may frame it.
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


def create_app(parts: WebParts) -> Flask:
    """The page and its API over ``parts`` (every part built by the root that serves it)."""
    from gateway.web.analysis import create_analysis
    from gateway.web.api import create_api, register_errors
    from gateway.web.debrief import create_debrief
    from gateway.web.files import create_files
    from gateway.web.replays import create_replays
    from gateway.web.setup import create_setup

    if not (STATIC / "vendor" / "chart.umd.min.js").exists():
        import logging

        logging.getLogger(__name__).error(
            "the page's libraries are missing from %s: run tools/build-page (make demo does)", STATIC / "vendor")
    app = Flask("gateway.web", static_folder=None)
    app.json = StrictJSON(app)
    app.config["MAX_CONTENT_LENGTH"] = parts.config.settings.web.max_body_kb * 1024
    for blueprint in (create_pages(), create_live(parts), create_api(parts), create_replays(parts),
                      create_setup(parts.setup, parts.guards.pins),
                      create_files(parts.files, parts.guards.pins, parts.config.settings.web.max_upload_mb),
                      create_debrief(parts.config, parts.results, parts.guards.heavy),
                      create_analysis(parts.results, parts.guards.heavy)):
        app.register_blueprint(blueprint)
    register_errors(app)
    app.before_request(_no_nul)
    app.after_request(Compressor())
    app.after_request(_security_headers)
    return app


def _no_nul() -> tuple[Response, int] | None:
    # A NUL is no part of any name or id here, and PostgreSQL refuses it in text (a 500 at the hub).
    if "\x00" in request.path or any("\x00" in k or "\x00" in v for k, v in request.args.items(multi=True)):
        return jsonify({"error": "a NUL character in the request"}), 400
    return None


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


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
