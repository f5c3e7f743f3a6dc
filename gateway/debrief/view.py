"""The debrief of a session, read through the results-store interface: the same code serves the box
(its sessions) and the hub (every box's history)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.debrief.compare import compare, rider_key, tag_values
from gateway.debrief.fatigue import fatigue
from gateway.errors import NotFound
from gateway.results.rows import annotate
from gateway.results.store import ResultsStore


@dataclass(frozen=True)
class Setups:
    """What comparisons run over on a course: each session's tags, the values each tag takes in two
    sessions or more, and the course's segment names."""

    tags: dict[str, dict[str, str]]
    values: dict[str, list[str]]
    names: list[str]


def segment_names(course: dict[str, Any] | None) -> list[str]:
    if not course:
        return []
    segments = course.get("segments") or []
    if segments:
        return [str(s.get("name") or f"segment {i + 1}") if isinstance(s, dict) else str(s)
                for i, s in enumerate(segments)]
    return [f"segment {i + 1}" for i in range(len(course.get("gates") or []))]


def session_rows(store: ResultsStore, session: str, min_coverage: float, rider: str | None = None
                 ) -> list[dict[str, Any]]:
    """A session's results scored against the session (as the matrix shows them); one rider's only
    when ``rider`` is given (their z-scores still against everyone)."""
    results = store.results([session])
    if not results:
        raise NotFound(f"no results for session {session!r}", where="debrief")
    rows = annotate(results, results, min_coverage)
    return [r for r in rows if rider is None or r["rider_id"] == rider]


def course_tags(store: ResultsStore, session: str) -> dict[str, dict[str, str]]:
    """The tags of every session ridden on this session's course (comparisons need the same terrain)."""
    course = store.course_of(session)
    out = {}
    for s in store.sessions():
        if store.course_of(s["session"]) != course:
            continue
        record = store.record(s["session"]) or {}
        tags = {str(k): str(v) for k, v in (record.get("tags") or {}).items()}
        out[s["session"]] = tags
        # A planned test's run: each rider on their own setup (``rider_tags``), over the session's tags.
        for rider, own in (record.get("rider_tags") or {}).items():
            out[rider_key(s["session"], str(rider))] = {**tags, **{str(k): str(v) for k, v in own.items()}}
    return out


def debrief(store: ResultsStore, session: str, *, min_coverage: float, rider: str | None = None,
            tag: str | None = None, pair: tuple[str | None, str | None] = (None, None),
            rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """``rows``: the session's scored results when the caller has them already (the report);
    ``min_coverage``: ``metrics.min_coverage``; ``pair``: the two values of ``tag`` to compare."""
    record = store.record(session) or {}
    names = segment_names(store.course(session) or record.get("course"))
    rows = session_rows(store, session, min_coverage, rider) if rows is None else rows
    tags = course_tags(store, session)
    values = {k: v for k, v in tag_values(tags).items() if len(v) >= 2}
    out: dict[str, Any] = {"session": session, "name": record.get("name") or session, "tags": record.get("tags") or {},
                           "segment_names": names, "rider": rider, "fatigue": fatigue(rows, names),
                           "comparable": values, "comparison": None}
    if tag:
        out["comparison"] = comparison(store, Setups(tags, values, names), tag, pair, rider, min_coverage)
    return out


def comparison(store: ResultsStore, setups: Setups, tag: str, pair: tuple[str | None, str | None],
               rider: str | None, min_coverage: float) -> dict[str, Any]:
    """Setup A against B (``pair``) of ``tag`` over the course's sessions (the first two values by default)."""
    tags, names = setups.tags, setups.names
    choices = setups.values.get(tag) or []
    a = pair[0] or (choices[0] if choices else None)
    b = pair[1] or (choices[1] if len(choices) > 1 else None)
    if a is None or b is None:
        raise NotFound(f"no two values of tag {tag!r} on this course to compare", where="debrief",
                       hint="tag sessions when you start them, e.g. tyres=1.6bar")
    with_tag = [s for s, t in tags.items() if t.get(tag) in (a, b)]
    pool = annotate(store.results(sorted(with_tag)), [], min_coverage)
    return compare([r for r in pool if rider is None or r["rider_id"] == rider], tags, tag, a, b, names)
