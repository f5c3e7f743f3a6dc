"""ANT+ power meters through openant: one channel per configured meter on one USB stick.

openant owns the stick, the node and the channels; pages are decoded here (gateway.decode.ant_power).
``Node.start()`` blocks, so it runs in a thread and hands pages to the event loop. A missing or
unplugged stick is a status ("no adapter", "lost") and a retry with backoff, never a crash.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from gateway.config.settings import Settings
from gateway.decode.ant_power import AntPowerDecoder
from gateway.errors import DecodeError
from gateway.model import PowerSample, radio_identity
from gateway.sources.link import Link, backoff
from gateway.sources.source import Submit
from gateway.status import StatusBoard

log = logging.getLogger(__name__)

ANTPLUS_KEY = [0xB9, 0xA5, 0x21, 0xFB, 0xBD, 0x72, 0xC3, 0x45]
POWER_DEVICE_TYPE, POWER_PERIOD, ANTPLUS_RF = 11, 8182, 57
# An ANTUSB2 or ANTUSB-m stick has 8 channels: one searches for any power meter (device number 0,
# the wildcard), the others follow paired meters. A ninth meter needs a second stick (or BLE).
STICK_CHANNELS = 8
EXTENDED_FLAG = 0x80  # the byte after a page's 8 bytes when extended messages carry the channel id


def device_of(data: bytes) -> tuple[int | None, bytes]:
    """The sender of a page heard on the wildcard channel (from the extended message's channel id)
    and the page itself; None when the stick did not say who sent it."""
    if len(data) >= 13 and data[8] & EXTENDED_FLAG:
        return data[9] | data[10] << 8, data[:8]
    return None, data[:8]


def build(settings: Settings, submit: Submit, status: StatusBoard) -> AntSource:
    meters = [int(m.id) for r in settings.riders for m in r.power_meters if m.kind == "ant"]
    return AntSource(submit, meters, status=status, retry_max_s=settings.sources.ant.retry_max_s)



def _openant_node() -> Any:
    from openant.easy.node import Node

    return Node()


# Longer than this without a page of a meter and its 8-bit event count (4 a second) may have wrapped.
STALE_S = 30.0

class AntSource:
    name = "ant"

    def __init__(self, submit: Submit, meters: list[int], *,
                 status: StatusBoard | None = None, node_factory: Callable[[], Any] = _openant_node,
                 retry_max_s: float = 30.0, channels: int = STICK_CHANNELS) -> None:
        self.submit = submit
        self.meters = list(dict.fromkeys(meters))
        self.channels = channels
        self.node_factory = node_factory
        self.retry_max_s = retry_max_s
        self.link = Link(status, "ant")
        self.decoders = {m: AntPowerDecoder() for m in meters}
        self._heard: dict[int, float] = {}  # each meter's last page, by the box's clock
        self._node: Any = None
        self._loop: Any = None
        self._followed: list[int] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        attempt = 0
        try:
            while True:
                self.link.set("searching")
                try:
                    self._node = await asyncio.to_thread(self.node_factory)
                except Exception as exc:  # usb.core.USBError, DriverNotFound, ImportError...
                    self.link.set("no adapter", f"{type(exc).__name__}: {exc}")
                    attempt += 1
                    await asyncio.sleep(backoff(attempt, self.retry_max_s))
                    continue
                attempt = 0
                # A new pairing: the first page of each meter only sets the reference again.
                self.decoders = {m: AntPowerDecoder() for m in self.meters}
                self._open_channels(loop)
                self.link.set("connected", f"{len(self._followed)} meter channel(s) and a search channel")
                try:
                    await asyncio.to_thread(self._node.start)
                    self.link.set("lost", "the ANT+ stick stopped")
                except Exception as exc:
                    self.link.set("lost", f"{type(exc).__name__}: {exc}")
                self._stop_node()
                await asyncio.sleep(1.0)
        finally:
            self._stop_node()

    def stop(self) -> None:
        """Stop the node, so the thread blocked in ``Node.start()`` returns."""
        self._stop_node()

    def _stop_node(self) -> None:
        if self._node is not None:
            node, self._node = self._node, None
            try:
                node.stop()
            except Exception as exc:
                log.debug("ant: stopping the node: %s", exc)

    def _open_channels(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._node.set_network_key(0x00, ANTPLUS_KEY)
        self._followed = []
        for device in self.meters[:self.channels - 1]:
            self._open(device, self._handler(loop, device))
        # The search channel: any power meter nearby, whoever it is (the pairing page lists them).
        wildcard = self._open(0, self._wildcard(loop))
        enable = getattr(wildcard, "enable_extended_messages", None)
        if enable is not None:
            enable(1)
        self._note_channels()

    def _open(self, device: int, handler: Callable[[Any], None]) -> Any:
        from openant.easy.channel import Channel

        channel = self._node.new_channel(Channel.Type.BIDIRECTIONAL_RECEIVE, 0x00, 0x00)
        channel.on_broadcast_data = handler
        channel.on_burst_data = handler
        channel.set_id(device, POWER_DEVICE_TYPE, 0)
        channel.set_period(POWER_PERIOD)
        channel.set_search_timeout(255)
        channel.set_rf_freq(ANTPLUS_RF)
        channel.open()
        if device:
            self._followed.append(device)
        return channel

    def _note_channels(self) -> None:
        self.link.note(channels=self.channels, channels_wanted=len(self.meters) + 1,
                       unfollowed=[m for m in self.meters if m not in self._followed])

    def add_meter(self, device: int) -> None:
        """A meter paired on the page: a channel of its own when the stick has one free (until then,
        and when the stick is full, its pages still arrive whenever the search channel holds it)."""
        if device in self.meters:
            return
        self.meters.append(device)
        if self._node is not None and len(self._followed) < self.channels - 1:
            try:
                self._open(device, self._handler(self._loop, device))
            except Exception as exc:
                log.warning("ant: no channel for meter %d: %s", device, exc)
        self._note_channels()

    def pair_meter(self, meter: str) -> None:
        """``Pairable``: a device number as the page gives it."""
        if meter.isdigit():
            self.add_meter(int(meter))

    def _wildcard(self, loop: asyncio.AbstractEventLoop) -> Callable[[Any], None]:
        def on_data(data: Any) -> None:  # on openant's thread
            device, page = device_of(bytes(data))
            if device is not None and device not in self._followed:
                loop.call_soon_threadsafe(self.on_page, device, page, time.time())

        return on_data

    def _handler(self, loop: asyncio.AbstractEventLoop, device: int) -> Callable[[Any], None]:
        def on_data(data: Any) -> None:  # on openant's thread
            loop.call_soon_threadsafe(self.on_page, device, bytes(data), time.time())

        return on_data

    def on_page(self, device: int, page: bytes, wall: float) -> None:
        """Decode one data page of meter ``device`` and submit the power it yields."""
        self.link.count("pages")
        decoder = self.decoders.get(device)
        # A meter back in range after a silence (a box beside the course hears a rider for seconds a
        # lap): its event count may have wrapped many times meanwhile, so the first page after the
        # silence only sets the reference again, as after pairing.
        if decoder is None or wall - self._heard.get(device, wall) > STALE_S:
            decoder = self.decoders[device] = AntPowerDecoder()
        self._heard[device] = wall
        try:
            fields = decoder.feed(page)
        except DecodeError as exc:
            self.link.count("bad_pages")
            log.warning("ant: meter %d sent a page that cannot be decoded: %s (%s)", device, exc, page.hex(" "))
            return
        self.link.device(str(device), **decoder.info, **({"power_w": fields["power_w"]} if "power_w" in fields else {}))
        if "power_w" in fields:
            self.submit(PowerSample(f"ant:{device}", str(device), wall, float(fields["power_w"]),
                                    fields.get("cadence_rpm"), fields.get("torque_nm"),
                                    radio_identity("ant", str(device), page)))
            self.link.count("samples")
