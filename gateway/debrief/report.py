"""The report a coach hands over: a PDF built on the box (reportlab, DejaVu Sans embedded: no
network, every European name as typed). Pages: the session and the conventions used, the matrix of each lap, the
latest segments, fatigue per rider, comparisons when the course's sessions carry tags."""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape

from gateway.config.settings import Settings
from gateway.debrief.fonts import BOLD, REGULAR, register
from gateway.debrief.view import Setups, comparison, course_tags, debrief, session_rows
from gateway.errors import NotFound
from gateway.results.store import ResultsStore

QUADRANTS = {"efficient": ("Efficient", "#2e7d32", -1, -1), "strong": ("Strong", "#f9a825", -1, 1),
             "costly": ("Costly", "#c62828", 1, 1), "easy": ("Easy", "#1565c0", 1, -1)}
INK = "#14202b"
RIDER_COLOURS = ["#6a1b9a", "#ad1457", "#00695c", "#263238", "#6d4c41", "#4527a0", "#546e7a"]


def _initials(name: str) -> str:
    words = name.split()
    return (words[0][0] + words[-1][0] if len(words) > 1 else name[:2]).upper()


def _matrix(rows: Sequence[dict[str, Any]], lap: int, colours: dict[str, str], width: float) -> Any:
    """One lap's efficiency matrix: z-scores, symmetric axes, tinted and labelled quadrants."""
    from reportlab.graphics.shapes import Circle, Drawing, Line, Rect, String
    from reportlab.lib import colors

    points = [r for r in rows if r["lap"] == lap and r.get("time_zscore") is not None
              and r.get("power_zscore") is not None]
    extent = max([2.0] + [1.15 * max(abs(r["time_zscore"]), abs(r["power_zscore"])) for r in points])
    size = width - 40
    d = Drawing(width, size + 50)
    x0, y0 = 30, 30

    def px(v: float) -> float:
        return float(x0 + (v + extent) / (2 * extent) * size)

    def py(v: float) -> float:
        return float(y0 + (v + extent) / (2 * extent) * size)

    for label, colour, sx, sy in QUADRANTS.values():
        left = px(0) if sx > 0 else x0
        bottom = py(0) if sy > 0 else y0
        tint = colors.HexColor(colour)
        d.add(Rect(left, bottom, size / 2, size / 2, fillColor=colors.Color(tint.red, tint.green, tint.blue, 0.14),
                   strokeColor=None))
        lx = left + 6 if sx < 0 else left + size / 2 - 6
        ly = bottom + size / 2 - 16 if sy > 0 else bottom + 6
        d.add(String(lx, ly, label, fontName=BOLD, fontSize=11, fillColor=colors.HexColor(INK),
                     textAnchor="start" if sx < 0 else "end"))
    d.add(Line(px(0), y0, px(0), y0 + size, strokeColor=colors.HexColor("#5b6b78")))
    d.add(Line(x0, py(0), x0 + size, py(0), strokeColor=colors.HexColor("#5b6b78")))
    d.add(Rect(x0, y0, size, size, fillColor=None, strokeColor=colors.HexColor("#9fb0bf")))
    d.add(String(x0 + size / 2, 12, "<- faster     time z-score     slower ->", fontName=REGULAR, fontSize=9,
                 textAnchor="middle"))
    d.add(String(x0 - 4, y0 + size + 8, "power z-score (up: more power)", fontName=REGULAR, fontSize=9))
    for r in points:
        cx, cy = px(r["time_zscore"]), py(r["power_zscore"])
        d.add(Circle(cx, cy, 8, fillColor=colors.HexColor(colours.get(r["rider_id"], INK)), strokeColor=colors.white))
        d.add(String(cx, cy - 3, _initials(r.get("name") or r["rider_id"]), fontName=BOLD, fontSize=7,
                     fillColor=colors.white, textAnchor="middle"))
    if not points:
        d.add(String(x0 + size / 2, y0 + size / 2, "no z-scores on this lap (fewer than two riders a segment)",
                     fontName=REGULAR, fontSize=10, textAnchor="middle"))
    return d


