"""Completing a stored session with riders' files, whatever stores it (the box's spool, the hub's
database): what the session knows (``SessionData``), and for each file what becomes of it, the
samples it adds and every result that changes (``plan``). The store reads and writes; nothing here
does.

A file is added only when its rider is clear (or the coach chose) and its clock is aligned with
confidence (or the coach gave the offset); otherwise nothing of it changes and the answer says what
is needed. The same file twice changes nothing (its digest is in the session's record).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from gateway.complete.align import MAX_OFFSET_S, NONE, Alignment, by_crossings
from gateway.complete.fill import fill
from gateway.complete.headunit import HeadUnitFile, read_head_unit
from gateway.complete.whose import Candidate, RiderEvidence, whose
from gateway.engine.course import course_from_record
from gateway.engine.segments import RiderInfo, SegmentEngine, same
from gateway.errors import InputFileError
from gateway.model import GateCrossing, PowerSample, SegmentResult, current_results

RECORD_FIELDS = ("kind", "name", "started", "ended", "course", "riders", "files", "tags", "notes")
DAY_SLACK_S = MAX_OFFSET_S  # a file must overlap the session, give or take the clocks' difference


@dataclass
class Outcome:
    """What became of one file: ``added``, ``already added``, ``choose`` (the coach must pick the
    rider or give the offset: ``candidates``), or ``refused`` (``message`` says why and what to do)."""

    name: str
    status: str
    message: str
    rider_id: str | None = None
    alignment: Alignment | None = None
    added: int = 0
    kept_live_s: int = 0
    candidates: list[dict[str, Any]] = field(default_factory=list)
    digest: str = ""

    def as_dict(self) -> dict[str, Any]:
        a = self.alignment
        return {"name": self.name, "status": self.status, "message": self.message, "rider_id": self.rider_id,
                "offset_s": None if a is None else round(a.offset_s, 3),
                "drift_ppm": None if a is None else round(a.drift_ppm, 1),
                "alignment": None if a is None else a.method,
                "confidence": None if a is None or math.isinf(a.confidence) else round(a.confidence, 1),
                "samples_added": self.added,
                "seconds_heard_live": self.kept_live_s, "candidates": self.candidates}


@dataclass
class SessionData:
    """A stored session as completing it needs: its record, its power samples and crossings named by
    rider (``PowerSample.sensor`` and ``GateCrossing.transponder`` are the rider's id), and the
    results it has now."""

    session_id: str
    record: dict[str, Any]
    events: list[PowerSample | GateCrossing]
    results: list[SegmentResult]
    riders: dict[str, RiderEvidence] = field(init=False)
    crossings: dict[str, list[float]] = field(init=False)
    span: tuple[float, float] = field(init=False)

    def __post_init__(self) -> None:
        live: dict[str, list[tuple[float, float]]] = defaultdict(list)
        crossings: dict[str, list[float]] = defaultdict(list)
        for e in self.events:
            if isinstance(e, PowerSample) and not e.source.startswith("file:"):
                live[e.sensor].append((e.wall_time, e.power))
            elif isinstance(e, GateCrossing):
                crossings[e.transponder].append(e.wall_time)
        paired = _paired(self.record)
        self.riders = {}
        for r in self.record.get("riders") or ():
            rid = str(r["id"])
            heard = np.array(sorted(live.get(rid, ())), dtype=np.float64).reshape(-1, 2)
            self.riders[rid] = RiderEvidence(rid, str(r.get("name") or rid), frozenset(paired.get(rid, ())),
                                             heard[:, 0], heard[:, 1])
        self.crossings = {k: sorted(v) for k, v in crossings.items()}
        times = [e.wall_time for e in self.events] or [float(self.record.get("started") or 0.0)]
        self.span = (min(times), max(times))


@dataclass
class Plan:
    outcomes: list[Outcome]
    samples: list[PowerSample]  # to add, by rider (``sensor``), on the session's clock
    corrections: list[SegmentResult]  # withdrawals (flag ``withdrawn``) then new or corrected results
    record: dict[str, Any]  # the session's record with the files added listed (``files_added``)


def plan(session: SessionData, files: Sequence[tuple[Path, str]], *, who: str, np_window: str,
         choices: Mapping[str, str] | None = None, offsets: Mapping[str, float] | None = None) -> Plan:
    """What adding ``files`` (path, name shown) to the session does; ``choices``: file name -> the
    rider the coach picked; ``offsets``: file name -> seconds from the file's clock to the session's."""
    done = {f.get("digest") for f in session.record.get("files_added") or ()}
    outcomes, samples, entries = [], [], []
    for path, name in files:
        outcome, added = _one(session, path, name, done, (choices or {}).get(name), (offsets or {}).get(name))
        outcomes.append(outcome)
        if outcome.status == "added":
            samples += added
            entry = {**outcome.as_dict(), "digest": outcome.digest, "added_by": who, "at": round(time.time(), 3)}
            entry.pop("candidates")
            entries.append(entry)
            done.add(outcome.digest)
    record = dict(session.record)
    corrections: list[SegmentResult] = []
    if samples:
        record["files_added"] = [*(record.get("files_added") or ()), *entries]
        corrections = _corrections(session, samples, np_window)
    return Plan(outcomes, samples, corrections, record)


def _one(session: SessionData, path: Path, name: str, done: set[Any], choice: str | None,
             offset: float | None) -> tuple[Outcome, list[PowerSample]]:
        try:
            file = read_head_unit(path, name)
        except InputFileError as exc:
            return Outcome(name, "refused", f"{name}: {exc.message}" + (f" ({exc.hint})" if exc.hint else "")
                           + "; nothing changed"), []
        if file.digest in done:
            return Outcome(name, "already added", f"{name} is already in this session: nothing changed"), []
        lo, hi = session.span
        if file.end < lo - DAY_SLACK_S or file.start > hi + DAY_SLACK_S:
            return Outcome(name, "refused", f"{name} was recorded {_when(file.start)}-{_when(file.end)}, the "
                           f"session ran {_when(lo)}-{_when(hi)}: a file from another ride; nothing changed"), []
        candidate, outcome = _rider(session, file, choice)
        if candidate is None:
            return outcome, []
        alignment = _aligned(session, file, candidate, offset)
        if not alignment.sure:
            return Outcome(name, "choose", f"{name} is {candidate.name}'s, but its clock could not be placed on "
                           f"the boxes' with confidence ({alignment.evidence_s:.0f} s of power heard live, "
                           f"{alignment.method}): give the offset in seconds; nothing changed",
                           candidate.rider_id, alignment, candidates=[_described(candidate)]), []
        filled = fill(alignment.to_box(file.times), file.power, file.cadence,
                      session.riders[candidate.rider_id].live_t, (lo - 60.0, hi + 60.0))
        # Identified as the file's (kind ``file``): the hub's course engine merges them as one box's.
        samples = [PowerSample(f"file:{name}", candidate.rider_id, float(t), float(p),
                               None if np.isnan(c) else float(c), None, file_identity(name, float(t)))
                   for t, p, c in zip(filled.times, filled.power, filled.cadence, strict=True)]
        return Outcome(name, "added", f"{name}: {candidate.name}'s ({candidate.evidence}); clock "
                       f"{alignment.offset_s:+.2f} s ({alignment.method}), {len(samples)} samples added, "
                       f"{filled.kept_live_s} s heard live kept as heard", candidate.rider_id, alignment, len(samples),
                       filled.kept_live_s, digest=file.digest), samples

def _rider(session: SessionData, file: HeadUnitFile, choice: str | None) -> tuple[Candidate | None, Outcome]:
        riders = list(session.riders.values())
        if choice is not None:
            picked = session.riders.get(choice)
            if picked is None:
                return None, Outcome(file.name, "refused", f"{file.name}: {choice!r} did not ride this session; "
                                     "nothing changed")
            verdict = whose(file.times, file.power, file.meters, [picked])
            found = verdict.candidates[0] if verdict.candidates else None
            if found is None:
                found = Candidate(picked.rider_id, picked.name, "chosen by the coach", NONE)
            return replace(found, evidence="chosen by the coach"), Outcome(file.name, "added", "")
        verdict = whose(file.times, file.power, file.meters, riders)
        if verdict.rider is not None:
            return verdict.rider, Outcome(file.name, "added", "")
        if not verdict.candidates:
            return None, Outcome(file.name, "refused", f"{file.name}: no rider of this session fits it (its power "
                                 "matches nothing the boxes heard and its meter is paired with no one): a rider not "
                                 "in the session? Nothing changed")
        return None, Outcome(file.name, "choose", f"{file.name}: whose is it? The evidence is not clear enough to "
                             "decide without you; nothing changed", candidates=[_described(c) for c in
                                                                                verdict.candidates[:5]])

def _aligned(session: SessionData, file: HeadUnitFile, candidate: Candidate, offset: float | None) -> Alignment:
        if offset is not None:
            return Alignment(offset, 0.0, file.start, float("inf"), "given", 0.0)
        if candidate.alignment.sure:
            return candidate.alignment
        by_gates = by_crossings(file.laps, np.array(session.crossings.get(candidate.rider_id, ()), dtype=np.float64))
        return by_gates if by_gates.sure else candidate.alignment


def _corrections(session: SessionData, samples: list[PowerSample], np_window: str) -> list[SegmentResult]:
    """Every result of the session computed again with the files' samples: withdrawn + corrected
    where it changed, new where there was none."""
    infos = {str(r["id"]): RiderInfo(str(r["id"]), str(r.get("name") or r["id"]), r.get("ftp_w"),
                                     r.get("weight_kg"), r.get("squad"))
             for r in session.record.get("riders") or ()}
    engine = SegmentEngine(course_from_record(session.record), infos, session.session_id, np_window=np_window)
    computed: list[SegmentResult] = []
    power: dict[str, list[PowerSample]] = defaultdict(list)
    for e in [*session.events, *samples]:
        if isinstance(e, GateCrossing):
            computed += engine.add_crossing(e.transponder, e.gate, e.wall_time)
        else:
            power[e.sensor].append(e)
    for rider, run in power.items():
        run.sort(key=lambda s: s.wall_time)
        computed += engine.add_power_run(rider, [s.wall_time for s in run], [s.power for s in run],
                                         [np.nan if s.cadence is None else s.cadence for s in run])
    computed += engine.flush()
    stored = {(r.rider_id, r.number): r for r in session.results}
    out: list[SegmentResult] = []
    for result in current_results(computed):
        old = stored.pop((result.rider_id, result.number), None)
        if old is not None and same(old, result):
            continue
        if old is not None:
            out.append(replace(old, flags=(*old.flags, "withdrawn")))
        out.append(result)
    return out


def _paired(record: Mapping[str, Any]) -> dict[str, set[int]]:
    """Each rider's ANT+ meters in the session's pairing (the record's ``pairings``)."""
    out: dict[str, set[int]] = defaultdict(set)
    pairings = record.get("pairings") or {}
    for sensor, rider_id in pairings.items() if isinstance(pairings, Mapping) else ():
        kind, _, number = str(sensor).partition(":")
        if kind == "ant" and number.isdigit() and rider_id:
            out[str(rider_id)].add(int(number))
    return out


def _described(c: Candidate) -> dict[str, Any]:
    return {"rider_id": c.rider_id, "name": c.name, "evidence": c.evidence,
            "offset_s": round(c.alignment.offset_s, 2), "sure": c.alignment.sure}


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))


def file_identity(name: str, t: float) -> str:
    """A file sample's identity on the wire (``PowerSample.raw``): kind ``file``, the file, the time."""
    return f"file:{name[:80]}:{t:.3f}"  # within the hub's 128 characters for an id


def record_extra(record: Mapping[str, Any]) -> dict[str, Any]:
    """What a record says beside its own fields (pairings, notes on results, files added)."""
    return {k: v for k, v in record.items() if k not in RECORD_FIELDS}


def named(events: Iterable[tuple[PowerSample | GateCrossing, str]]) -> list[PowerSample | GateCrossing]:
    """Events with their rider as their sensor or transponder (what ``SessionData`` reads)."""
    out: list[PowerSample | GateCrossing] = []
    for event, rider in events:
        if isinstance(event, PowerSample):
            out.append(PowerSample(event.source, rider, event.wall_time, event.power, event.cadence, event.torque))
        else:
            out.append(GateCrossing(event.source, rider, event.gate, event.wall_time, lap=event.lap))
    return out
