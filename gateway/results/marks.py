"""How riders are told apart, one rule for the page and the report: each rider of a session gets a
colour, a shape and initials, the same wherever the session is shown (the page takes them from
``/api/results``; the PDF draws them). Order: the riders as the session record lists them (the roster
as used), then riders only the results name (a replay's own), in the order they first finished."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from gateway.model import SegmentResult

# Seven hues away from the quadrants' (green, yellow, red, blue), each dark then light: white
# initials read on all fourteen, each stands out from every quadrant's tint (3:1), and a hue's dark
# and light differ by 3:1, so riders of the same shape are told apart by lightness alone. The page's
# marks.js has the same lists and rule (for a rider who arrives after the page loaded).
COLOURS = ("#3c1b6b", "#5a1035", "#03352f", "#243036", "#3d2a24", "#222276", "#4d1556",
           "#9768d9", "#de4390", "#08907e", "#638595", "#a37566", "#7575d7", "#c14ed3")
SHAPES = ("circle", "square", "triangle", "diamond", "hexagon", "plus", "triangle-down")


@dataclass(frozen=True)
class Mark:
    colour: str
    shape: str
    initials: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def initials(riders: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Up to three letters a coach recognises: "Lea Müller" -> "LM"; a clash gets a digit ("LM2")."""
    out: dict[str, str] = {}
    seen: dict[str, int] = {}
    for rider_id, name in riders:
        words = (name or rider_id).split() or [rider_id]
        mark = (words[0][0] + words[-1][0] if len(words) > 1 else words[0][:2]).upper()
        seen[mark] = seen.get(mark, 0) + 1
        out[rider_id] = mark[:2] + str(seen[mark]) if seen[mark] > 1 else mark
    return out


def marks(riders: Sequence[tuple[str, str]]) -> dict[str, Mark]:
    """``riders``: (id, name) in the session's order."""
    letters = initials(riders)
    return {rider_id: Mark(*mark_for(i), letters[rider_id]) for i, (rider_id, _) in enumerate(riders)}


def mark_for(i: int) -> tuple[str, str]:
    """Rider ``i``'s colour and shape: the first fourteen differ in shape or by 3:1 in contrast;
    after that the shape moves on, so that no two riders share colour and shape before the 98th."""
    return COLOURS[i % len(COLOURS)], SHAPES[(i + i // len(COLOURS)) % len(SHAPES)]


def session_riders(record: Mapping[str, Any] | None, results: Iterable[SegmentResult | Mapping[str, Any]]
                   ) -> list[tuple[str, str]]:
    """The session's riders in mark order: the record's roster, then the results' own riders."""
    order: dict[str, str] = {}
    for rider in (record or {}).get("riders") or ():
        if isinstance(rider, Mapping) and rider.get("id") is not None:
            order.setdefault(str(rider["id"]), str(rider.get("name") or rider["id"]))
    rows: list[Mapping[str, Any]] = [r if isinstance(r, Mapping) else {"rider_id": r.rider_id, "name": r.name,
                                                                       "end": r.end} for r in results]
    for row in sorted(rows, key=lambda r: float(r.get("end") or 0.0)):
        order.setdefault(str(row["rider_id"]), str(row.get("name") or row["rider_id"]))
    return list(order.items())


def session_marks(record: Mapping[str, Any] | None,
                  results: Iterable[SegmentResult | Mapping[str, Any]]) -> dict[str, Mark]:
    return marks(session_riders(record, results))
