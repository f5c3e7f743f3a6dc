"""Timing gates over a serial port (pyserial): lines in, gate crossings out.

Reads run in a thread. Partial lines wait for their end; garbage bytes, undecodable and
malformed lines are counted and logged with their raw text, never fatal. An unplugged device is
reopened with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import Any

from gateway.config.settings import Settings
from gateway.decode.lines import LineFormat, decode_line
from gateway.errors import DecodeError
from gateway.model import GateCrossing
from gateway.sources.link import Link, backoff
from gateway.sources.receiver_clock import ReceiverClock
from gateway.sources.source import Submit
from gateway.status import StatusBoard

log = logging.getLogger(__name__)
MAX_LINE = 512


def build(settings: Settings, submit: Submit, status: StatusBoard) -> SerialSource:
    serial = settings.sources.serial
    clock: ReceiverClock[bytes] = ReceiverClock(tolerance_s=serial.clock_tolerance_s,
                                                max_jump_s=serial.max_clock_jump_s)
    return SerialSource(submit, serial.port, serial.baudrate, LineFormat.from_settings(serial), status=status,
                        clock=clock)


class SerialSource:
    name = "serial"

    def __init__(self, submit: Submit, port: str, baudrate: int, fmt: LineFormat, *,
                 status: StatusBoard | None = None, retry_max_s: float = 30.0,
                 clock: ReceiverClock[bytes] | None = None) -> None:
        self.submit = submit
        self.port = port
        self.baudrate = baudrate
        self.fmt = fmt
        self.retry_max_s = retry_max_s
        self.link = Link(status, "serial")
        self.clock: ReceiverClock[bytes] = clock or ReceiverClock()
        self._stop = threading.Event()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.to_thread(self._read_forever, loop)
        finally:
            self._stop.set()

    def stop(self) -> None:
        self._stop.set()

    def _read_forever(self, loop: asyncio.AbstractEventLoop) -> None:
        import serial

        attempt = 0
        while not self._stop.is_set() and not loop.is_closed():
            try:
                port = serial.Serial(self.port, self.baudrate, timeout=0.2)
            except (serial.SerialException, OSError) as exc:
                self.link.set("no adapter", f"{self.port}: {exc}")
                attempt += 1
                self._stop.wait(backoff(attempt, self.retry_max_s))
                continue
            attempt = 0
            self.link.set("connected", self.port)
            try:
                self._read(port, loop)
            except (serial.SerialException, OSError) as exc:
                self.link.set("lost", f"{self.port}: {exc}")
                self.link.count("unplugged")
            finally:
                with contextlib.suppress(serial.SerialException, OSError):
                    port.close()
            self._stop.wait(1.0)

    def _read(self, port: Any, loop: asyncio.AbstractEventLoop) -> None:
        buffer = b""
        skipping = False  # inside a line too long to be one: dropped up to its end, whole
        while not self._stop.is_set():
            chunk = port.read(256)
            if not chunk:
                if not port.is_open:
                    raise OSError("the port closed")
                continue
            buffer += chunk.replace(b"\r", b"\n")
            if skipping:
                end = buffer.find(b"\n")
                if end < 0:
                    buffer = b""
                    continue
                buffer, skipping = buffer[end + 1:], False
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                if len(raw) > MAX_LINE:
                    self._bad(raw, f"a line longer than {MAX_LINE} bytes: dropped whole")
                elif raw.strip():
                    self._line(raw, loop)
            if len(buffer) > MAX_LINE:
                # Before, each 512 bytes were dropped on their own and the tail taken for a crossing.
                self._bad(buffer, f"a line longer than {MAX_LINE} bytes: dropped whole")
                buffer, skipping = b"", True

    def _line(self, raw: bytes, loop: asyncio.AbstractEventLoop) -> None:
        self.link.count("lines")
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            self._bad(raw, "garbage bytes")
            return
        try:
            transponder, gate, t = decode_line(text, self.fmt)
        except DecodeError as exc:
            self._bad(raw, exc.message)
            return
        placed = self.clock.feed(raw, t, time.time())
        for line, why in placed.rejected:
            self.link.count("rejected_times")
            log.warning("serial %s: crossing rejected: %s: %r", self.port, why, line[:200])
        for line, box_time in placed.placed:
            transponder, gate, t = decode_line(line.decode("ascii"), self.fmt)
            crossing = GateCrossing(f"serial:{self.port}", transponder, gate, box_time, receiver_time=t)
            loop.call_soon_threadsafe(self.submit, crossing)
            self.link.count("crossings")
        offset = self.clock.offset_s
        self.link.note(clock_offset_s=None if offset is None else round(offset, 3), clock_aligned=self.clock.applied)

    def _bad(self, raw: bytes, why: str) -> None:
        self.link.count("bad_lines")
        log.warning("serial %s: %s: %r", self.port, why, raw[:200])
