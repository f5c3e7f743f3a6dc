"""How much of each segment the boxes hear: what a coach asks before putting boxes out.

A segment's coverage is the share of its seconds with power from any box, counted as the engine
counts it: a second holding a message is covered, and so are the empty seconds between two messages
at most ``max_gap_s`` apart (a missed message while the rider was still heard); a longer silence is
not.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from gateway.simulate.ride import RiderTruth, Session

MAX_GAP_S = 5.0  # the engine's DEFAULT_MAX_GAP_S: the same rule on both sides


@dataclass(frozen=True)
class Covered:
    rider_id: str
    lap: int
    segment: int
    start: float
    end: float
    coverage: float


def span_coverage(times: list[float], start: float, end: float, max_gap_s: float = MAX_GAP_S) -> float:
    """The share of the seconds of [start, end) covered by messages at ``times`` (sorted)."""
    bins = math.ceil(end - start - 1e-9)
    if bins <= 0:
        return 0.0
    inside = [t for t in times if start <= t < end]
    covered = {int(t - start) for t in inside}
    for a, b in itertools.pairwise(inside):
        if b - a <= max_gap_s:
            covered.update(range(int(a - start) + 1, int(b - start)))
    return len(covered) / bins


def rider_coverage(truth: RiderTruth, gates: int) -> list[Covered]:
    """Each segment the rider rode (between two passes), with the share of it some box heard."""
    heard = [b.t for b, boxes in zip(truth.broadcasts, truth.heard, strict=True) if boxes]
    out = []
    for i, (a, b) in enumerate(zip(truth.passes, truth.passes[1:], strict=False)):
        lap, k = divmod(i, gates)
        out.append(Covered(truth.rider.rider_id, lap + 1, k + 1, a.t, b.t, span_coverage(heard, a.t, b.t)))
    return out


def coverage_table(session: Session) -> list[tuple[int, str, str, float]]:
    """(segment, its gates, its terrain, mean coverage over riders and laps) for each segment."""
    course = session.world.course
    n = len(course.gates)
    by_segment: dict[int, list[float]] = {k: [] for k in range(1, n + 1)}
    for truth in session.riders.values():
        for c in rider_coverage(truth, n):
            by_segment[c.segment].append(c.coverage)
    return [(k, f"{course.gates[k - 1].id}-{course.gates[k % n].id}", course.terrain[k - 1],
             sum(v) / len(v) if v else 0.0) for k, v in by_segment.items()]


def format_table(rows_by_layout: dict[str, list[tuple[int, str, str, float]]]) -> str:
    """A table of coverage per segment (rows) for each layout of boxes (columns)."""
    layouts = list(rows_by_layout)
    first = rows_by_layout[layouts[0]]
    head = ["segment", "gates", "terrain", *layouts]
    lines = [head]
    for i, (k, gates, terrain, _) in enumerate(first):
        lines.append([str(k), gates, terrain, *(f"{rows_by_layout[lay][i][3]:.0%}" for lay in layouts)])
    widths = [max(len(row[c]) for row in lines) for c in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in lines)


def svg(session: Session, title: str) -> str:
    """The lap as a ring: gates, each box's range, each segment's coverage, in plain SVG (no script,
    no external font: it opens on a phone without a network)."""
    course = session.world.course
    size, cx, cy, r = 420, 210, 220, 150

    def at(metres: float, radius: float = r) -> tuple[float, float]:
        a = 2 * math.pi * (metres % course.lap_m) / course.lap_m - math.pi / 2
        return cx + radius * math.cos(a), cy + radius * math.sin(a)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size + 40}" '
             f'viewBox="0 0 {size} {size + 40}" font-family="sans-serif" font-size="14">',
             f'<text x="10" y="20" font-size="16">{_escape(title)}</text>',
             f'<circle cx="{cx}" cy="{cy}" r="{r}" fill="none" stroke="#b0b8c0" stroke-width="10"/>']
    for box in session.world.boxes:
        lo, hi = box.at_m - box.range_m, box.at_m + box.range_m
        (x0, y0), (x1, y1) = at(lo), at(hi)
        large = 1 if hi - lo > course.lap_m / 2 else 0
        parts.append(f'<path d="M{x0:.1f},{y0:.1f} A{r},{r} 0 {large} 1 {x1:.1f},{y1:.1f}" fill="none" '
                     f'stroke="#1b5e20" stroke-width="14"><title>{_escape(box.box_id)}</title></path>')
        bx, by = at(box.at_m, r + 26)
        parts.append(f'<text x="{bx:.1f}" y="{by:.1f}" text-anchor="middle">{_escape(box.box_id)}</text>')
    for gate in course.gates:
        (x0, y0), (x1, y1) = at(gate.at_m, r - 14), at(gate.at_m, r + 14)
        parts.append(f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" stroke="#14202b" '
                     f'stroke-width="3"/>')
        gx, gy = at(gate.at_m, r - 30)
        parts.append(f'<text x="{gx:.1f}" y="{gy:.1f}" text-anchor="middle">{_escape(gate.id)}</text>')
    for k, _, _, share in coverage_table(session):
        lo, hi = course.bounds(k)
        tx, ty = at((lo + hi) / 2, r - 62)
        parts.append(f'<text x="{tx:.1f}" y="{ty:.1f}" text-anchor="middle">{k}: {share:.0%}</text>')
    parts.append(f'<text x="10" y="{size + 30}">green: heard by a box; k: n% = segment k\'s share of seconds '
                 'with power</text></svg>')
    return "\n".join(parts) + "\n"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
