"""Where a benchmark's CPU goes, by kind of process: CPU seconds read from /proc for every process
of the machine whose command line says what it is (the hub and its workers, PostgreSQL's processes,
the Kafka broker), so that a rate can be put beside what each row costs each of
them and what the machine's cores allow at most."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user and system) process ``pid`` has spent so far."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / TICKS


def _processes() -> dict[int, tuple[str, float]]:
    """Every process: pid -> (command line, CPU seconds so far, user and system)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            out[int(entry.name)] = (cmd, cpu_seconds(int(entry.name)))
        except OSError:
            continue  # gone meanwhile
    return out


class CpuByKind:
    """CPU seconds spent between ``start()`` and ``stop()`` by each kind of process (one started in
    between counts from its start; one that ended before ``stop`` is not counted: read while they
    all run)."""

    def __init__(self, kinds: dict[str, Callable[[str], bool]]) -> None:
        self.kinds = kinds
        self._start: dict[int, tuple[str, float]] = {}
        self.seconds: dict[str, float] = dict.fromkeys(kinds, 0.0)

    def start(self) -> None:
        self._start = _processes()

    def stop(self) -> dict[str, float]:
        for pid, (cmd, cpu) in _processes().items():
            kind = next((k for k, match in self.kinds.items() if match(cmd)), None)
            if kind is not None:
                self.seconds[kind] += cpu - self._start.get(pid, (cmd, 0.0))[1]
        return self.seconds
