"""A synthetic load for benchmarks and fault tests (not for production configs).

N riders' power meters at a fixed rate and their gate crossings on the configured course,
submitted through the same ingest path as live sensors. Deterministic for a given seed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable, Sequence

from gateway.config.settings import LoadSettings, RiderSettings, Settings
from gateway.model import GateCrossing, PowerSample
from gateway.sources.link import Link
from gateway.sources.source import Submit
from gateway.status import StatusBoard

log = logging.getLogger(__name__)


def build(settings: Settings, submit: Submit, status: StatusBoard) -> LoadSource:
    load = settings.sources.load
    log.warning("synthetic load source enabled: %d riders at %g Hz (benchmarks and tests only)",
                len(settings.riders), load.rate_hz)
    return LoadSource(submit, settings.riders, settings.course.gate_ids, load, status=status)


class LoadSource:
    """Emits ``riders`` x ``load.rate_hz`` power samples per second, and a crossing every
    ``load.segment_s``."""

    def __init__(self, submit: Submit, riders: Sequence[RiderSettings], gates: Sequence[str], load: LoadSettings, *,
                 status: StatusBoard | None = None, clock: Callable[[], float] = time.time) -> None:
        self.submit = submit
        self.riders = riders
        self.gates = gates
        self.rate_hz = load.rate_hz
        self.segment_s = load.segment_s
        self.rng = random.Random(load.seed)
        self.link = Link(status, "load")
        self.clock = clock
        self.sent = 0

    name = "load"

    def stop(self) -> None:
        """Nothing to let go of: cancelling ``run`` stops it."""

    @staticmethod
    def _sensor(rider: RiderSettings) -> tuple[str, str]:
        if rider.power_meters:
            meter = rider.power_meters[0]
            return f"{meter.kind}:{meter.id}", meter.id
        return f"load:{rider.id}", rider.id

    async def run(self) -> None:
        period = 1.0 / self.rate_hz
        start = self.clock()
        offsets = {r.id: self.rng.uniform(0, self.segment_s) for r in self.riders}
        gate_index = {r.id: 0 for r in self.riders}
        next_gate = {r.id: start + offsets[r.id] for r in self.riders}
        tick = 0
        self.link.set("connected", f"{len(self.riders)} synthetic riders at {self.rate_hz:g} Hz")
        while True:
            now = start + tick * period
            for rider in self.riders:
                rid = rider.id
                source, sensor = self._sensor(rider)
                base = 180 + 40 * math.sin(now / 30 + offsets[rid])
                self.submit(PowerSample(source, sensor, now, max(0.0, base + self.rng.gauss(0, 25)),
                                        80 + self.rng.gauss(0, 4)))
                self.sent += 1
                self.link.count("samples")
                if now >= next_gate[rid] and rider.transponder:
                    gate = self.gates[gate_index[rid] % len(self.gates)]
                    self.submit(GateCrossing("load:gates", rider.transponder, gate, now))
                    self.link.count("crossings")
                    gate_index[rid] += 1
                    next_gate[rid] = now + self.segment_s * self.rng.uniform(0.8, 1.2)
            tick += 1
            delay = start + tick * period - self.clock()
            if delay > 0:
                await asyncio.sleep(delay)
            elif tick % 50 == 0:
                await asyncio.sleep(0)
