"""OpenSSL kept out of the box's daemon until something asks for it.

Nothing the daemon runs needs Python's OpenSSL: the page is plain HTTP on the box's own Wi-Fi,
Kafka's TLS is librdkafka's (compiled into confluent-kafka's library), and the one digest the box
takes (a head-unit file's sha256) is in Python's own ``_sha256``. Yet asyncio and werkzeug import
``ssl`` as they load, and ``secrets`` and ``hmac`` import ``_hashlib``: OpenSSL's libraries and
``ssl``'s tables, 4.2 MB of the daemon's resident memory on a box with 512 MB and a 60 MB budget
(``tools/bench daemon``, 180 s: 61.4 MB steady with them, 57.2 without). All of them take a
missing module in their stride (they import it in a ``try``: ``hashlib`` then uses Python's own
digests, ``hmac.compare_digest`` the same constant-time comparison from ``_operator``). What needs
OpenSSL calls ``let_in`` first: the scrape's prometheus_client, which imports ``ssl`` and urllib's
HTTPS handler outright.
"""

from __future__ import annotations

import sys

KEPT_OUT = ("ssl", "_hashlib")
# Modules that look for ssl once, as they load, and leave out their TLS parts without it.
_BOUND_WITHOUT = ("http.client", "urllib.request")


def keep_out() -> None:
    """Make ``import ssl`` and ``import _hashlib`` fail (Python's own way: a None in
    ``sys.modules``); one already loaded stays."""
    for name in KEPT_OUT:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def let_in() -> None:
    """Let ``import ssl`` load the real module. The modules that were imported without it are
    imported afresh by whoever asks next (what already holds them keeps its copy, which works as
    before: it never used TLS)."""
    kept = [name for name in KEPT_OUT if name in sys.modules and sys.modules[name] is None]
    for name in kept:
        del sys.modules[name]
    for name in _BOUND_WITHOUT if kept else ():
        sys.modules.pop(name, None)
