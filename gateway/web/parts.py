"""What the web application is made of, handed over by a root (the box's, a replay's, the hub's) in
one typed bundle: the web layer builds none of it itself."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.config import Config
from gateway.config.settings import WebSettings
from gateway.replay.manager import ReplayManager
from gateway.results.store import ResultsStore
from gateway.status import StatusBoard
from gateway.web.bridge import LoopBridge
from gateway.web.files import AddsFiles
from gateway.web.guard import HeavyWork, StreamBudget, TokenGuard
from gateway.web.setup import SetUp
from gateway.web.stream import Broadcaster


@dataclass(frozen=True)
class Guards:
    """What keeps a stranger on the Wi-Fi from costing the coach the page (``web.guard``)."""

    streams: StreamBudget
    pins: TokenGuard
    heavy: HeavyWork

    @classmethod
    def of(cls, web: WebSettings) -> Guards:
        return cls(StreamBudget(web.max_streams, web.streams_per_address), TokenGuard(web.admin_token),
                   HeavyWork(web.heavy_requests))


@dataclass
class WebParts:
    """Everything the page and its API read and control. ``None``: this server has no such part (the
    hub has no replays, no set-up and no loop; a replay run has no set-up)."""

    config: Config
    status: StatusBoard
    guards: Guards
    results: ResultsStore | None = None
    broadcaster: Broadcaster | None = None
    replays: ReplayManager | None = None
    bridge: LoopBridge | None = None  # runs replay control on the daemon's event loop
    setup: SetUp | None = None
    files: AddsFiles | None = None  # riders' files into stored sessions (the box's set-up, the hub)
    health: Callable[[], dict[str, Any]] | None = None
    metrics: Callable[[], bytes] | None = None
    stop: threading.Event = field(default_factory=threading.Event)  # set: the live streams end
    hub: bool = False
