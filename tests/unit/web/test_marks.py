"""Riders' marks (#33): one rule for the page and the report, so a rider is the same colour, shape and
initials on the phone and on paper, for the whole session."""

from __future__ import annotations

from gateway.model import SegmentResult
from gateway.results.marks import COLOURS, SHAPES, initials, session_marks


def _result(rider: str, name: str, end: float) -> SegmentResult:
    return SegmentResult("s1", rider, name, "1.1", 1, 1, end - 60, end, 60.0, "SF", "G1", 250.0, 85.0, 255.0, 1.0,
                         5.0, 4.0, 240, 1.0)


def test_the_roster_comes_first_then_riders_only_results_name_in_finishing_order() -> None:
    record = {"riders": [{"id": "r2", "name": "Lea Müller"}, {"id": "r1", "name": "Anna Keller"}]}
    results = [_result("x9", "Zoë Łukasiewicz", 300.0), _result("r1", "Anna Keller", 100.0),
               _result("x3", "Marco Rossi", 200.0)]
    marks = session_marks(record, results)
    assert list(marks) == ["r2", "r1", "x3", "x9"]
    assert [m.colour for m in marks.values()] == list(COLOURS[:4]) and [m.shape for m in marks.values()] == list(
        SHAPES[:4])
    assert marks["x9"].initials == "ZŁ" and marks["r2"].initials == "LM"
    # The same session read again (say, for the report an hour later) gives the same marks.
    assert session_marks(record, list(reversed(results))) == marks


def test_initials_that_clash_get_a_digit() -> None:
    assert initials([("a", "Lea Müller"), ("b", "Lukas Meier"), ("c", "Lara Moser"), ("d", "Jo")]) == {
        "a": "LM", "b": "LM2", "c": "LM3", "d": "JO"}


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_fourteen_riders_differ_in_shape_or_by_three_to_one_and_98_in_colour_and_shape() -> None:
    from gateway.results.marks import mark_for

    first = [mark_for(i) for i in range(14)]
    for i, (colour_a, shape_a) in enumerate(first):
        assert contrast(colour_a, "#ffffff") >= 3.9  # white initials read on every one
        for colour_b, shape_b in first[i + 1:]:
            assert shape_a != shape_b or contrast(colour_a, colour_b) >= 3, (colour_a, colour_b)
    assert len({mark_for(i) for i in range(98)}) == 98
