"""One session's pipeline, built in one place for the live box and for every replay.

ingest (its own thread: batches into the spool) -> subscribers on that thread: the engine runner
(whose results go back through ingest), the page's broadcaster, counters. The engine's clock tick
runs on the same thread, so the engine is never shared between threads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from gateway.config.settings import CourseSettings, GateSettings, RiderSettings, SegmentSettings, Settings
from gateway.engine.course import Course
from gateway.engine.segments import RiderInfo, SegmentEngine
from gateway.model import SessionRecord
from gateway.pipeline.accepted import Accepted
from gateway.pipeline.ingest import Batching, Ingest
from gateway.pipeline.plausible import Plausible
from gateway.pipeline.roster import Roster
from gateway.pipeline.runner import EngineRunner
from gateway.spool.store import Spool

TICK_S = 0.5
REPLAY_BATCH = 5000


@dataclass(frozen=True)
class Described:
    """What a session's record says beside its course and riders, as whoever runs it describes it:
    ``present`` keeps only those riders (None: every rider of the pipeline)."""

    name: str | None = None
    files: Sequence[str] = ()
    tags: Mapping[str, str] | None = None
    notes: str = ""
    present: Sequence[str] | None = None
    extra: Mapping[str, Any] | None = None


@dataclass
class SessionPipeline:
    session_id: str
    course: CourseSettings
    riders: Sequence[RiderSettings]
    ingest: Ingest
    runner: EngineRunner
    clock: Callable[[], float] = time.time  # the engine's time: a replay sets its recorded time before start

    def publish(self, kind: str, *, started: float, ended: float | None = None,
                about: Described | None = None) -> None:
        """Send the session's record (through the spool, to the compacted sessions topic)."""
        about = about or Described()
        course = {**self.course.as_dict(), "id": self.course.key}
        riders = tuple({"id": r.id, "name": r.name, "squad": r.squad, "weight_kg": r.weight_kg, "ftp_w": r.ftp_w}
                       for r in self.riders if about.present is None or r.id in about.present)
        self.ingest.submit(SessionRecord(self.session_id, kind, about.name or self.session_id, started, ended,
                                         course, riders, tuple(about.files), dict(about.tags or {}), about.notes,
                                         dict(about.extra or {})))

    def update_riders(self, riders: Sequence[RiderSettings]) -> None:
        """A pairing or a profile changed: applied on the ingest thread, between two batches."""
        self.riders = tuple(riders)

        def apply() -> None:
            self.ingest.roster = Roster(riders)
            self.runner.engine.set_riders(rider_infos(riders))

        self.ingest.call(apply)

    def start(self) -> SessionPipeline:
        self.ingest.start()
        return self

    def finish(self, timeout: float = 60.0) -> None:
        """Close every open segment once all that was submitted is in, then stop (a replay's end)."""
        self.ingest.call(self.runner.flush)
        self.stop(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the ingest thread."""
        self.ingest.stop(timeout)


def engine_course(course: CourseSettings) -> Course:
    """The engine's course from the config's (the engine takes typed inputs, never the config)."""
    return Course(tuple(course.gate_ids), tuple(s.name for s in course.segments), course.debounce_s,
                  course.max_segment_s)


def rider_infos(riders: Sequence[RiderSettings]) -> dict[str, RiderInfo]:
    """What the engine knows of each rider (name, FTP, weight, squad), by id."""
    return {r.id: RiderInfo(r.id, r.name, r.ftp_w, r.weight_kg, r.squad) for r in riders}


def course_of(settings: Settings, gates: Sequence[str] | None) -> CourseSettings:
    """The configured course, or one of ``gates`` (a replay whose files bring their own course)."""
    course = settings.course
    if gates is None or list(gates) == course.gate_ids:
        return course
    # Another course than the configured one: its own id, so that it is never compared with it.
    return replace(course, id=f"{course.key}-{len(gates)}", gates=tuple(GateSettings(g) for g in gates),
                   segments=tuple(SegmentSettings(f"Segment {k}") for k in range(1, len(gates) + 1)))


def build(settings: Settings, spool: Spool, session_id: str, *, riders: Sequence[RiderSettings] | None = None,
          gates: Sequence[str] | None = None, subscribers: Sequence[Callable[[list[Accepted]], None]] = (),
          replay: bool = False) -> SessionPipeline:
    """A session's ingest and engine on ``spool``. The engine's time is ``SessionPipeline.clock``: a
    replay sets its recorded time before it starts.

    A replay's commits may be larger than the live box's (up to ``REPLAY_BATCH`` events, when that
    many are queued): at full speed a commit then holds hundreds of samples of each meter, stored
    and computed as columns (``pipeline.runs``). A commit still goes as soon as ``spool.batch_size``
    events wait, so a replay at 100 times real speed shows results as soon as before.
    """
    riders = settings.riders if riders is None else riders
    course = course_of(settings, gates)
    sp = settings.spool
    batching = Batching(sp.batch_interval_ms / 1000.0, sp.batch_size, REPLAY_BATCH if replay else None)
    ingest = Ingest(spool, Roster(riders), session_id, batching=batching,
                    plausible=Plausible.from_settings(settings.sources.plausible))
    engine = SegmentEngine(engine_course(course), rider_infos(riders), session_id,
                           np_window=settings.metrics.np_window)
    runner = EngineRunner(engine, ingest.submit, ingest.await_riders)
    ingest.subscribe(runner.on_accepted)
    for subscriber in subscribers:
        ingest.subscribe(subscriber)
    pipeline = SessionPipeline(session_id, course, riders, ingest, runner)
    ingest.every(TICK_S, lambda: runner.tick(pipeline.clock()))
    return pipeline
