"""What every route of the API shares: the admin PIN, a JSON body, a download's header."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import orjson
from flask import request

from gateway.errors import ApiError
from gateway.web.guard import TokenGuard
from gateway.wire import WireError
from gateway.wire.decode import refuse_nul


def require_pin(guard: TokenGuard) -> None:
    """The admin PIN of the request, or an ApiError: 403 control off, 429 too many wrong ones, 401."""
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


def json_body() -> dict[str, Any]:
    """The request's JSON object (empty when no body); a form, bad JSON or not an object: 4xx."""
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
    if b"\\u0000" in request.data:  # JSON's NUL: stored here, it would make the hub refuse the session's record
        try:
            refuse_nul(data)
        except WireError as exc:
            raise ApiError(400, exc.reason) from None
    return data


def attachment(name: str, extension: str) -> dict[str, str]:
    """The download's header: the file named for people ("2026-12-04 Hill repeats - Tomáš Dvořák.pdf",
    RFC 6266's ``filename*``), with a plain ASCII fallback. Names come from requests and records:
    quotes, slashes and control characters never reach it (a quote let the client write its own
    Content-Disposition)."""
    readable = re.sub(r'[\x00-\x1f\x7f"\\/:*?<>|;]+', "_", name).strip()[:120] or "download"
    ascii_only = re.sub(r"[^A-Za-z0-9_. -]+", "_", readable).strip() or "download"
    return {"Content-Disposition": f'attachment; filename="{ascii_only}.{extension}"; '
                                   f"filename*=UTF-8''{quote(f'{readable}.{extension}', safe='')}"}
