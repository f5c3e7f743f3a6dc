"""The report's drawings (reportlab graphics): the efficiency matrix with each rider's own mark (the
page's colour, shape and initials: ``results.marks``), a rider's fatigue lines with a marker and a
dash per segment (never colour alone), and the small marks legends are made of."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.debrief.fonts import BOLD, REGULAR
from gateway.results.marks import Mark

INK = "#14202b"
GREY = "#8a97a3"
QUADRANTS = {"efficient": ("✔ Efficient", "#2e7d32", -1, -1), "strong": ("▲ Strong", "#f9a825", -1, 1),
             "costly": ("✖ Costly", "#c62828", 1, 1), "easy": ("▼ Easy", "#1565c0", 1, -1)}
# Segments on a fatigue chart: reportlab's marker, a colour and a dash, all three different.
SEGMENT_STYLES = [("FilledCircle", "#1b4f72", None), ("FilledSquare", "#7d3c98", (5, 2)),
                  ("FilledTriangle", "#117864", (1, 2)), ("FilledDiamond", "#6e2c00", (6, 2, 1, 2)),
                  ("Circle", "#34495e", (3, 3)), ("Square", "#922b21", (8, 3)), ("Triangle", "#5b2c6f", (2, 4)),
                  ("Diamond", "#0e6251", None)]


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[float]:
    """The corners of a polygon mark (the page's marks.js ``shapePoints``, with y up)."""
    if shape == "plus":
        a, b = r * 0.95, r * 0.42
        corners = [(-b, a), (b, a), (b, b), (a, b), (a, -b), (b, -b), (b, -a), (-b, -a), (-b, -b), (-a, -b),
                   (-a, b), (-b, b)]
        return [v for x, y in corners for v in (cx + x, cy + y)]
    sides, turn = {"triangle": (3, math.pi / 2), "triangle-down": (3, -math.pi / 2), "diamond": (4, math.pi / 2),
                   "hexagon": (6, 0.0)}[shape]
    rr = r * 1.2 if sides == 3 else r
    shift = (r * 0.22 if shape == "triangle-down" else -r * 0.22) if sides == 3 else 0.0
    points: list[float] = []
    for i in range(sides):
        a = turn + 2 * math.pi * i / sides
        points += [cx + rr * math.cos(a), cy + rr * math.sin(a) + shift]
    return points


def mark_shapes(mark: Mark, cx: float, cy: float, r: float, *, hollow: bool = False) -> list[Any]:
    """A rider's mark at (cx, cy): their shape in their colour, initials in white; ``hollow`` (power
    heard for part of the segment only) as an outline with the initials in the colour, as on the page."""
    from reportlab.graphics.shapes import Circle, Polygon, Rect, String
    from reportlab.lib import colors

    colour = colors.HexColor(mark.colour)
    fill, stroke, ink = (colors.white, colour, colour) if hollow else (colour, colors.white, colors.white)
    style = {"fillColor": fill, "strokeColor": stroke, "strokeWidth": 1.6 if hollow else 0.8}
    if mark.shape == "circle":
        shape: Any = Circle(cx, cy, r, **style)
    elif mark.shape == "square":
        shape = Rect(cx - r * 0.88, cy - r * 0.88, r * 1.76, r * 1.76, **style)
    else:
        shape = Polygon(_polygon(mark.shape, cx, cy, r), **style)
    small = len(mark.initials) > 2 or mark.shape in ("triangle", "triangle-down", "diamond")
    size = r * (0.62 if small else 0.8)
    # Initials sit in a triangle's wide part so that its sides do not clip them.
    dy = {"triangle": -r * 0.5, "triangle-down": r * 0.05}.get(mark.shape, -size * 0.35)
    return [shape, String(cx, cy + dy, mark.initials, fontName=BOLD, fontSize=size, fillColor=ink,
                          textAnchor="middle")]


def mark_icon(mark: Mark, size: float = 16) -> Any:
    from reportlab.graphics.shapes import Drawing

    d = Drawing(size, size)
    for shape in mark_shapes(mark, size / 2, size / 2, size / 2 - 1):
        d.add(shape)
    return d


def matrix(points: Sequence[Mapping[str, Any]], marks: Mapping[str, Mark], width: float, *,
           context: Sequence[Mapping[str, Any]] = (), labels: bool = False) -> Any:
    """An efficiency matrix: z-scores on symmetric axes, tinted quadrants named in words; ``points``
    in their riders' marks, ``context`` (the other riders' results) as small grey dots; ``labels``
    writes each point's lap.segment beside it (a rider's own report)."""
    from reportlab.graphics.shapes import Circle, Drawing, Line, Rect, String
    from reportlab.lib import colors

    def scored(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        return [r for r in rows if r.get("time_zscore") is not None and r.get("power_zscore") is not None]

    points, context = scored(points), scored(context)
    extent = max([2.0] + [1.15 * max(abs(r["time_zscore"]), abs(r["power_zscore"])) for r in [*points, *context]])
    size = width - 40
    d = Drawing(width, size + 44)
    x0, y0 = 30, 28

    def px(v: float) -> float:
        return float(x0 + (v + extent) / (2 * extent) * size)

    def py(v: float) -> float:
        return float(y0 + (v + extent) / (2 * extent) * size)

    for label, colour, sx, sy in QUADRANTS.values():
        left, bottom = (px(0) if sx > 0 else x0), (py(0) if sy > 0 else y0)
        tint = colors.HexColor(colour)
        d.add(Rect(left, bottom, size / 2, size / 2, strokeColor=None,
                   fillColor=colors.Color(tint.red, tint.green, tint.blue, 0.13)))
        d.add(String(left + 6 if sx < 0 else left + size / 2 - 6, bottom + size / 2 - 16 if sy > 0 else bottom + 6,
                     label, fontName=BOLD, fontSize=11, fillColor=colors.HexColor(INK),
                     textAnchor="start" if sx < 0 else "end"))
    axis = colors.HexColor("#5b6b78")
    d.add(Line(px(0), y0, px(0), y0 + size, strokeColor=axis))
    d.add(Line(x0, py(0), x0 + size, py(0), strokeColor=axis))
    d.add(Rect(x0, y0, size, size, fillColor=None, strokeColor=colors.HexColor("#9fb0bf")))
    d.add(String(x0 + size / 2, 10, "<- faster     time z-score     slower ->", fontName=REGULAR, fontSize=9,
                 textAnchor="middle"))
    d.add(String(x0 - 4, y0 + size + 8, "power z-score (up: more power)", fontName=REGULAR, fontSize=9))
    for r in context:
        d.add(Circle(px(r["time_zscore"]), py(r["power_zscore"]), 2.5, fillColor=colors.HexColor(GREY),
                     strokeColor=None))
    for r in points:
        cx, cy = px(r["time_zscore"]), py(r["power_zscore"])
        mark = marks.get(r["rider_id"]) or Mark(INK, "circle", str(r["rider_id"])[:2].upper())
        for shape in mark_shapes(mark, cx, cy, 9, hollow=bool(r.get("power_partial"))):
            d.add(shape)
        if labels:
            d.add(String(cx + 11, cy + 3, str(r["number"]), fontName=REGULAR, fontSize=7,
                         fillColor=colors.HexColor(INK)))
    return d


def fatigue_chart(series: Sequence[Mapping[str, Any]], width: float) -> Any:
    """One rider's change from the first lap (percent) per segment, lap by lap: one line a segment,
    each with its own marker, dash and colour (the legend beside it: ``segment_icon``)."""
    from reportlab.graphics.charts.lineplots import LinePlot
    from reportlab.graphics.shapes import Drawing, String
    from reportlab.graphics.widgets.markers import makeMarker
    from reportlab.lib import colors

    d = Drawing(width, 150)
    plot = LinePlot()
    plot.x, plot.y, plot.width, plot.height = 44, 30, width - 60, 110
    plot.data = [[(lap["lap"], lap["vs_first_pct"]) for lap in s["laps"]] for s in series]
    for i, s in enumerate(series):
        marker, colour, dash = SEGMENT_STYLES[(s["segment"] - 1) % len(SEGMENT_STYLES)]
        plot.lines[i].strokeColor = colors.HexColor(colour)
        plot.lines[i].strokeWidth = 1.5
        plot.lines[i].strokeDashArray = dash
        plot.lines[i].symbol = makeMarker(marker, size=6, fillColor=colors.HexColor(colour),
                                          strokeColor=colors.HexColor(colour))
    laps = [lap["lap"] for s in series for lap in s["laps"]]
    plot.xValueAxis.valueMin, plot.xValueAxis.valueMax, plot.xValueAxis.valueStep = min(laps), max(laps), 1
    for axis in (plot.xValueAxis, plot.yValueAxis):
        axis.labels.fontName, axis.labels.fontSize = REGULAR, 8
    d.add(plot)
    d.add(String(44, 4, "x: lap · y: time against lap 1, % (up: slower)", fontName=REGULAR, fontSize=8))
    return d


def segment_icon(segment: int, size: float = 22) -> Any:
    """A segment's line sample with its marker, for the legend under a fatigue chart."""
    from reportlab.graphics.shapes import Drawing, Line
    from reportlab.graphics.widgets.markers import makeMarker
    from reportlab.lib import colors

    marker, colour, dash = SEGMENT_STYLES[(segment - 1) % len(SEGMENT_STYLES)]
    d = Drawing(size, 10)
    d.add(Line(0, 5, size, 5, strokeColor=colors.HexColor(colour), strokeWidth=1.5, strokeDashArray=dash))
    m = makeMarker(marker, size=6, fillColor=colors.HexColor(colour), strokeColor=colors.HexColor(colour))
    m.x, m.y = size / 2, 5
    d.add(m)
    return d
