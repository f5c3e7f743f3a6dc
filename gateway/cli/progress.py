"""Replay progress for the command line: a live bar on a terminal, plain lines when piped."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from gateway.replay.manager import ReplayManager


def _clock(seconds: float) -> str:
    s = max(0, round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def describe(status: dict[str, Any], width: int = 24) -> tuple[str, str]:
    """(bar line for a terminal, plain line) for one replay's status."""
    duration = status["duration_s"] or 1.0
    share = min(1.0, status["elapsed_s"] / duration) if status["events"] else 1.0
    filled = int(share * width)
    bar = "#" * filled + "-" * (width - filled)
    speed = "max" if status["factor"] == 0 else f"x{1 / status['factor']:g}"
    times = f"{_clock(status['elapsed_s'])}/{_clock(duration)}"
    tty = f"{status['session']} [{bar}] {share:4.0%} {times} {speed} {status['state']}, {status['results']} results"
    plain = (f"replay {status['session']}: {status['state']}, {share:.0%} ({times}), speed {speed}, "
             f"{status['position']}/{status['events']} events, {status['results']} segment results")
    if status.get("rejected"):
        refused = f", {status['rejected']} events REFUSED by the spool"
        tty, plain = tty + refused, plain + refused
    return tty, plain


class Progress:
    def __init__(self, out: TextIO | None = None, every_s: float = 5.0) -> None:
        self.out = out or sys.stdout
        self.tty = self.out.isatty()
        self.every_s = every_s
        self._last_plain = 0.0
        self._final: set[str] = set()

    def __call__(self, replays: ReplayManager) -> None:
        now = time.monotonic()
        for status in replays.statuses():
            tty, plain = describe(status)
            done = status["state"] in ("finished", "stopped")
            if self.tty:
                self.out.write("\r" + tty + ("\n" if done and status["session"] not in self._final else ""))
            elif (done and status["session"] not in self._final) or (
                    not done and now - self._last_plain >= self.every_s):
                self.out.write(plain + "\n")
            if done:
                self._final.add(status["session"])
        if now - self._last_plain >= self.every_s:
            self._last_plain = now
        self.out.flush()
