"""What the hub's session list shows of each session's results (how many are current, the first and
last, where the session first appears in the stream), counted again only for the sessions whose
results changed since the last call, not over the whole season each time.

Counting every current result of a season at each call took 98-113 ms on 600 000 results and grows
with the season; the page, the debrief and the analysis ask for the list on most of their requests.
Every change to a session's current results is a new ``segments`` row (a correction or a withdrawal
is one too, and marks the row it replaces in the same transaction), its ``hub_seq`` taken under the
lock every writer of segments holds until it commits (``hub.writer.SEGMENT_LOCK``): so rows appear in
``hub_seq`` order, and those above the highest already counted name the sessions to count again.
Counting a session again is idempotent, so a row committed between the two queries is at worst
counted twice over, never missed. Once every ``FULL_EVERY_S`` the whole season is counted again,
which also forgets the results an operator deleted by hand."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

FULL_EVERY_S = 300.0
COUNT = ('SELECT session_id, count(*), min("end"), max("end"), min(hub_seq) FROM segments_current {} '
         "GROUP BY session_id")

Rows = Callable[..., list[Any]]


class SessionCounts:
    """Per session: (current results, first end, last end, first hub_seq); ``rows(query, params)``
    runs a query on the hub's database, ``last_seq()`` gives the highest ``hub_seq`` written."""

    def __init__(self, rows: Rows, last_seq: Callable[[], int]) -> None:
        self._rows = rows
        self._last_seq = last_seq
        self._counts: dict[str, tuple[int, float, float, int]] = {}
        self._seen = 0  # the highest hub_seq counted
        self._full_at = -math.inf
        self._lock = threading.Lock()  # one count at a time: the page's other requests wait for it

    def current(self) -> dict[str, tuple[int, float, float, int]]:
        with self._lock:
            if time.monotonic() - self._full_at >= FULL_EVERY_S:
                self._count_all()
            else:
                self._count_changed()
            return dict(self._counts)

    def _count_all(self) -> None:
        # The highest hub_seq first: a row committed after it is counted now and again next time.
        top = self._last_seq()
        self._counts = _by_session(self._rows(COUNT.format("")))
        self._seen, self._full_at = top, time.monotonic()

    def _count_changed(self) -> None:
        changed = self._rows("SELECT session_id, max(hub_seq) FROM segments WHERE hub_seq > %s GROUP BY session_id",
                             (self._seen,))
        if not changed:
            return
        sessions = [row[0] for row in changed]
        fresh = _by_session(self._rows(COUNT.format("WHERE session_id = ANY(%s)"), (sessions,)))
        for session in sessions:  # a session whose every result was withdrawn leaves the list
            self._counts.pop(session, None)
        self._counts.update(fresh)
        self._seen = max(self._seen, *(int(row[1]) for row in changed))


def _by_session(rows: Sequence[Any]) -> dict[str, tuple[int, float, float, int]]:
    return {r[0]: (int(r[1]), r[2], r[3], int(r[4])) for r in rows}
