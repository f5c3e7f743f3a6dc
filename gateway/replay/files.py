"""A replay session from files: one power file per rider (FIT or Axiamo Excel) and timing files.

A file is given as ``PATH`` or ``RIDER=PATH`` (RIDER: a roster id or name), and optionally
``PATH@+12.5`` to shift its clock by that many seconds (a head unit whose clock was off). Without
``RIDER=``, the rider is named by the file name: ``anna.xlsx``, ``r01_intervals.fit``. FIT laps
become gate crossings only when the session has no timing file. Every file is read completely
before anything is replayed, so a bad file stops the replay before a single event is ingested.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from gateway.config.settings import RiderSettings
from gateway.errors import InputFileError
from gateway.model import GateCrossing, PowerSample
from gateway.readers.recording import Recording, crossings_from_boundaries

SAMPLE = "@sample"
_OFFSET = re.compile(r"^(?P<path>.+?)@(?P<offset>[+-]\d+(?:\.\d+)?)$")


@dataclass(frozen=True)
class FileSpec:
    path: str
    rider: str | None = None
    offset_s: float = 0.0

    @classmethod
    def parse(cls, text: str) -> FileSpec:
        rider = None
        if "=" in text and not Path(text).exists():
            rider, text = text.split("=", 1)
        offset = 0.0
        match = _OFFSET.match(text)
        if match and not Path(text).exists():
            text, offset = match["path"], float(match["offset"])
        return cls(text, rider, offset)


def sample_files() -> list[str]:
    """The bundled sample session (made by tools/make_sample)."""
    root = resources.files("gateway").joinpath("resources/sample")
    return sorted(str(p) for p in root.iterdir() if p.name.endswith(".xlsx"))


def expand(specs: list[str]) -> list[FileSpec]:
    out: list[FileSpec] = []
    for text in specs:
        if text == SAMPLE:
            out += [FileSpec(p) for p in sample_files()]
        else:
            out.append(FileSpec.parse(text))
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:64] or "rider"


def rider_of(spec: FileSpec, riders: Sequence[RiderSettings]) -> tuple[str, str]:
    """(rider id, name): from ``RIDER=``, else from the file name; a stranger gets an id from the name."""
    wanted = spec.rider or Path(spec.path).stem
    for r in riders:
        if wanted.lower() in (r.id.lower(), r.name.lower()):
            return r.id, r.name
    if spec.rider is None:
        stem = Path(spec.path).stem.lower()
        for r in riders:
            if re.match(rf"^({re.escape(r.id.lower())}|{re.escape(r.name.lower())})[-_ .]", stem):
                return r.id, r.name
    return _slug(wanted), wanted


def _kind(path: str) -> str:
    target = Path(path)
    if target.exists() and not target.is_file():
        # A FIFO would block the reader for good (and a directory is no recording).
        raise InputFileError(path, "is not a regular file", hint="give the recorded file itself")
    suffix = target.suffix.lower()
    if suffix == ".fit":
        return "fit"
    if suffix in (".xlsx", ".xlsm"):
        return "axiamo"
    if suffix in (".csv", ".txt"):
        return "freelap"
    raise InputFileError(path, f"unknown kind of file '{suffix or path}'",
                         hint="replay reads .fit (head units), .xlsx (Axiamo export) and .csv (MyFreelap export)")


def _read_fit(spec: FileSpec, rider: str, gates: list[str]) -> Recording:
    from gateway.readers.fit import read_fit

    ride = read_fit(spec.path)
    source = f"replay:{Path(spec.path).name}"
    samples = [PowerSample(source, rider, float(t), float(p), None if c != c else float(c))
               for t, p, c in zip(ride.times, ride.power, ride.cadence, strict=True) if p == p]
    boundaries = [ride.laps[0].start] + [lap.end for lap in ride.laps] if ride.laps else []

    def build(course: Sequence[str]) -> list[GateCrossing]:
        return crossings_from_boundaries(source, rider, course, boundaries)

    return Recording(spec.path, "fit", rider, samples, build(gates), build=build)


@dataclass
class LoadedSession:
    """Every file of a replay, read and checked, on the course they are replayed on."""

    recordings: list[Recording]
    strangers: list[dict[str, Any]]  # riders the files add to the roster
    gates: list[str]  # the course's gates: the configured ones, or as many as the files' segments a lap


@contextlib.contextmanager
def _cycles_uncollected() -> Iterator[None]:
    """Python's cycle collector off while files are read: reading makes hundreds of thousands of
    rows and samples, none of them in a cycle, and the collector walking them again and again took
    half the reading time. Nested or concurrent loads leave it on once the first one ends."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def load_session(specs: list[FileSpec], gates: list[str], riders: Sequence[RiderSettings], *,
                 from_file: bool = False) -> LoadedSession:
    """Read every file; then settle the course and lay every file's crossings on it.

    Files that time segments themselves (Axiamo, MyFreelap) say how many a lap has. With a
    configured course each must agree with it; with ``from_file`` they must agree with each other,
    and the course has that many gates (the configured one's, when it has as many). Raises
    InputFileError naming the file, the lap and the counts: nothing is replayed half.
    """
    if not specs:
        raise InputFileError("replay", "no files given")
    offsets = [spec.offset_s for spec in specs]
    kinds = [_kind(spec.path) for spec in specs]
    strangers: dict[str, dict[str, Any]] = {}
    owners: list[str] = []
    for spec, kind in zip(specs, kinds, strict=True):
        rider, name = rider_of(spec, riders) if kind != "freelap" else ("", "")
        if kind != "freelap" and not any(r.id == rider for r in riders):
            strangers[rider] = {"id": rider, "name": name}
        owners.append(rider)

    def read(i: int) -> Recording:
        spec, kind, rider = specs[i], kinds[i], owners[i]
        if kind == "freelap":
            from gateway.readers.freelap import read_freelap

            return read_freelap(spec.path, gates)
        if kind == "fit":
            return _read_fit(spec, rider, gates)
        from gateway.readers.axiamo import read_axiamo

        return read_axiamo(spec.path, rider, gates)

    # calamine parses a workbook without holding the GIL: a session's files are read side by side,
    # one per core. The first bad file in the order given is the one reported.
    workers = min(len(specs), os.cpu_count() or 1)
    with _cycles_uncollected():
        if workers > 1:
            with ThreadPoolExecutor(workers, thread_name_prefix="replay-read") as pool:
                recordings = list(pool.map(read, range(len(specs))))
        else:
            recordings = [read(0)]
    course = _course_of(recordings, gates, from_file)
    for r in recordings:
        if course != gates and r.build is not None:
            r.crossings = r.build(course)
    if any(r.kind == "freelap" for r in recordings):
        # The timing file is the timing system: power files' own laps are not gates.
        for r in recordings:
            if r.kind == "fit":
                r.crossings = []
    shifted = [r.shifted(offset) for r, offset in zip(recordings, offsets, strict=True)]
    return LoadedSession(shifted, list(strangers.values()), course)


