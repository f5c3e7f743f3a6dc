"""A replay session from files: one power file per rider (FIT or Axiamo Excel) and timing files.

A file is given as ``PATH`` or ``RIDER=PATH`` (RIDER: a roster id or name), and optionally
``PATH@+12.5`` to shift its clock by that many seconds (a head unit whose clock was off). Without
``RIDER=``, the rider is named by the file name: ``anna.xlsx``, ``r01_intervals.fit``. FIT laps
become gate crossings only when the session has no timing file. Every file is read completely
before anything is replayed, so a bad file stops the replay before a single event is ingested.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

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
    return sorted(str(p) for p in root.iterdir() if p.name.endswith(".xlsx"))  # type: ignore[attr-defined]


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


def rider_of(spec: FileSpec, riders: list[dict[str, Any]]) -> tuple[str, str]:
    """(rider id, name): from ``RIDER=``, else from the file name; a stranger gets an id from the name."""
    wanted = spec.rider or Path(spec.path).stem
    for r in riders:
        if wanted.lower() in (r["id"].lower(), r["name"].lower()):
            return r["id"], r["name"]
    if spec.rider is None:
        stem = Path(spec.path).stem.lower()
        for r in riders:
            if re.match(rf"^({re.escape(r['id'].lower())}|{re.escape(r['name'].lower())})[-_ .]", stem):
                return r["id"], r["name"]
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
    return Recording(spec.path, "fit", rider, samples, crossings_from_boundaries(source, rider, gates, boundaries))


def load_session(specs: list[FileSpec], gates: list[str], riders: list[dict[str, Any]]
                 ) -> tuple[list[Recording], list[dict[str, Any]]]:
    """Every file read and checked; returns the recordings and the riders they add to the roster."""
    if not specs:
        raise InputFileError("replay", "no files given")
    recordings: list[Recording] = []
    strangers: dict[str, dict[str, Any]] = {}
    for spec in specs:
        kind = _kind(spec.path)
        if kind == "freelap":
            from gateway.readers.freelap import read_freelap

            recordings.append(read_freelap(spec.path, gates).shifted(spec.offset_s))
            continue
        rider, name = rider_of(spec, riders)
        if not any(r["id"] == rider for r in riders):
            strangers[rider] = {"id": rider, "name": name}
        if kind == "fit":
            recordings.append(_read_fit(spec, rider, gates).shifted(spec.offset_s))
        else:
            from gateway.readers.axiamo import read_axiamo

            recordings.append(read_axiamo(spec.path, rider, gates).shifted(spec.offset_s))
    if any(r.kind == "freelap" for r in recordings):
        # The timing file is the timing system: power files' own laps are not gates.
        for r in recordings:
            if r.kind == "fit":
                r.crossings = []
    return recordings, list(strangers.values())


def merged(recordings: list[Recording]) -> list[PowerSample | GateCrossing]:
    """Every event of every recording in time order (crossings before samples at the same instant)."""
    events: list[tuple[float, int, PowerSample | GateCrossing]] = []
    for r in recordings:
        events += [(c.wall_time, 0, c) for c in r.crossings]
        events += [(s.wall_time, 1, s) for s in r.samples]
    events.sort(key=lambda e: (e[0], e[1]))
    return [e[2] for e in events]
