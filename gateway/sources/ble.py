"""Bluetooth LE cycling power meters through bleak: scan for 0x1818, connect, subscribe to 0x2A63.

Meters are configured by address or advertised name. After a disconnect the source rescans and
reconnects with backoff; each connection gets a fresh notification handler bound to it, so a
reconnect can never deliver the same notification twice through an old subscription.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from gateway.config.settings import Settings
from gateway.decode.ble_power import MEASUREMENT, SERVICE, BlePowerDecoder, CrankCadence
from gateway.errors import DecodeError
from gateway.model import PowerSample, radio_identity
from gateway.sources.link import Link, backoff
from gateway.sources.source import Submit
from gateway.status import StatusBoard

log = logging.getLogger(__name__)


def build(settings: Settings, submit: Submit, status: StatusBoard) -> BleSource:
    ble = settings.sources.ble
    meters = [m.id for r in settings.riders for m in r.power_meters if m.kind == "ble"]
    return BleSource(submit, meters, status=status, scan_timeout_s=ble.scan_timeout_s, retry_max_s=ble.retry_max_s)


class BleSource:
    name = "ble"

    def __init__(self, submit: Submit, meters: list[str], *,
                 status: StatusBoard | None = None, scan_timeout_s: float = 10.0, retry_max_s: float = 30.0,
                 scanner: Any = None, client_factory: Any = None) -> None:
        self.submit = submit
        self.wanted = {m.lower() for m in meters}
        self.scan_timeout_s = scan_timeout_s
        self.retry_max_s = retry_max_s
        self.link = Link(status, "ble")
        self._scanner = scanner
        self._client_factory = client_factory
        self.decoders: dict[str, BlePowerDecoder] = {}
        self._tasks: list[asyncio.Task[None]] | None = None

    def _bleak(self) -> tuple[Any, Any]:
        if self._scanner is None or self._client_factory is None:
            from bleak import BleakClient, BleakScanner

            return self._scanner or BleakScanner, self._client_factory or BleakClient
        return self._scanner, self._client_factory

    def stop(self) -> None:
        """Nothing to let go of: cancelling ``run`` disconnects."""

    async def run(self) -> None:
        tasks = self._tasks = [asyncio.create_task(self._meter(m), name=f"ble {m}") for m in sorted(self.wanted)]
        tasks.append(asyncio.create_task(self._discover(), name="ble discovery"))
        try:
            while tasks:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                for t in done:
                    t.result()  # a meter task only ends by raising (it loops forever)
                    tasks.remove(t)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def add_meter(self, wanted: str) -> None:
        """A meter paired on the page: connect to it now (no restart)."""
        wanted = wanted.lower()
        if wanted in self.wanted:
            return
        self.wanted.add(wanted)
        if self._tasks is not None:
            self._tasks.append(asyncio.get_running_loop().create_task(self._meter(wanted), name=f"ble {wanted}"))

    def pair_meter(self, meter: str) -> None:
        """``Pairable``: an address or an advertised name as the page gives it."""
        self.add_meter(meter)

    async def _discover(self) -> None:
        """Every few seconds, what advertises the cycling power service nearby (for the pairing page)."""
        scanner, _ = self._bleak()
        discover = getattr(scanner, "discover", None)
        if discover is None:
            return
        while True:
            try:
                found = await discover(timeout=4.0, return_adv=True, service_uuids=[SERVICE])
            except Exception as exc:  # no adapter: the meter tasks say so on the status
                log.debug("ble: discovery: %s", exc)
                await asyncio.sleep(self.retry_max_s)
                continue
            for address, (device, adv) in dict(found).items():
                if SERVICE in [u.lower() for u in (adv.service_uuids or [])]:
                    self.link.device(str(address).lower(), address=str(address).lower(), name=device.name,
                                     rssi=getattr(adv, "rssi", None))
            await asyncio.sleep(6.0)

    async def _meter(self, wanted: str) -> None:
        attempt = 0
        while True:
            scanner, client_factory = self._bleak()
            self.link.set("searching")
            try:
                device = await scanner.find_device_by_filter(
                    lambda d, adv: wanted in {(d.address or "").lower(), (d.name or "").lower()}
                    and SERVICE in [u.lower() for u in (adv.service_uuids or [])],
                    timeout=self.scan_timeout_s)
            except Exception as exc:  # BleakError: no adapter, BlueZ not running, ...
                self.link.set("no adapter", f"{type(exc).__name__}: {exc}")
                attempt += 1
                await asyncio.sleep(backoff(attempt, self.retry_max_s))
                continue
            if device is None:
                attempt += 1
                await asyncio.sleep(backoff(attempt, self.retry_max_s))
                continue
            gone = asyncio.Event()
            client = client_factory(device, disconnected_callback=lambda _c, gone=gone: gone.set())
            try:
                await client.connect()
                key = (device.address or wanted).lower()
                decoder = self.decoders.setdefault(key, BlePowerDecoder(CrankCadence()))
                await client.start_notify(MEASUREMENT, self._handler(key, decoder, client))
                self.link.set("connected", device.name or device.address)
                attempt = 0
                await gone.wait()
                self.link.set("lost", f"{device.name or device.address} disconnected")
                self.link.count("disconnects")
            except Exception as exc:
                self.link.set("lost", f"{type(exc).__name__}: {exc}")
                attempt += 1
            finally:
                if getattr(client, "is_connected", False):
                    try:
                        await client.disconnect()
                    except Exception as exc:
                        log.debug("ble: disconnect: %s", exc)
            await asyncio.sleep(backoff(attempt, self.retry_max_s))

    def _handler(self, key: str, decoder: BlePowerDecoder, client: Any) -> Callable[[Any, bytearray], None]:
        def on_notify(_sender: Any, data: bytearray) -> None:
            if not getattr(client, "is_connected", True):
                return  # a late callback from a subscription that is already gone
            self.on_notification(key, decoder, bytes(data))

        return on_notify

    def on_notification(self, key: str, decoder: BlePowerDecoder, data: bytes) -> None:
        self.link.count("notifications")
        try:
            fields = decoder.feed(data, time.monotonic())
        except DecodeError as exc:
            self.link.count("bad_notifications")
            log.warning("ble: %s sent a measurement that cannot be decoded: %s (%s)", key, exc, data.hex(" "))
            return
        self.link.device(key, address=key, power_w=fields["power_w"])
        self.submit(PowerSample(f"ble:{key}", key, time.time(), fields["power_w"], fields.get("cadence_rpm"), None,
                                radio_identity("ble", key, data)))
