"""The ``sim`` source: what the course simulator says this box hears, as if from its radios.

A feed (``trackside-gateway simulate --feeds DIR`` writes one per box) holds, in the box's clock's
order, the ANT+ pages the box received (device number, the 8 bytes) and the timing lines its
receiver gave (chip, gate, the chip's own time), each stamped by the box's simulated clock. Pages go
through the ANT+ source's own decoding (``AntSource.on_page``: the same reference and stale rules
as the stick's); crossings are made as the serial source makes them. Played at ``speed`` real
seconds per simulated second (0: as fast as the box takes them). For tests and rehearsals: the real
daemon, its spool, its uplink and the hub see what a course would give them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

from gateway.config.settings import Settings
from gateway.model import GateCrossing
from gateway.sources.ant import AntSource
from gateway.sources.link import Link
from gateway.sources.source import Submit
from gateway.status import StatusBoard

log = logging.getLogger(__name__)

YIELD_EVERY = 200  # lines handed over between two turns of the event loop at full speed


def build(settings: Settings, submit: Submit, status: StatusBoard) -> SimSource:
    sim = settings.sources.sim
    log.warning("simulated radios: feed %s (tests and rehearsals only)", sim.feed)
    return SimSource(submit, Path(sim.feed or ""), speed=sim.speed, status=status)


class SimSource:
    name = "sim"

    def __init__(self, submit: Submit, feed: Path, *, speed: float = 0.0, status: StatusBoard | None = None) -> None:
        self.submit = submit
        self.feed = feed
        self.speed = speed
        self.link = Link(status, "sim")
        self.ant = AntSource(submit, [], status=status, node_factory=lambda: None)
        self.done = False

    def stop(self) -> None:
        """Nothing held: cancelling ``run`` stops it."""

    async def run(self) -> None:
        try:
            lines = self.feed.read_text().splitlines()
        except OSError as exc:
            self.link.set("no adapter", f"cannot read the feed {self.feed}: {exc.strerror or exc}")
            return
        self.link.set("connected", f"{len(lines)} simulated messages from {self.feed.name}")
        first_sim, first_real = None, time.monotonic()
        for n, line in enumerate(lines, start=1):
            try:
                item = json.loads(line)
                t = float(item["t"])
            except (ValueError, KeyError, TypeError):
                self.link.count("bad_lines")
                log.warning("sim: line %d of %s is not a feed item: %r", n, self.feed, line[:120])
                continue
            first_sim = t if first_sim is None else first_sim
            if self.speed > 0:
                due = first_real + (t - first_sim) * self.speed - time.monotonic()
                if due > 0:
                    await asyncio.sleep(due)
            elif n % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            self._hand_over(item, t)
        self.done = True
        self.link.set("connected", f"the feed is played out ({len(lines)} messages)")

    def _hand_over(self, item: dict[str, object], t: float) -> None:
        if "ant" in item:
            self.ant.on_page(int(str(item["ant"])), bytes.fromhex(str(item["page"])), t)
        elif "chip" in item:
            self.submit(GateCrossing("serial:sim", str(item["chip"]), str(item["gate"]), t,
                                     receiver_time=float(str(item["chip_t"]))))
            self.link.count("crossings")
