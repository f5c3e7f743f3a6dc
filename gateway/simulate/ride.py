"""A simulated session: where every rider is at every moment, what each meter broadcasts, which
box hears it and when by its own clock, and when each chip passes each gate.

The truth is kept beside what the boxes receive, so that a test can compare the hub's course
results with the engine's results on the true stream, and the planner can say how much of each
segment the boxes hear.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from gateway.simulate.world import ANT_PERIOD_S, TERRAIN, SimBox, SimRider, World

RADIO_LATENCY_S = 0.002  # from the meter's broadcast to the stick's timestamp on the box
RECEIVER_LATENCY_S = 0.05  # from a chip's pass to the timing receiver's line
CADENCE = {"climb": 74, "descent": 40, "technical": 82, "flat": 90}


@dataclass(frozen=True)
class Broadcast:
    """One ANT+ power-only page (0x10) as the meter sent it: true time, the page, what it means."""

    t: float
    page: bytes
    power: int
    cadence: int


@dataclass(frozen=True)
class Pass:
    """A chip passing a gate: the true time, and the time the chip stamped with its own clock."""

    t: float
    gate: str
    chip_t: float


@dataclass
class RiderTruth:
    rider: SimRider
    broadcasts: list[Broadcast] = field(default_factory=list)
    passes: list[Pass] = field(default_factory=list)
    heard: list[list[int]] = field(default_factory=list)  # for each broadcast, the boxes that heard it


@dataclass(frozen=True)
class Heard:
    """What one box receives: an ANT+ page (``device``, ``page``) or a crossing line (``transponder``,
    ``gate``, ``chip_t``), stamped ``box_t`` by the box's clock."""

    box_t: float
    kind: str
    device: int = 0
    page: bytes = b""
    transponder: str = ""
    gate: str = ""
    chip_t: float = 0.0


@dataclass
class Session:
    world: World
    riders: dict[str, RiderTruth]
    feeds: dict[str, list[Heard]]  # by box, in the box's time order

    @property
    def end(self) -> float:
        return max(t.broadcasts[-1].t for t in self.riders.values() if t.broadcasts)


def _legs(world: World, rider: SimRider) -> Iterator[tuple[float, float, float, float, str]]:
    """(true start, true end, metres along the ride at start, at end, terrain) of each segment the
    rider rides, from the start gate through ``world.laps`` laps."""
    course = world.course
    t = world.t0 + rider.start_s
    ridden = 0.0
    for _ in range(world.laps):
        for k in range(1, len(course.gates) + 1):
            lo, hi = course.bounds(k)
            terrain = course.terrain[k - 1]
            speed = TERRAIN[terrain][0] * rider.pace / 3.6
            seconds = (hi - lo) / speed
            yield t, t + seconds, ridden, ridden + hi - lo, terrain
            t += seconds
            ridden += hi - lo


def _ride(world: World, rider: SimRider, rng: random.Random) -> RiderTruth:
    truth = RiderTruth(rider)
    chip = world.chip_offsets_s.get(rider.transponder, 0.0)
    legs = list(_legs(world, rider))
    for start, _, metres, _, _ in legs:
        gate = world.course.gates[world.course.segment_at(metres) - 1].id
        truth.passes.append(Pass(start, gate, start + chip))
    finish = legs[-1][1]
    truth.passes.append(Pass(finish, world.course.gates[0].id, finish + chip))
    event, accumulated = 0, 0
    phase = rng.uniform(0, 2 * math.pi)
    t = legs[0][0] + rng.uniform(0, ANT_PERIOD_S)
    leg = 0
    while t < finish:
        while legs[leg][1] <= t:
            leg += 1
        _, _, _, _, terrain = legs[leg]
        effort = rider.ftp_w * TERRAIN[terrain][1] * (1 + 0.08 * math.sin((t - world.t0) / 90 * 2 * math.pi + phase))
        power = max(0, round(effort + rng.gauss(0, 12)))
        cadence = CADENCE[terrain] + int(rng.gauss(0, 3))
        event = (event + 1) & 0xFF
        accumulated = (accumulated + power) & 0xFFFF
        page = bytes([0x10, event, 0xFF, max(0, min(254, cadence)), accumulated & 0xFF, accumulated >> 8,
                      power & 0xFF, power >> 8 & 0xFF])
        truth.broadcasts.append(Broadcast(t, page, power, cadence))
        t += ANT_PERIOD_S
    return truth


def position(world: World, rider: SimRider, t: float, legs: list[tuple[float, float, float, float, str]]) -> float:
    """Metres along the ride (from the start gate) at true time ``t``."""
    for start, end, m0, m1, _ in legs:
        if t < end:
            return m0 + (m1 - m0) * max(0.0, (t - start) / (end - start))
    return legs[-1][3]


def simulate(world: World, seed: int = 1) -> Session:
    """The session ``world`` describes, every random draw from ``seed``."""
    rng = random.Random(seed)
    riders: dict[str, RiderTruth] = {}
    feeds: dict[str, list[Heard]] = {b.box_id: [] for b in world.boxes}
    receivers = {gate: box for box in world.boxes for gate in box.gates}
    # A gate without a box of its own: the chip's rep reaches the receiver at the start/finish (a
    # Freelap chip sends its splits after the finish transmitter), else the first box's.
    fallback = receivers.get(world.course.gates[0].id) or (world.boxes[0] if world.boxes else None)
    for rider in world.riders:
        truth = riders[rider.rider_id] = _ride(world, rider, rng)
        legs = list(_legs(world, rider))
        for b in truth.broadcasts:
            at = position(world, rider, b.t, legs)
            heard = [i for i, box in enumerate(world.boxes)
                     if box.hears(at, world.course.lap_m) and rng.random() < box.reception]
            truth.heard.append(heard)
            for i in heard:
                box = world.boxes[i]
                feeds[box.box_id].append(Heard(_stamp(world, box, b.t + RADIO_LATENCY_S, rng), "ant", rider.device,
                                               b.page))
        for p in truth.passes:
            receiver = receivers.get(p.gate, fallback)
            if receiver is not None:
                feeds[receiver.box_id].append(Heard(_stamp(world, receiver, p.t + RECEIVER_LATENCY_S, rng), "crossing",
                                               transponder=rider.transponder, gate=p.gate, chip_t=p.chip_t))
    for feed in feeds.values():
        feed.sort(key=lambda h: h.box_t)
    return Session(world, riders, feeds)


def _stamp(world: World, box: SimBox, true_t: float, rng: random.Random) -> float:
    return box.clock.read(true_t, world.t0) + rng.gauss(0, box.clock.jitter_ms / 1000.0)
