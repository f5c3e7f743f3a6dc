"""What the benchmarks that drive a browser share."""

from __future__ import annotations

import time
from typing import Any

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def wait_until(page: Any, expression: str, timeout: float = 60.0) -> None:
    """Poll ``expression`` in the page until it is true, through page.evaluate: Playwright's
    wait_for_function compiles a string with Function(), which the page's Content-Security-Policy
    (no 'unsafe-eval') refuses whenever the answer is not true at the first look."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting in the page for {expression}")
        time.sleep(0.05)
