"""Bluetooth SIG Cycling Power Measurement (service 0x1818, characteristic 0x2A63), every flag.

Little-endian; instantaneous power is signed; pedal balance in 1/2 %; accumulated torque in
1/32 Nm; wheel revolutions with event time in 1/2048 s, crank revolutions with event time in
1/1024 s; extreme forces (N), torques (1/32 Nm) and angles (12 bits each); dead spot angles;
accumulated energy (kJ).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.errors import DecodeError

KIND = "ble-power"
SERVICE = "00001818-0000-1000-8000-00805f9b34fb"
MEASUREMENT = "00002a63-0000-1000-8000-00805f9b34fb"


class _Reader:
    def __init__(self, payload: bytes) -> None:
        self.b = payload
        self.i = 0

    def take(self, n: int, what: str, signed: bool = False) -> int:
        if self.i + n > len(self.b):
            raise DecodeError(KIND, f"the flags announce {what} but the payload ends at byte {len(self.b)}",
                              offset=self.i)
        value = int.from_bytes(self.b[self.i:self.i + n], "little", signed=signed)
        self.i += n
        return value


def parse_measurement(payload: bytes) -> dict[str, Any]:
    if len(payload) < 4:
        raise DecodeError(KIND, f"a Cycling Power Measurement has at least 4 bytes (flags, power), got "
                          f"{len(payload)}", offset=len(payload))
    r = _Reader(payload)
    flags = r.take(2, "flags")
    out: dict[str, Any] = {"flags": flags, "instant_power_w": r.take(2, "instantaneous power", signed=True)}
    if flags & 0x0001:
        out["pedal_balance_pct"] = r.take(1, "pedal power balance") / 2
        out["balance_reference"] = "left" if flags & 0x0002 else "unknown"
    if flags & 0x0004:
        out["accumulated_torque_nm"] = r.take(2, "accumulated torque") / 32
        out["torque_source"] = "crank" if flags & 0x0008 else "wheel"
    if flags & 0x0010:
        out["wheel_revolutions"] = r.take(4, "wheel revolutions")
        out["wheel_event_time_2048ths"] = r.take(2, "last wheel event time")
    if flags & 0x0020:
        out["crank_revolutions"] = r.take(2, "crank revolutions")
        out["crank_event_time_1024ths"] = r.take(2, "last crank event time")
    if flags & 0x0040:
        out["max_force_n"] = r.take(2, "maximum force", signed=True)
        out["min_force_n"] = r.take(2, "minimum force", signed=True)
    if flags & 0x0080:
        out["max_torque_nm"] = r.take(2, "maximum torque", signed=True) / 32
        out["min_torque_nm"] = r.take(2, "minimum torque", signed=True) / 32
    if flags & 0x0100:
        angles = r.take(3, "extreme angles")
        out["max_angle_deg"] = angles & 0x0FFF
        out["min_angle_deg"] = angles >> 12
    if flags & 0x0200:
        out["top_dead_spot_deg"] = r.take(2, "top dead spot angle")
    if flags & 0x0400:
        out["bottom_dead_spot_deg"] = r.take(2, "bottom dead spot angle")
    if flags & 0x0800:
        out["accumulated_energy_kj"] = r.take(2, "accumulated energy")
    out["offset_compensation"] = bool(flags & 0x1000)
    if r.i != len(payload):
        out["trailing_bytes"] = len(payload) - r.i
    return out


@dataclass
class CrankCadence:
    """Cadence from crank revolution data: deltas modulo 65536; no update while the event time
    stands still; 0 once no revolution has come for ``timeout_s``."""

    timeout_s: float = 3.0
    _revs: int | None = None
    _time: int | None = None
    _since: float | None = None
    cadence_rpm: float | None = None

    def feed(self, revs: int, event_time_1024ths: int, now: float) -> float | None:
        if self._revs is not None and self._time is not None:
            dt = (event_time_1024ths - self._time) & 0xFFFF
            if dt == 0:
                if self._since is not None and now - self._since >= self.timeout_s:
                    self.cadence_rpm = 0.0
                return self.cadence_rpm
            drevs = (revs - self._revs) & 0xFFFF
            self.cadence_rpm = 60 * drevs / (dt / 1024)
        self._revs, self._time, self._since = revs, event_time_1024ths, now
        return self.cadence_rpm


@dataclass
class BlePowerDecoder:
    cadence: CrankCadence

    def feed(self, payload: bytes, now: float) -> dict[str, Any]:
        fields = parse_measurement(payload)
        fields["power_w"] = float(fields["instant_power_w"])
        if "crank_revolutions" in fields:
            fields["cadence_rpm"] = self.cadence.feed(fields["crank_revolutions"], fields["crank_event_time_1024ths"],
                                                      now)
        return fields