def _fatigue_chart(series: Sequence[dict[str, Any]], width: float) -> Any:
    """One rider's change from the first lap (percent) per segment, lap by lap."""
    from reportlab.graphics.charts.lineplots import LinePlot
    from reportlab.graphics.shapes import Drawing, String
    from reportlab.lib import colors

    d = Drawing(width, 150)
    plot = LinePlot()
    plot.x, plot.y, plot.width, plot.height = 40, 32, width - 170, 105
    plot.data = [[(lap["lap"], lap["vs_first_pct"]) for lap in s["laps"]] for s in series]
    for i, _ in enumerate(series):
        plot.lines[i].strokeColor = colors.HexColor(RIDER_COLOURS[i % len(RIDER_COLOURS)])
        plot.lines[i].strokeWidth = 1.5
    plot.xValueAxis.valueStep = 1
    d.add(plot)
    for i, s in enumerate(series):
        t = s["time_trend"]
        ci = "" if t["low_pct"] is None else f" [{t['low_pct']:+.1f}, {t['high_pct']:+.1f}]"
        text = f"{s['segment']} {s['segment_name'][:16]}: {t['per_lap_pct']:+.1f}%/lap{ci}"
        colour = colors.HexColor(RIDER_COLOURS[i % len(RIDER_COLOURS)])
        d.add(String(width - 125, 130 - 12 * i, text, fontName=REGULAR, fontSize=7, fillColor=colour))
    d.add(String(40, 4, "lap (x) against the time's change from lap 1 in % (y)", fontName=REGULAR, fontSize=8))
    return d


CONVENTIONS = (
    "NP: 30-s rolling mean, 4th-power average; window: {windows} (segment: restarted at each gate; ride: the "
    "ride-long rolling mean restricted to the segment).",
    "TSS of a segment: IF squared times the segment's duration from gate to gate in hours, times 100 (IF: the "
    "segment's NP over the FTP the coach set). A whole ride's TSS (trackside-gateway metrics) counts the seconds "
    "with power minus 29, as Garmin head units do.",
    "Population: every rider of this session on the same segment (z-scores and modified z-scores).",
    "Quadrants: x the time z-score (negative = faster), y the power z-score. Efficient: faster with less power; "
    "Strong: faster with more; Costly: slower with more; Easy: slower with less.")