def _course_of(recordings: list[Recording], gates: list[str], from_file: bool) -> list[str]:
    timed = [r for r in recordings if r.per_lap]
    if not timed:
        return gates
    if not from_file:
        for r in timed:
            if r.per_lap != len(gates):
                lap = next(lap for lap, n in sorted(r.lap_shapes.items()) if n == r.per_lap)
                raise InputFileError(r.path, f"lap {lap} has {r.per_lap} segments, but the configured course has "
                                     f"{len(gates)} (one per gate)",
                                     hint=f"configure a course of {r.per_lap} gates, or replay with --course-from-file")
        return gates
    first = timed[0]
    for r in timed[1:]:
        if r.per_lap != first.per_lap:
            lap = next(lap for lap, n in sorted(r.lap_shapes.items()) if n == r.per_lap)
            raise InputFileError(r.path, f"lap {lap} has {r.per_lap} segments, but {Path(first.path).name} has "
                                 f"{first.per_lap} a lap", hint="the files of one session must ride the same course")
    n = first.per_lap or len(gates)
    return gates if len(gates) == n else ["SF", *(f"G{i}" for i in range(1, n))]


def merged(recordings: list[Recording]) -> list[PowerSample | GateCrossing]:
    """Every event of every recording in time order (crossings before samples at the same instant)."""
    events: list[tuple[float, int, PowerSample | GateCrossing]] = []
    for r in recordings:
        events += [(c.wall_time, 0, c) for c in r.crossings]
        events += [(s.wall_time, 1, s) for s in r.samples]
    events.sort(key=lambda e: (e[0], e[1]))
    return [e[2] for e in events]
