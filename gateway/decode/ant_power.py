"""ANT+ Bicycle Power profile (device type 11): data pages and the power and cadence they imply.

Pages 0x10 power-only, 0x11 wheel torque, 0x12 crank torque, 0x20 crank torque frequency (bytes
2-7 big-endian), 0x01 calibration (the CTF zero offset), common pages 0x50/0x51/0x52
(manufacturer, product, battery). Averages come from the differences between two pages of the
same kind, modulo the field widths (event count 8 bits, the rest 16 bits), so they stay right
across missed messages and rollovers. openant's own 0x12 decoding adds 65536 to every crank
period (power comes out near zero): it is not used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import DecodeError

KIND = "ant-power"
COAST_REPEATS = {0x10: 6, 0x11: 4, 0x12: 4, 0x20: 4}


def _u16le(b: bytes, i: int) -> int:
    return b[i] | b[i + 1] << 8


def _u16be(b: bytes, i: int) -> int:
    return b[i] << 8 | b[i + 1]


def parse_page(payload: bytes) -> dict[str, Any]:
    """Every field of one 8-byte data page."""
    if len(payload) != 8:
        raise DecodeError(KIND, f"an ANT+ data page is 8 bytes, got {len(payload)}",
                          offset=min(len(payload), 8))
    page = payload[0]
    if page == 0x10:
        balance = payload[2]
        return {"page": page, "name": "power-only", "event_count": payload[1],
                "pedal_balance_pct": None if balance == 0xFF else balance & 0x7F,
                "balance_is_right_pedal": None if balance == 0xFF else bool(balance & 0x80),
                "instant_cadence_rpm": None if payload[3] == 0xFF else payload[3],
                "accumulated_power_w": _u16le(payload, 4), "instant_power_w": _u16le(payload, 6)}
    if page in (0x11, 0x12):
        what = "wheel" if page == 0x11 else "crank"
        return {"page": page, "name": f"{what} torque", "event_count": payload[1], f"{what}_ticks": payload[2],
                "instant_cadence_rpm": None if payload[3] == 0xFF else payload[3],
                "accumulated_period_2048ths": _u16le(payload, 4), "accumulated_torque_32ths_nm": _u16le(payload, 6)}
    if page == 0x20:
        return {"page": page, "name": "crank torque frequency", "event_count": payload[1],
                "slope_nm_per_hz": _u16be(payload, 2) / 10.0, "timestamp_2000ths": _u16be(payload, 4),
                "torque_ticks": _u16be(payload, 6)}
    if page == 0x01:
        out: dict[str, Any] = {"page": page, "name": "calibration", "calibration_id": payload[1]}
        if payload[1] == 0x10 and payload[2] == 0x01:
            out["ctf_offset_hz"] = _u16be(payload, 6)
        return out
    if page == 0x50:
        return {"page": page, "name": "manufacturer", "hw_revision": payload[3],
                "manufacturer_id": _u16le(payload, 4), "model_number": _u16le(payload, 6)}
    if page == 0x51:
        sw = payload[3] if payload[2] == 0xFF else payload[3] * 100 + payload[2]
        return {"page": page, "name": "product", "software_version": sw / 10 if payload[2] == 0xFF else sw / 1000,
                "serial_number": int.from_bytes(payload[4:8], "little")}
    if page == 0x52:
        # Byte 2: number of batteries in bits 0-3, this battery's identifier in bits 4-7 (0x0F/0xF0
        # when not used); bytes 3-5 cumulative operating time in 2 s or 16 s ticks (byte 7 bit 7).
        count, ident = payload[2] & 0x0F, payload[2] >> 4
        voltage = None if payload[7] & 0x0F == 0x0F else (payload[7] & 0x0F) + payload[6] / 256
        status = ["reserved", "new", "good", "ok", "low", "critical", "reserved", "invalid"][(payload[7] >> 4) & 0x07]
        ticks = int.from_bytes(payload[3:6], "little")
        return {"page": page, "name": "battery", "battery_count": None if count == 0x0F else count,
                "battery_id": None if ident == 0x0F else ident, "battery_voltage_v": voltage,
                "battery_status": status, "operating_time_s": ticks * (2 if payload[7] & 0x80 else 16)}
    raise DecodeError(KIND, f"unknown data page 0x{page:02X}", offset=0)


@dataclass
class AntPowerDecoder:
    """Power and cadence of one meter from successive pages (one decoder per meter)."""

    ctf_offset_hz: float | None = None
    _last: dict[int, dict[str, Any]] = field(default_factory=dict)
    _repeats: dict[int, int] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def feed(self, payload: bytes) -> dict[str, Any]:
        """The page's fields, plus ``power_w``/``cadence_rpm``/``torque_nm`` once two pages allow it."""
        fields = parse_page(payload)
        page = fields["page"]
        if page == 0x01 and "ctf_offset_hz" in fields:
            self.ctf_offset_hz = fields["ctf_offset_hz"]
        if page in (0x50, 0x51, 0x52):
            self.info.update({k: v for k, v in fields.items() if k not in ("page", "name")})
        if page not in COAST_REPEATS:
            return fields
        prev = self._last.get(page)
        self._last[page] = fields
        if prev is None:
            return fields  # the first page after pairing only sets the reference
        events = (fields["event_count"] - prev["event_count"]) & 0xFF
        if events == 0:
            self._repeats[page] = self._repeats.get(page, 0) + 1
            if self._repeats[page] >= COAST_REPEATS[page]:
                return {**fields, "power_w": 0.0, "cadence_rpm": 0.0, "coasting": True}
            return fields
        self._repeats[page] = 0
        return {**fields, **self._derive(page, prev, fields, events)}

    def _derive(self, page: int, prev: dict[str, Any], cur: dict[str, Any], events: int) -> dict[str, Any]:
        if page == 0x10:
            power = ((cur["accumulated_power_w"] - prev["accumulated_power_w"]) & 0xFFFF) / events
            return {"power_w": power, "cadence_rpm": cur["instant_cadence_rpm"]}
        if page in (0x11, 0x12):
            period = (cur["accumulated_period_2048ths"] - prev["accumulated_period_2048ths"]) & 0xFFFF
            torque = (cur["accumulated_torque_32ths_nm"] - prev["accumulated_torque_32ths_nm"]) & 0xFFFF
            if period == 0:
                return {}
            out = {"torque_nm": torque / (32 * events), "power_w": 128 * math.pi * torque / period}
            if page == 0x12:
                out["cadence_rpm"] = 60 * 2048 * events / period
            else:
                out["wheel_rpm"] = 60 * 2048 * events / period
            return out
        seconds = ((cur["timestamp_2000ths"] - prev["timestamp_2000ths"]) & 0xFFFF) / 2000
        ticks = (cur["torque_ticks"] - prev["torque_ticks"]) & 0xFFFF
        if seconds == 0:
            return {}
        cadence = 60 * events / seconds
        out = {"cadence_rpm": cadence, "torque_frequency_hz": ticks / seconds}
        if self.ctf_offset_hz is not None and cur["slope_nm_per_hz"] > 0:
            torque = (ticks / seconds - self.ctf_offset_hz) / cur["slope_nm_per_hz"]
            out.update(torque_nm=torque, power_w=torque * cadence * math.pi / 30)
        return out
