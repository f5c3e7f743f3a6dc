"""A small FIT file writer for tests: files shaped like other head units' (a Sigma ROX's laps with
total_timer_time 0, a triathlon's several sessions), which no recorded file in tests/data covers.

Only what the tests need: little-endian definition and data messages of the file_id, record, lap,
session and activity messages, the 14-byte header and both CRCs, as the FIT protocol describes them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

FIT_EPOCH = 631065600  # 1989-12-31T00:00:00Z
SPORTS = {"generic": 0, "running": 1, "cycling": 2, "swimming": 5, "transition": 3}

# (field number, size, base type): uint8 0x02, enum 0x00, uint16 0x84, uint32 0x86, uint32z 0x8C
FILE_ID = (0, [(0, 1, 0x00), (1, 2, 0x84), (2, 2, 0x84), (3, 4, 0x8C), (4, 4, 0x86)])
RECORD = (20, [(253, 4, 0x86), (7, 2, 0x84), (4, 1, 0x02)])
LAP = (19, [(253, 4, 0x86), (2, 4, 0x86), (7, 4, 0x86), (8, 4, 0x86), (25, 1, 0x00), (33, 2, 0x84)])
SESSION = (18, [(253, 4, 0x86), (2, 4, 0x86), (7, 4, 0x86), (8, 4, 0x86), (5, 1, 0x00), (34, 2, 0x84),
                (35, 2, 0x84), (36, 2, 0x84), (45, 2, 0x84)])
ACTIVITY = (34, [(253, 4, 0x86), (0, 4, 0x86), (1, 2, 0x84)])
FORMATS = {1: "B", 2: "H", 4: "I"}
INVALID = {0x00: 0xFF, 0x02: 0xFF, 0x84: 0xFFFF, 0x86: 0xFFFFFFFF, 0x8C: 0}


def crc16(data: bytes, crc: int = 0) -> int:
    table = [0x0000, 0xCC01, 0xD801, 0x1400, 0xF001, 0x3C00, 0x2800, 0xE401,
             0xA001, 0x6C00, 0x7800, 0xB401, 0x5000, 0x9C01, 0x8801, 0x4400]
    for byte in data:
        for nibble in (byte & 0x0F, byte >> 4):
            tmp = table[crc & 0x0F]
            crc = (crc >> 4) & 0x0FFF
            crc = crc ^ tmp ^ table[nibble]
    return crc


@dataclass
class Lap:
    start: float
    elapsed: float
    timer: float | None
    sport: str = "cycling"
    normalized_power: int | None = None


@dataclass
class Session:
    sport: str
    start: float
    elapsed: float
    timer: float
    normalized_power: int | None = None
    tss: float | None = None
    intensity_factor: float | None = None
    ftp_w: int | None = None


@dataclass
class FitFile:
    records: list[tuple[float, int | None, int | None]] = field(default_factory=list)  # (unix time, W, rpm)
    laps: list[Lap] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)

    def write(self, path: Path) -> Path:
        body = bytearray()
        defined: dict[int, int] = {}

        def message(kind: tuple[int, list[tuple[int, int, int]]], values: list[int | None]) -> None:
            number, fields = kind
            local = {0: 0, 20: 1, 19: 2, 18: 3, 34: 4}[number]
            if number not in defined:
                body.extend(struct.pack("<BBBHB", 0x40 | local, 0, 0, number, len(fields)))
                for num, size, base in fields:
                    body.extend(struct.pack("<BBB", num, size, base))
                defined[number] = local
            body.append(local)
            for (_, size, base), value in zip(fields, values, strict=True):
                body.extend(struct.pack("<" + FORMATS[size], INVALID[base] if value is None else value))

        def stamp(t: float) -> int:
            return round(t) - FIT_EPOCH

        first = self.records[0][0] if self.records else FIT_EPOCH + 1e9
        message(FILE_ID, [4, 255, 1, 12345, stamp(first)])
        for t, watts, rpm in self.records:
            message(RECORD, [stamp(t), watts, rpm])
        for lap in self.laps:
            message(LAP, [stamp(lap.start + lap.elapsed), stamp(lap.start), int(lap.elapsed * 1000),
                          None if lap.timer is None else int(lap.timer * 1000), SPORTS[lap.sport],
                          lap.normalized_power])
        for s in self.sessions:
            message(SESSION, [stamp(s.start + s.elapsed), stamp(s.start), int(s.elapsed * 1000), int(s.timer * 1000),
                              SPORTS[s.sport], s.normalized_power, None if s.tss is None else int(s.tss * 10),
                              None if s.intensity_factor is None else int(s.intensity_factor * 1000), s.ftp_w])
        end = max((s.start + s.elapsed for s in self.sessions), default=first)
        message(ACTIVITY, [stamp(end), int(sum(s.timer for s in self.sessions) * 1000), len(self.sessions)])
        header = struct.pack("<BBHI4s", 14, 0x20, 2132, len(body), b".FIT")
        header += struct.pack("<H", crc16(header))
        data = header + bytes(body)
        path.write_bytes(data + struct.pack("<H", crc16(data)))
        return path
