"""The fakes, in one place: only where hardware is missing (the ANT+ stick and the BLE radio) or a
seam is scripted (a clock that passes only when slept, a Kafka producer that refuses on cue). Each
stands at the library's boundary (openant's node and channels, bleak's scanner and client, the
forwarder's ``Output``) and hands over bytes as the real thing does: ANT+ pages and 0x2A63
measurements built to the profiles.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, ClassVar

from gateway.decode.ble_power import MEASUREMENT, SERVICE

# -- ANT+ ------------------------------------------------------------------------------------------


def crank(ev: int, period: int, torque: int, page_no: int = 0x12) -> bytes:
    """A crank torque page (0x12; 0x11 wheel torque) built to the ANT+ power profile: event count,
    accumulated period (1/2048 s) and torque (1/32 Nm), each rolling over as the meter's do."""
    return bytes([page_no, ev & 0xFF, ev & 0xFF, 90, period & 0xFF, period >> 8 & 0xFF,
                  torque & 0xFF, torque >> 8 & 0xFF])


def extended(page: bytes, device: int) -> bytes:
    """What the stick hands over with extended messages on: the page, a flag, the channel id."""
    return page + bytes([0x80, device & 0xFF, device >> 8, 11, 0x05])


class FakeNode:
    """openant.easy.node.Node at its boundary: channels get real pages; start() blocks until stop()."""

    def __init__(self, pages: dict[int, list[bytes]], then_unplug: bool = False) -> None:
        self.pages = pages
        self.then_unplug = then_unplug
        self.channels: list[SimpleNamespace] = []
        self.key = None
        self._stopped = threading.Event()

    def set_network_key(self, network: int, key: list[int]) -> None:
        self.key = key

    def new_channel(self, ctype: int, network: int = 0, ext: int = 0) -> SimpleNamespace:
        ch = SimpleNamespace(on_broadcast_data=None, on_burst_data=None, device=None, opened=False)
        ch.set_id = lambda dev, dtype, tt: setattr(ch, "device", (dev, dtype, tt))
        ch.set_period = ch.set_search_timeout = ch.set_rf_freq = lambda *_: None
        ch.open = lambda: setattr(ch, "opened", True)
        self.channels.append(ch)
        return ch

    def start(self) -> None:
        for ch in self.channels:
            for data in self.pages.get(ch.device[0], []):
                ch.on_broadcast_data(data)
        if self.then_unplug:
            raise OSError("[Errno 19] No such device (the stick was pulled)")
        self._stopped.wait(10)

    def stop(self) -> None:
        self._stopped.set()


