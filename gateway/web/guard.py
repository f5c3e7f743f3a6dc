"""What keeps a stranger on the Wi-Fi from costing the coach the page: a budget of live streams
(each holds a server thread) apart from ordinary requests, per address and in all, a bound on the
heavy requests running at once, and a limit on failed admin-token attempts per address."""

from __future__ import annotations

import contextlib
import hmac
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator

log = logging.getLogger(__name__)

WEAK_TOKENS = {"change-me", "changeme", "admin", "password", "1234", "0000", "trackside-demo"}


class StreamBudget:
    """At most ``total`` streams at once, ``per_address`` of them from one address."""

    def __init__(self, total: int, per_address: int) -> None:
        self.total = total
        self.per_address = per_address
        self._lock = threading.Lock()
        self._by_address: dict[str, int] = {}
        self.refused = 0

    @property
    def open(self) -> int:
        with self._lock:
            return sum(self._by_address.values())

    def acquire(self, address: str) -> str | None:
        """None when the stream may open, else why not."""
        with self._lock:
            if self._by_address.get(address, 0) >= self.per_address:
                self.refused += 1
                return f"this address already has {self.per_address} live streams open"
            if sum(self._by_address.values()) >= self.total:
                self.refused += 1
                return f"the box serves {self.total} live streams at most; try again in a minute"
            self._by_address[address] = self._by_address.get(address, 0) + 1
            return None

    def release(self, address: str) -> None:
        with self._lock:
            left = self._by_address.get(address, 0) - 1
            if left > 0:
                self._by_address[address] = left
            else:
                self._by_address.pop(address, None)


class TokenGuard:
    """Checks the admin token; after ``max_failures`` wrong ones within ``window_s`` an address waits."""

    def __init__(self, token: str | None, *, max_failures: int = 10, window_s: float = 300.0) -> None:
        self.token = token.encode("utf-8") if token else None
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self.failed = 0

    @property
    def weak(self) -> bool:
        return self.token is not None and (len(self.token) < 8 or self.token.decode().lower() in WEAK_TOKENS)

    def blocked_for(self, address: str, now: float | None = None) -> float:
        """Seconds ``address`` must wait before trying again (0: it may try)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = self._recent(address, now)
            if len(recent) < self.max_failures:
                return 0.0
            return max(1.0, recent[0] + self.window_s - now)

    def check(self, address: str, given: str | None, where: str, now: float | None = None) -> bool:
        if self.token is None:
            return False
        # Bytes, not text: a token with characters outside ASCII must be refused, not crash the request.
        ok = given is not None and hmac.compare_digest(given.strip().encode("utf-8", "replace"), self.token)
        if not ok:
            now = time.monotonic() if now is None else now
            with self._lock:
                self._recent(address, now).append(now)
                self.failed += 1
            log.warning("web: wrong or missing admin token from %s for %s", address, where)
        return ok

    def _recent(self, address: str, now: float) -> deque[float]:
        recent = self._failures.setdefault(address, deque())
        while recent and recent[0] <= now - self.window_s:
            recent.popleft()
        if len(self._failures) > 10_000:  # a flood of addresses: forget the oldest
            self._failures.pop(next(iter(self._failures)))
        return recent


class HeavyWork:
    """At most ``slots`` heavy requests (debriefs, comparisons, reports, exports, reviews, replays) at
    once. One past the bound is answered at once with 503 and Retry-After: waiting would hold one of
    the page's threads per request, and a hundred of them kept /healthz and the page from answering."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._sem = threading.BoundedSemaphore(slots)
        self.refused = 0

    @contextlib.contextmanager
    def slot(self, what: str) -> Iterator[None]:
        from gateway.errors import ApiError

        if not self._sem.acquire(timeout=0.25):
            self.refused += 1
            raise ApiError(503, f"the box is busy with {self.slots} heavy requests (reports, exports, debriefs, "
                                f"replays); {what} was not started: try again in a few seconds",
                           headers={"Retry-After": "5"})
        try:
            yield
        finally:
            self._sem.release()
