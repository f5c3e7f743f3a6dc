"""Timing-gate lines from a serial receiver or bridge: the default format and a configurable one.

Freelap publishes no serial protocol, so the serial source takes a pluggable line decoder:

- ``line`` (default): ``<transponder>,<gate>,<time>``, time in unix seconds, e.g.
  ``BD-2525,SF,1772445612.345``;
- ``delimited``: any separator and field positions (0-based), the gate optional (then the
  source's configured gate), the time as unix seconds or a ``strptime`` format (a time of day
  is taken on the box's current UTC day).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from gateway.config.settings import SerialSettings
from gateway.errors import DecodeError

KIND = "serial line"


@dataclass(frozen=True)
class LineFormat:
    separator: str = ","
    transponder: int = 0
    gate: int | None = 1
    time: int = 2
    time_format: str = "unix"
    default_gate: str | None = None

    @classmethod
    def from_settings(cls, serial: SerialSettings) -> LineFormat:
        decoder = serial.decoder
        if decoder.get("format", "line") == "line":
            return cls(default_gate=serial.gate)
        fields = decoder.get("fields") or {}
        gate = fields.get("gate", 1)
        return cls(str(decoder.get("separator", ",")), int(fields.get("transponder", 0)),
                   None if gate is None else int(gate), int(fields.get("time", 2)),
                   str(decoder.get("time_format", "unix")), serial.gate)


ID_MAX = 64  # a chip's or gate's id; a longer field is line noise


def decode_line(text: str, fmt: LineFormat, today: dt.date | None = None) -> tuple[str, str, float]:
    """(transponder, gate, unix time) of one line; DecodeError says which field is wrong."""
    cells = [c.strip() for c in text.strip().split(fmt.separator)]
    needed = max(i for i in (fmt.transponder, fmt.gate, fmt.time) if i is not None)
    if len(cells) <= needed:
        raise DecodeError(KIND, f"expected at least {needed + 1} fields separated by {fmt.separator!r}, "
                          f"got {len(cells)}: {text.strip()!r}")
    transponder = cells[fmt.transponder]
    if not transponder:
        raise DecodeError(KIND, f"field {fmt.transponder} (transponder) is empty: {text.strip()!r}")
    if len(transponder) > ID_MAX:
        raise DecodeError(KIND, f"field {fmt.transponder} (transponder) is {len(transponder)} characters long, "
                                f"no chip's id (at most {ID_MAX})")
    gate = cells[fmt.gate] if fmt.gate is not None else fmt.default_gate
    if not gate:
        raise DecodeError(KIND, f"no gate in the line and none configured (sources.serial.gate): {text.strip()!r}")
    if len(gate) > ID_MAX:
        raise DecodeError(KIND, f"field {fmt.gate} (gate) is {len(gate)} characters long, no gate's id")
    raw = cells[fmt.time]
    try:
        if fmt.time_format == "unix":
            t = float(raw)
        else:
            parsed = dt.datetime.strptime(raw, fmt.time_format)
            if parsed.year == 1900:
                day = today or dt.datetime.now(dt.UTC).date()
                parsed = dt.datetime.combine(day, parsed.time())
            t = parsed.replace(tzinfo=parsed.tzinfo or dt.UTC).timestamp()
    except (ValueError, OverflowError):
        raise DecodeError(KIND, f"field {fmt.time} {raw!r} is not a time ({fmt.time_format}): {text.strip()!r}"
                          ) from None
    if not math.isfinite(t) or t <= 0:
        raise DecodeError(KIND, f"field {fmt.time} {raw!r} is not a usable time: {text.strip()!r}")
    return transponder, gate, t
