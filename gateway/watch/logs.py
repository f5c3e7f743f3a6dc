"""Logging set-up: levels, to stderr by default (the journal captures stderr under systemd)."""

from __future__ import annotations

import logging
import os
import sys
from typing import ClassVar

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def setup(level: str = "info") -> None:
    """Route the gateway's logs to stderr at ``level``; idempotent."""
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, _Handler):
            root.removeHandler(old)
    handler = _Handler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        # Under systemd the journal stamps the time itself; a "<N>" prefix sets the priority.
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(_LEVELS.get(level, logging.INFO))
    # Third-party chatter stays at warnings unless we debug.
    for noisy in ("waitress", "werkzeug", "urllib3", "openant", "bleak"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level == "debug" else logging.WARNING)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, so that setting up again replaces it and leaves other handlers (pytest's) alone."""


class _JournalFormatter(logging.Formatter):
    """Prefix each line with its syslog priority, as sd-daemon(3) describes for stderr."""

    _PRIORITY: ClassVar[dict[int, int]] = {
        logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2,
    }

    def format(self, record: logging.LogRecord) -> str:
        return f"<{self._PRIORITY.get(record.levelno, 6)}>{super().format(record)}"