class FakeStick:
    """openant's Node at its boundary with two power meters in range (4321 and 8765): the search
    channel hears whichever it holds; a channel of its own gets its meter's pages."""

    def __init__(self) -> None:
        self.channels: list[SimpleNamespace] = []
        self._stop = threading.Event()

    def set_network_key(self, network: int, key: list[int]) -> None:
        pass

    def new_channel(self, ctype: int, network: int = 0, ext: int = 0) -> SimpleNamespace:
        ch = SimpleNamespace(on_broadcast_data=None, on_burst_data=None, device=None)
        ch.set_id = lambda dev, dtype, tt: setattr(ch, "device", dev)
        ch.set_period = ch.set_search_timeout = ch.set_rf_freq = ch.open = ch.enable_extended_messages = (
            lambda *_: None)
        self.channels.append(ch)
        return ch

    def start(self) -> None:
        pages: dict[int, list[bytes]] = {4321: [], 8765: []}
        n = 0
        while not self._stop.wait(0.25):
            n += 1
            for device in pages:
                # Accumulated crank period and torque, about 250 W at 90 rpm.
                page = crank(n, (1365 * n) & 0xFFFF, ((900 + device % 50) * n) & 0xFFFF)
                for ch in list(self.channels):
                    if ch.device == device:
                        ch.on_broadcast_data(page)
                    elif ch.device == 0 and (n // 8) % 2 == list(pages).index(device):
                        ch.on_broadcast_data(extended(page, device))  # the search channel takes turns

    def stop(self) -> None:
        self._stop.set()


# -- Bluetooth LE ----------------------------------------------------------------------------------


class FakeScanner:
    def __init__(self, device: SimpleNamespace) -> None:
        self.device = device
        self.scans = 0

    async def find_device_by_filter(self, match, timeout: float):
        self.scans += 1
        adv = SimpleNamespace(service_uuids=[SERVICE])
        return self.device if match(self.device, adv) else None


class FakeClient:
    """bleak.BleakClient at its boundary: notifications are real 0x2A63 payloads."""

    instances: ClassVar[list[FakeClient]] = []

    def __init__(self, device, disconnected_callback) -> None:
        self.device = device
        self.on_disconnect = disconnected_callback
        self.is_connected = False
        self.handler = None
        FakeClient.instances.append(self)

    async def connect(self) -> None:
        self.is_connected = True

    async def start_notify(self, uuid: str, handler) -> None:
        assert uuid == MEASUREMENT
        self.handler = handler

    async def disconnect(self) -> None:
        self.is_connected = False

    def notify(self, hex_payload: str) -> None:
        self.handler(None, bytearray(bytes.fromhex(hex_payload)))

    def drop(self) -> None:
        self.is_connected = False
        self.on_disconnect(self)


class FakeBle:
    """bleak at its boundary: one power meter advertising the cycling power service, notifying
    0x2A63 measurements (instantaneous power 250 W) once connected."""

    address = "c4:7c:8d:6a:11:22"

    def __init__(self) -> None:
        self.device = SimpleNamespace(address=self.address.upper(), name="Stages 1234")

    async def discover(self, timeout: float, return_adv: bool, service_uuids: list[str]) -> dict[str, Any]:
        await asyncio.sleep(0.2)
        return {self.device.address: (self.device, SimpleNamespace(service_uuids=[SERVICE], rssi=-61))}

    async def find_device_by_filter(self, match: Any, timeout: float) -> Any:
        adv = SimpleNamespace(service_uuids=[SERVICE])
        if match(self.device, adv):
            return self.device
        await asyncio.sleep(min(timeout, 1.0))
        return None

    def client(self, device: Any, disconnected_callback: Any) -> Any:
        class Client:
            is_connected = False

            async def connect(self) -> None:
                self.is_connected = True

            async def start_notify(self, uuid: str, handler: Any) -> None:
                async def notify() -> None:
                    while self.is_connected:
                        handler(None, bytearray(bytes.fromhex("0000FA00")))
                        await asyncio.sleep(0.25)
                self.task = asyncio.get_running_loop().create_task(notify())

            async def disconnect(self) -> None:
                self.is_connected = False
                self.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self.task

        return Client()


# -- time ------------------------------------------------------------------------------------------


class FakeClock:
    """Time that passes only when someone sleeps: tests never wait for real."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds
        await asyncio.sleep(0)


# -- Kafka: the forwarder's producer seam ----------------------------------------------------------

_SEQ = re.compile(rb'"seq":(\d+)')


def seq_of(message: bytes) -> int:
    found = _SEQ.search(message)
    assert found, message[:80]
    return int(found.group(1))


@dataclass
class ScriptedKafka:
    """A broker and its producers, scripted. ``refuse``: events the producer refuses as offered
    (too large for it), with the error; ``fail``: events the broker fails that many times at
    delivery (a permanent error: fatal for a gapless producer, a report naming the event
    otherwise); ``room``: the producer's local queue. ``delivered`` is what the broker holds, in
    the order it took it, across every producer made (``outputs``)."""

    refuse: dict[int, str] = field(default_factory=dict)
    fail: dict[int, int] = field(default_factory=dict)
    room: int = 1_000_000
    delivered: list[int] = field(default_factory=list)
    outputs: list[FakeOutput] = field(default_factory=list)

    def output(self, gapless: bool) -> FakeOutput:
        out = FakeOutput(self, gapless)
        self.outputs.append(out)
        return out


class FakeOutput:
    """One producer session (``uplink.output.Output``) of a ``ScriptedKafka``."""

    def __init__(self, kafka: ScriptedKafka, gapless: bool) -> None:
        self.kafka = kafka
        self.gapless = gapless
        self.fatal = False
        self.refused: list[tuple[int, str]] = []
        self.refused_unknown = False
        self.closed = False
        self._queue: list[tuple[int, Any]] = []
        self._reports: list[tuple[Any, str | None]] = []

    def offer(self, messages: list[tuple[int, str, str, bytes, int]], tickets: dict[int, Any], start: int = 0) -> int:
        for i in range(start, len(messages)):
            seq = messages[i][0]
            if len(self._queue) >= self.kafka.room:
                self._flush()  # what librdkafka does while the caller polls: the queue drains
                return i
            if seq in self.kafka.refuse:
                self.refused.append((seq, self.kafka.refuse[seq]))
                return i
            self._queue.append((seq, tickets.get(seq)))
        return len(messages)

    def offer_run(self, topic: str, keys: Sequence[str], messages: Sequence[bytes],
                  reports: Sequence[tuple[int, Any]]) -> bool:
        tickets = dict(reports)
        for i, message in enumerate(messages):
            seq = seq_of(message)
            if len(self._queue) >= self.kafka.room:
                self._flush()
                return False
            if seq in self.kafka.refuse:
                self.refused_unknown = True
                return False
            self._queue.append((seq, tickets.get(i)))
        return True

    def poll(self, timeout: float) -> list[tuple[Any, str | None]]:
        self._flush()
        reports, self._reports = self._reports, []
        return reports

    def _flush(self) -> None:
        for seq, ticket in self._queue:
            if self.fatal:
                break
            if self.kafka.fail.get(seq, 0) > 0:
                self.kafka.fail[seq] -= 1
                if self.gapless:  # nothing after it in its partition may be delivered: fatal
                    self.fatal = True
                    self._queue = []
                    return
                if ticket is not None:
                    self._reports.append((ticket, "INVALID_RECORD: refused by the broker"))
                continue
            self.kafka.delivered.append(seq)
            if ticket is not None:
                self._reports.append((ticket, None))
        self._queue = []

    def close(self) -> None:
        self.closed = True
        self._queue = []  # what was not delivered stays undelivered in the spool
