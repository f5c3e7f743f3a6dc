"""Riders' files into a stored session (#31): the upload the set-up page and `session add-files`
send, on the box and on the hub. Needs the admin PIN."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from flask import Blueprint, Response, jsonify, request

from gateway.errors import ApiError
from gateway.web.guard import TokenGuard
from gateway.web.requests import require_pin

MAX_FILES = 32


def _seconds(key: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ApiError(400, f"{key}: {value[:40]!r} is not a number of seconds") from None
    if not math.isfinite(seconds) or abs(seconds) > 86400:
        raise ApiError(400, f"{key}: an offset is within a day")
    return seconds


class AddsFiles(Protocol):
    """Riders' files into a stored session (the box: ``service.setup``; the hub: ``hub.files``)."""

    def add_files(self, session: str, files: list[tuple[Path, str]], *, who: str,
                  choices: Mapping[str, str], offsets: Mapping[str, float]) -> dict[str, Any]: ...


def create_files(files_to: AddsFiles | None, pins: TokenGuard, upload_mb: int) -> Blueprint:
    bp = Blueprint("files", __name__)

    @bp.post("/api/sessions/<session_id>/files")
    def add_files(session_id: str) -> Response:
        """Riders' recordings (multipart ``files``; ``rider:NAME`` and ``offset:NAME`` fields for what
        the coach chose) into a stored session."""
        if files_to is None:
            raise ApiError(404, "adding files is not available on this server")
        require_pin(pins)
        request.max_content_length = upload_mb * 2**20  # files are larger than any other body
        uploads = request.files.getlist("files")
        if not uploads:
            raise ApiError(400, "no files: send them as multipart form field 'files'")
        if len(uploads) > MAX_FILES:
            raise ApiError(400, f"at most {MAX_FILES} files at once")
        choices = {k[6:]: v for k, v in request.form.items() if k.startswith("rider:") and v}
        offsets = {k[7:]: _seconds(k, v) for k, v in request.form.items() if k.startswith("offset:") and v}
        with tempfile.TemporaryDirectory(prefix="trackside-files-") as folder:
            files = []
            for i, upload in enumerate(uploads):
                name = Path(upload.filename or f"file-{i + 1}").name[:120]
                path = Path(folder) / f"{i}{Path(name).suffix.lower()}"
                upload.save(path)
                files.append((path, name))
            return jsonify(files_to.add_files(session_id[:200], files, who=f"page ({request.remote_addr})",
                                         choices=choices, offsets=offsets))

    return bp