class _Doc:
    """The report's story as it is written, in reportlab's flowables."""

    def __init__(self) -> None:
        from reportlab.lib.pagesizes import A4
        from reportlab.lib.styles import getSampleStyleSheet

        regular, bold = register()
        self.styles = getSampleStyleSheet()
        for style in self.styles.byName.values():
            name = getattr(style, "fontName", "")
            if name.startswith("Helvetica") or name.startswith("Times"):
                style.fontName = bold if "Bold" in name else regular
        self.page_size = A4
        self.width = A4[0] - 80
        self.story: list[Any] = []

    def para(self, text: object, style: str = "Normal") -> Any:
        # reportlab reads a Paragraph as markup: names, tags, notes and verdicts are the coach's or a
        # stranger's text, so every one is escaped (``<img src=...>`` read files, ``<b`` failed).
        from reportlab.platypus import Paragraph

        return Paragraph(escape(str(text)), self.styles[style])

    def add(self, text: object, style: str = "Normal") -> None:
        self.story.append(self.para(text, style))

    def new_page(self, heading: str) -> None:
        from reportlab.platypus import PageBreak

        self.story += [PageBreak(), self.para(heading, "Heading2")]

    def table(self, rows: list[list[Any]]) -> None:
        from reportlab.lib import colors
        from reportlab.platypus import Table, TableStyle

        t = Table(rows, repeatRows=1)
        t.setStyle(TableStyle([("FONT", (0, 0), (-1, -1), REGULAR), ("FONT", (0, 0), (-1, 0), BOLD),
                               ("FONTSIZE", (0, 0), (-1, -1), 9),
                               ("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.HexColor(INK)),
                               ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f1f4f7")]),
                               ("VALIGN", (0, 0), (-1, -1), "TOP")]))
        self.story.append(t)

    def pdf(self, title: str) -> bytes:
        from reportlab.platypus import SimpleDocTemplate

        out = io.BytesIO()
        SimpleDocTemplate(out, pagesize=self.page_size, leftMargin=40, rightMargin=40, topMargin=40, bottomMargin=40,
                          title=f"Debrief {title}", author="Trackside Gateway", creator="Trackside Gateway",
                          subject="Session debrief").build(self.story)
        return out.getvalue()


def build(store: ResultsStore, session: str, settings: Settings, *, rider: str | None = None) -> bytes:
    """The report of ``session`` (one rider's own when ``rider`` is given) as PDF bytes."""
    min_coverage = settings.metrics.min_coverage
    # Scored once: the matrices, the table and the fatigue share it.
    everyone = session_rows(store, session, min_coverage)
    if rider is not None and all(r["rider_id"] != rider for r in everyone):
        raise NotFound(f"no results of rider {rider!r} in session {session!r}", where="report",
                       hint="give a rider id that rode the session")
    rows = [r for r in everyone if rider is None or r["rider_id"] == rider]
    data = debrief(store, session, min_coverage=min_coverage, rider=rider, rows=rows)
    riders = sorted({r["rider_id"]: r.get("name") or r["rider_id"] for r in everyone}.items())
    title = data["name"] + (f": {next((n for i, n in riders if i == rider), rider)}" if rider else "")
    doc = _Doc()
    _front(doc, title, session, data, store.record(session) or {}, everyone, rider)
    colours = {rid: RIDER_COLOURS[i % len(RIDER_COLOURS)] for i, (rid, _) in enumerate(riders)}
    for lap in sorted({r["lap"] for r in everyone}):
        doc.new_page(f"Efficiency matrix, lap {lap}")
        doc.story.append(_matrix(rows, lap, colours, doc.width))
    if rider is None:
        doc.new_page("Latest segments")
        doc.table([["Rider", "Lap", "Segment", "Time (s)", "Power (W)", "W/kg", "Quadrant"]] + [
            [r.get("name") or r["rider_id"], r["lap"], _seg(r, data["segment_names"]), f"{r['duration']:.1f}",
             _fmt(r.get("power_avg"), 0), _fmt(r.get("watts_per_kg"), 2),
             QUADRANTS.get(_quadrant(r), ("-",))[0]] for r in sorted(rows, key=lambda r: -r["end"])[:30]])
    else:
        _laps(doc, rows, data["segment_names"])
    _fatigue(doc, data)
    setups = Setups(course_tags(store, session), data["comparable"], data["segment_names"])
    for tag in list(data["comparable"])[:3]:
        _comparison(doc, comparison(store, setups, tag, (None, None), rider, min_coverage), tag)
    return doc.pdf(title)


def _front(doc: _Doc, title: str, session: str, data: dict[str, Any], record: dict[str, Any],
           everyone: list[dict[str, Any]], rider: str | None) -> None:
    """The first page: the session, its tags, the conventions used, the rider profiles used."""
    from reportlab.platypus import Spacer

    started = record.get("started") or min((r["start"] for r in everyone), default=None)
    doc.add(f"Debrief: {title}", "Title")
    doc.add(f"Session {session}" + (f", {time.strftime('%d %b %Y %H:%M', time.gmtime(started))} UTC"
                                    if started else ""))
    if data["tags"]:
        doc.add("Tags: " + ", ".join(f"{k}={v}" for k, v in data["tags"].items()))
    doc.story.append(Spacer(1, 8))
    doc.add("Conventions", "Heading2")
    windows = ", ".join(sorted({r.get("np_window") or "segment" for r in everyone}))
    for line in CONVENTIONS:
        doc.add(line.format(windows=windows))
    profiles = [r for r in record.get("riders") or () if rider is None or r.get("id") == rider]
    if profiles:
        doc.add("Rider profiles used", "Heading2")
        doc.table([["Rider", "FTP (W)", "Weight (kg)", "Squad"]] + [
            [p.get("name") or p.get("id"), typed(p.get("ftp_w")), typed(p.get("weight_kg")), p.get("squad") or "-"]
            for p in profiles])


def _fatigue(doc: _Doc, data: dict[str, Any]) -> None:
    doc.new_page("Fatigue across laps")
    doc.add("Theil-Sen trend of each segment's time, percent of lap 1 per lap, with its 95 % interval in "
            "brackets (the slope's standard error from the laps' scatter; none with fewer than four laps).")
    by_rider: dict[str, list[dict[str, Any]]] = {}
    for s in data["fatigue"]["series"]:
        by_rider.setdefault(s["name"], []).append(s)
    for name, series in sorted(by_rider.items()):
        doc.add(name, "Heading3")
        doc.story.append(_fatigue_chart(series, doc.width))
    if data["fatigue"]["transitions"]:
        doc.add("Quadrant changes (both laps outside the neutral band: z-scores beyond ±0.5)", "Heading3")
        for t in data["fatigue"]["transitions"][:60]:
            doc.add(t["text"])


def _comparison(doc: _Doc, cmp: dict[str, Any], tag: str) -> None:
    doc.new_page(f"Comparison: {tag}={cmp['a']} (A) against {tag}={cmp['b']} (B)")
    doc.add(f"Model, on each segment: {cmp['model']}; a rider counts with at least {cmp['min_runs']} runs of each "
            "setup. A setup ridden only before the other, or by other riders, gets no number.")
    doc.table([["Segment", "Runs A/B", "Riders", "A vs B at equal power", "Verdict"]] + [
        [f"{s['segment']} {s['segment_name'][:16]}", f"{s['runs_a']}/{s['runs_b']}", s["riders_both"],
         "-" if s["effect_pct"] is None else f"{s['effect_pct']:+.1f} % [{s['low_pct']:+.1f}, {s['high_pct']:+.1f}]",
         doc.para(s["verdict"], "BodyText")] for s in cmp["segments"]])


def _seg(r: dict[str, Any], names: Sequence[str]) -> str:
    k = r.get("segment")
    return f"{k} {names[k - 1]}" if k and 0 < k <= len(names) else str(r["number"])


def _laps(doc: _Doc, rows: list[dict[str, Any]], names: Sequence[str]) -> None:
    """A rider's own laps, segment by segment: time as m:ss, power, W/kg, the change from lap 1."""
    from gateway.results.export import clock

    doc.new_page("Your laps")
    first = {r["segment"]: r["duration"] for r in rows if r["lap"] == min(x["lap"] for x in rows)}
    doc.table([["Lap", "Segment", "Time (m:ss)", "Power (W)", "W/kg", "vs lap 1"]] + [
        [r["lap"], _seg(r, names), clock(r["duration"]), _fmt(r.get("power_avg"), 0), _fmt(r.get("watts_per_kg"), 2),
         f"{100 * (r['duration'] / first[r['segment']] - 1):+.1f} %" if first.get(r["segment"]) else "-"]
        for r in sorted(rows, key=lambda r: (r["lap"], r["segment"] or 0))])


def typed(value: Any) -> str:
    """A number as the coach typed it: 330, not 330.0; 61.5 stays 61.5."""
    if value is None or value == "":
        return "-"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _fmt(v: Any, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _quadrant(r: dict[str, Any]) -> str:
    from gateway.engine.normalize import quadrant

    return quadrant(r.get("time_zscore"), r.get("power_zscore")) or ""
