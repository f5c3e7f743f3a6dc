"""`trackside-gateway decode KIND HEX...`: what is this meter sending?

Each argument is one payload in hex (spaces inside a quoted argument are fine; a comma also
separates payloads). For ant-power, bytes given one per argument are read as a stream of 8-byte
pages. Payloads go through the same stateful decoders as the sources, so from the second payload
on the derived power and cadence appear.
"""

from __future__ import annotations

import json
import re
from typing import Any

from gateway.decode.ant_power import AntPowerDecoder
from gateway.decode.ble_power import BlePowerDecoder, CrankCadence
from gateway.errors import DecodeError

_HEX = re.compile(r"^[0-9A-Fa-f]{2}$")


def payloads(kind: str, args: list[str]) -> list[bytes]:
    texts = [p for a in args for p in a.split(",")]
    if kind == "ant-power" and len(texts) > 1 and all(_HEX.match(t.strip()) for t in texts):
        stream = bytes.fromhex("".join(texts))
        if len(stream) % 8:
            raise DecodeError(kind, f"{len(stream)} bytes do not make whole 8-byte pages", offset=len(stream))
        return [stream[i:i + 8] for i in range(0, len(stream), 8)]
    out = []
    for n, text in enumerate(texts, start=1):
        digits = re.sub(r"[\s:]", "", text)
        if len(digits) % 2:
            raise DecodeError(kind, f"payload {n} has an odd number of hex digits ({len(digits)}): {text!r}",
                              offset=len(digits) // 2)
        for i in range(0, len(digits), 2):
            if not _HEX.match(digits[i:i + 2]):
                raise DecodeError(kind, f"payload {n}: {digits[i:i + 2]!r} is not a hex byte", offset=i // 2)
        out.append(bytes.fromhex(digits))
    return out


def decode(kind: str, args: list[str]) -> list[dict[str, Any]]:
    data = payloads(kind, args)
    out = []
    if kind == "ant-power":
        ant = AntPowerDecoder()
        for p in data:
            out.append({"hex": p.hex(" ").upper(), **ant.feed(p)})
    else:
        ble = BlePowerDecoder(CrankCadence())
        for i, p in enumerate(data):
            out.append({"hex": p.hex(" ").upper(), **ble.feed(p, float(i))})
    return out


def main(kind: str, args: list[str]) -> int:
    for obj in decode(kind, args):
        print(json.dumps(obj))
    return 0
