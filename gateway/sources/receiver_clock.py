"""A timing receiver's clock against the box's: crossings placed on the box's timeline.

Power samples carry the box's receive time, crossings the receiver's own clock. A box without NTP
(a Raspberry Pi has no real-time clock) or a receiver set by hand can be hours or days apart, and
then no crossing ever lines up with a power sample. The offset is estimated robustly (the median
of ``receive time - receiver time`` over recent crossings) and added to every crossing when it
exceeds ``tolerance_s``; within the tolerance the receiver's own times are kept, since they are the
more precise.

A crossing whose offset disagrees with the estimate by more than ``max_jump_s`` (a receiver whose
clock was reset mid-session) is held back: if ``confirm`` crossings in a row agree with each other,
the receiver's clock was set and the estimate starts again from them (the held crossings are placed
with it); if the next crossing agrees with the old estimate instead, the held ones are rejected.
Times that are not finite or lie outside 2015-2100 are rejected at once: no clock says that.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

MIN_TIME = 1_420_070_400.0  # 2015-01-01 UTC: a reset receiver reads 1970 or 2000
MAX_TIME = 4_102_444_800.0  # 2100-01-01 UTC

T = TypeVar("T")


@dataclass
class Placed(Generic[T]):
    """What became of crossings: ``placed`` items with their time on the box's timeline,
    ``rejected`` items with the reason."""

    placed: list[tuple[T, float]] = field(default_factory=list)
    rejected: list[tuple[T, str]] = field(default_factory=list)


class ReceiverClock(Generic[T]):
    def __init__(self, *, tolerance_s: float = 2.0, max_jump_s: float = 600.0, window: int = 15,
                 confirm: int = 3) -> None:
        self.tolerance_s = tolerance_s
        self.max_jump_s = max_jump_s
        self.confirm = confirm
        self._offsets: deque[float] = deque(maxlen=window)
        self._held: list[tuple[T, float, float]] = []  # item, receiver time, offset sample

    @property
    def offset_s(self) -> float | None:
        """Receive time minus receiver time (positive: the receiver is behind the box); None before
        the first crossing."""
        return statistics.median(self._offsets) if self._offsets else None

    @property
    def applied(self) -> bool:
        est = self.offset_s
        return est is not None and abs(est) > self.tolerance_s

    def feed(self, item: T, receiver_time: float, received_at: float) -> Placed[T]:
        out: Placed[T] = Placed()
        if not math.isfinite(receiver_time) or not MIN_TIME <= receiver_time <= MAX_TIME:
            out.rejected.append((item, f"time {receiver_time!r} is outside 2015-2100: the receiver's clock "
                                       "is not set"))
            return out
        sample = received_at - receiver_time
        est = self.offset_s
        if est is not None and abs(sample - est) > self.max_jump_s:
            self._held.append((item, receiver_time, sample))
            if len(self._held) > self.confirm:
                out.rejected.append(self._reject(self._held.pop(0), est))
            samples = [s for _, _, s in self._held]
            if len(samples) < self.confirm or max(samples) - min(samples) > self.max_jump_s:
                return out
            # The receiver's clock was set: start again from the held crossings.
            held, self._held = self._held, []
            self._offsets.clear()
            self._offsets.extend(samples)
            out.placed += [(it, self._place(t)) for it, t, _ in held]
            return out
        out.rejected += [self._reject(h, est or 0.0) for h in self._held]
        self._held = []
        self._offsets.append(sample)
        out.placed.append((item, self._place(receiver_time)))
        return out

    @staticmethod
    def _reject(held: tuple[T, float, float], est: float) -> tuple[T, str]:
        item, receiver_time, sample = held
        return item, (f"time {receiver_time:.3f} is {est - sample:+.0f} s off the receiver's other crossings "
                      "(a clock reset?)")

    def _place(self, receiver_time: float) -> float:
        est = self.offset_s
        return receiver_time + est if est is not None and abs(est) > self.tolerance_s else receiver_time
