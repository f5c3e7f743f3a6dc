"""A synthetic load for benchmarks and fault tests (not for production configs).

N riders' power meters at a fixed rate and their gate crossings on the configured course,
submitted through the same ingest path as live sensors. Deterministic for a given seed.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from typing import Any

from gateway.model import GateCrossing, PowerSample
from gateway.status import StatusBoard


class LoadSource:
    """Emits ``riders`` x ``rate_hz`` power samples per second, and a crossing every ``segment_s``."""

    def __init__(self, submit: Callable[[Any], object], riders: list[dict[str, Any]], gates: list[str], *,
                 rate_hz: float = 4.0, segment_s: float = 60.0, seed: int = 1, status: StatusBoard | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.submit = submit
        self.riders = riders
        self.gates = gates
        self.rate_hz = rate_hz
        self.segment_s = segment_s
        self.rng = random.Random(seed)
        self.status = status
        self.clock = clock
        self.sent = 0

    def _sensor(self, rider: dict[str, Any]) -> tuple[str, str]:
        meters = rider.get("power_meters") or []
        if meters:
            kind, value = next(iter(meters[0].items()))
            return f"{kind}:{value}", str(value)
        return f"load:{rider['id']}", rider["id"]

    async def run(self) -> None:
        period = 1.0 / self.rate_hz
        start = self.clock()
        offsets = {r["id"]: self.rng.uniform(0, self.segment_s) for r in self.riders}
        gate_index = {r["id"]: 0 for r in self.riders}
        next_gate = {r["id"]: start + offsets[r["id"]] for r in self.riders}
        tick = 0
        if self.status:
            self.status.post("source.load", state="connected", riders=len(self.riders), rate_hz=self.rate_hz)
        while True:
            now = start + tick * period
            for rider in self.riders:
                rid = rider["id"]
                source, sensor = self._sensor(rider)
                base = 180 + 40 * math.sin(now / 30 + offsets[rid])
                self.submit(PowerSample(source, sensor, now, max(0.0, base + self.rng.gauss(0, 25)),
                                        80 + self.rng.gauss(0, 4), None, time.monotonic()))
                self.sent += 1
                if now >= next_gate[rid] and rider.get("transponder"):
                    gate = self.gates[gate_index[rid] % len(self.gates)]
                    self.submit(GateCrossing("load:gates", rider["transponder"], gate, now, time.monotonic()))
                    gate_index[rid] += 1
                    next_gate[rid] = now + self.segment_s * self.rng.uniform(0.8, 1.2)
            tick += 1
            delay = start + tick * period - self.clock()
            if delay > 0:
                await asyncio.sleep(delay)
            elif tick % 50 == 0:
                await asyncio.sleep(0)
