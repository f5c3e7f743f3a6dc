"""The report a coach hands over: a PDF built on the box (reportlab, DejaVu Sans embedded: no
network, every European name as typed). Two kinds:

- a rider's own (``rider``): one or two pages: plain words first (where time was lost, whether power
  fell or something else did), their laps as m:ss with W, W/kg and the change from lap 1, their
  segments on the matrix in the mark the page gives them, their laps' trend, the conventions last;
- the squad's: plain words, the lap grid of each segment, the matrix of each lap that has one (a
  legend with every rider's mark and full name), fatigue per rider (a marker and a dash per
  segment), quadrant changes, equipment comparisons, the conventions last.

Nothing is drawn empty: a lap with fewer than two riders a segment has no matrix, a one-lap session
no fatigue charts; headings stay with what they head (no name alone at a page's foot)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from gateway.config.settings import Settings
from gateway.debrief import charts, words
from gateway.debrief.fonts import BOLD, REGULAR, register
from gateway.debrief.view import Setups, comparison, course_tags, debrief, session_rows
from gateway.errors import NotFound
from gateway.results.export import clock, when
from gateway.results.marks import Mark, session_marks
from gateway.results.store import ResultsStore

INK = charts.INK
CONVENTIONS = (
    "NP: 30-s rolling mean, 4th-power average; window: {windows} (segment: restarted at each gate; ride: the "
    "ride-long rolling mean restricted to the segment).",
    "TSS of a segment: IF squared times the segment's duration from gate to gate in hours, times 100 (IF: the "
    "segment's NP over the FTP the coach set). A whole ride's TSS (trackside-gateway metrics) counts the seconds "
    "with power minus 29, as Garmin head units do.",
    "Population: every rider of this session on the same segment (z-scores and modified z-scores). A result whose "
    "power was heard for less than {coverage:.0f} % of the segment is drawn hollow and left out of the power "
    "z-scores.",
    "Quadrants: x the time z-score (negative = faster), y the power z-score. Efficient: faster with less power; "
    "Strong: faster with more; Costly: slower with more; Easy: slower with less.",
    "Time lost split: the segment's power-time slope across the squad's laps says how much of a lap's loss its "
    "power change explains; the rest is line, technique, traffic or fatigue beyond power.")


@dataclass(frozen=True)
class _Session:
    """What both kinds of report read: the session's scored rows, debrief, record and marks."""

    id: str
    everyone: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    data: dict[str, Any]
    record: dict[str, Any]
    marks: dict[str, Mark]
    min_coverage: float


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

    def heading(self, text: str, style: str = "Heading2") -> Any:
        return self.para(text, style)

    def keep(self, *flowables: Any) -> None:
        """Flowables that stay on one page together (a heading with what it heads)."""
        from reportlab.platypus import KeepTogether

        self.story.append(KeepTogether(list(flowables)))

    def table(self, rows: list[list[Any]], *, widths: Sequence[float] | None = None, size: float = 9) -> Any:
        from reportlab.lib import colors
        from reportlab.platypus import Table, TableStyle

        t = Table(rows, repeatRows=1, colWidths=widths)
        t.setStyle(TableStyle([("FONT", (0, 0), (-1, -1), REGULAR), ("FONT", (0, 0), (-1, 0), BOLD),
                               ("FONTSIZE", (0, 0), (-1, -1), size), ("LEADING", (0, 0), (-1, -1), size + 2),
                               ("TOPPADDING", (0, 0), (-1, -1), 1.5), ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
                               ("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.HexColor(INK)),
                               ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f1f4f7")]),
                               ("VALIGN", (0, 0), (-1, -1), "MIDDLE")]))
        return t

    def pdf(self, title: str) -> bytes:
        from reportlab.platypus import SimpleDocTemplate

        def footer(canvas: Any, doc: Any) -> None:
            canvas.saveState()
            canvas.setFont(REGULAR, 8)
            canvas.drawString(40, 22, f"{title} · page {doc.page}")
            canvas.restoreState()

        out = io.BytesIO()
        SimpleDocTemplate(out, pagesize=self.page_size, leftMargin=40, rightMargin=40, topMargin=36, bottomMargin=40,
                          title=title, author="Trackside Gateway", creator="Trackside Gateway",
                          subject="Session debrief").build(self.story, onFirstPage=footer, onLaterPages=footer)
        return out.getvalue()


def build(store: ResultsStore, session: str, settings: Settings, *, rider: str | None = None) -> bytes:
    """The report of ``session`` (one rider's own when ``rider`` is given) as PDF bytes."""
    min_coverage = settings.metrics.min_coverage
    everyone = session_rows(store, session, min_coverage)  # scored once: every part shares it
    if rider is not None and all(r["rider_id"] != rider for r in everyone):
        raise NotFound(f"no results of rider {rider!r} in session {session!r}", where="report",
                       hint="give a rider id that rode the session")
    rows = [r for r in everyone if rider is None or r["rider_id"] == rider]
    record = store.record(session) or {}
    s = _Session(session, everyone, rows, debrief(store, session, min_coverage=min_coverage, rider=rider, rows=rows),
                 record, session_marks(record, everyone), min_coverage)
    doc = _Doc()
    if rider is None:
        title = f"Debrief {s.data['name']}"
        _squad(doc, s)
        setups = Setups(course_tags(store, session), s.data["comparable"], s.data["segment_names"])
        for tag in list(s.data["comparable"])[:3]:
            _comparison(doc, comparison(store, setups, tag, (None, None), None, min_coverage), tag)
    else:
        title = f"{s.data['name']} - {_name(s, rider)}"
        _rider(doc, s, rider)
    _conventions(doc, s)
    return doc.pdf(title)


def _name(s: _Session, rider: str) -> str:
    profile: dict[str, Any] = next((p for p in s.record.get("riders") or () if p.get("id") == rider), {})
    return str(profile.get("name") or next((r.get("name") for r in s.rows if r.get("name")), None) or rider)


def _when(s: _Session) -> str:
    started = when(s.record.get("started") or min((r["start"] for r in s.everyone), default=None))
    return "" if started is None else f"{started:%d %b %Y, %H:%M} (UTC{started:%z})".replace("UTC+0000", "UTC")


def _rider(doc: _Doc, s: _Session, rider: str) -> None:
    """A rider's own report: words, laps, their points on the matrix, their trend."""
    doc.add(_name(s, rider), "Title")
    doc.add(" · ".join(p for p in (s.data["name"], _when(s)) if p))
    profile = next((p for p in s.record.get("riders") or () if p.get("id") == rider), None)
    if profile:
        doc.add(f"FTP {typed(profile.get('ftp_w'))} W, weight {typed(profile.get('weight_kg'))} kg, as the coach "
                "set them for this session.")
    series = [x for x in s.data["fatigue"]["series"] if x["rider_id"] == rider]
    doc.add("In plain words", "Heading2")
    for sentence in words.rider(series, s.rows):
        doc.add(sentence, "Bullet")
    doc.keep(doc.heading("Your laps"), _laps(doc, s.rows, s.data["segment_names"]))
    # Side by side on the second page: the matrix and the laps' trend, the conventions under them.
    left, right = [], []
    if any(r.get("time_zscore") is not None for r in s.rows):
        mark = s.marks.get(rider) or Mark(INK, "circle", rider[:2].upper())
        others = [r for r in s.everyone if r["rider_id"] != rider]
        left = [doc.heading("Your segments on the matrix", "Heading3"),
                _plain([[charts.mark_icon(mark, 14), doc.para("each segment, numbered lap.segment; grey dots: the "
                                                               "other riders", "BodyText")]], [20, doc.width / 2 - 30]),
                charts.matrix(s.rows, s.marks, doc.width / 2 - 10, context=others, labels=True)]
    if len({lap["lap"] for x in series for lap in x["laps"]}) > 1:
        right = [doc.heading("Across the laps", "Heading3"), charts.fatigue_chart(series, doc.width / 2 - 10),
                 _segment_legend(doc, series, doc.width / 2 - 10)]
    if left or right:
        side = _plain([[left or right, right if left else ""]], [doc.width / 2] * 2)
        side.setStyle([("VALIGN", (0, 0), (-1, -1), "TOP")])
        doc.story.append(side)


def _plain(rows: list[list[Any]], widths: Sequence[float]) -> Any:
    """A table used for layout: no stripes, no rules, no padding at its sides."""
    from reportlab.platypus import Table, TableStyle

    return Table(rows, colWidths=widths, style=TableStyle([
        ("FONT", (0, 0), (-1, -1), REGULAR), ("LEFTPADDING", (0, 0), (-1, -1), 0), ("TOPPADDING", (0, 0), (-1, -1), 1),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 1), ("VALIGN", (0, 0), (-1, -1), "MIDDLE")]))


def _laps(doc: _Doc, rows: list[dict[str, Any]], names: Sequence[str]) -> Any:
    """A rider's laps, segment by segment: time as m:ss, power, W/kg, the change from lap 1."""
    first_lap = min(x["lap"] for x in rows)
    first = {r["segment"]: r["duration"] for r in rows if r["lap"] == first_lap}
    return doc.table([["Lap", "Segment", "Time (m:ss)", "Power (W)", "W/kg", f"vs lap {first_lap}", "Matrix"]] + [
        [r["lap"], _seg(r, names), clock(r["duration"]), _fmt(r.get("power_avg"), 0), _fmt(r.get("watts_per_kg"), 2),
         f"{100 * (r['duration'] / first[r['segment']] - 1):+.1f} %"
         if first.get(r["segment"]) and r["lap"] != first_lap else "-",
         _quadrant_word(r)]
        for r in sorted(rows, key=lambda r: (r["lap"], r["segment"] or 0))], size=8.5)


def _squad(doc: _Doc, s: _Session) -> None:
    """The squad's report: words, profiles, lap grids, matrices, fatigue, quadrant changes."""
    doc.add(f"Debrief: {s.data['name']}", "Title")
    doc.add(" · ".join(p for p in (_when(s), f"session {s.id}") if p))
    if s.data["tags"]:
        doc.add("Tags: " + ", ".join(f"{k}={v}" for k, v in s.data["tags"].items()))
    doc.add("In plain words", "Heading2")
    for sentence in words.squad(s.data["fatigue"]):
        doc.add(sentence, "Bullet")
    profiles = s.record.get("riders") or ()
    if profiles:
        doc.keep(doc.heading("Rider profiles used"), doc.table([["Rider", "FTP (W)", "Weight (kg)", "Squad"]] + [
            [p.get("name") or p.get("id"), typed(p.get("ftp_w")), typed(p.get("weight_kg")), p.get("squad") or "-"]
            for p in profiles]))
    _grids(doc, s)
    laps = sorted({r["lap"] for r in s.everyone})
    drawn = [lap for lap in laps if any(r["lap"] == lap and r.get("time_zscore") is not None for r in s.everyone)]
    for lap in drawn:
        points = [r for r in s.everyone if r["lap"] == lap]
        doc.keep(doc.heading(f"Efficiency matrix, lap {lap}"), _marks_legend(doc, s, points),
                 charts.matrix(points, s.marks, doc.width * 0.5))
    if not drawn:
        doc.add("No efficiency matrix: fewer than two riders on each segment of each lap.")
    if len(laps) > 1:
        _fatigue(doc, s)


def _grids(doc: _Doc, s: _Session) -> None:
    """Per segment, a rider x lap grid: time as m:ss and average power."""
    names = s.data["segment_names"]
    laps = sorted({r["lap"] for r in s.everyone})
    riders = list(s.marks)
    for seg in sorted({r["segment"] for r in s.everyone if r.get("segment")}):
        cells = {(r["rider_id"], r["lap"]): r for r in s.everyone if r.get("segment") == seg}
        body = [[_rider_cell(doc, s, rid)] + [_cell(cells.get((rid, lap))) for lap in laps]
                for rid in riders if any((rid, lap) in cells for lap in laps)]
        width = (doc.width - 130) / max(len(laps), 1)
        title = f"{seg} {names[seg - 1]}" if 0 < seg <= len(names) else f"segment {seg}"
        doc.keep(doc.heading(f"Lap times: {title}", "Heading3"),
                 doc.table([["Rider", *[f"Lap {lap}" for lap in laps]], *body], widths=[130] + [width] * len(laps),
                           size=8.5))


def _rider_cell(doc: _Doc, s: _Session, rider: str) -> Any:
    mark = s.marks.get(rider)
    name = next((r.get("name") for r in s.everyone if r["rider_id"] == rider and r.get("name")), rider)
    if mark is None:
        return name
    return _plain([[charts.mark_icon(mark, 12), doc.para(name, "BodyText")]], [16, 110])


def _cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return "-"
    power = r.get("power_avg")
    return clock(r["duration"]) + ("" if power is None else f"  {power:.0f} W")


def _marks_legend(doc: _Doc, s: _Session, rows: Sequence[dict[str, Any]]) -> Any:
    """Every rider of ``rows`` with their mark and full name, three to a row (names wrap, never cut)."""
    shown = [rid for rid in s.marks if any(r["rider_id"] == rid for r in rows)]
    cells = [[charts.mark_icon(s.marks[rid], 14), doc.para(_name(s, rid), "BodyText")] for rid in shown]
    grid = [[c for pair in cells[i:i + 3] for c in pair] for i in range(0, len(cells), 3)]
    grid[-1] += [""] * (6 - len(grid[-1]))
    return _plain(grid, [20, doc.width / 3 - 20] * 3)


def _segment_legend(doc: _Doc, series: Sequence[dict[str, Any]], width: float) -> Any:
    """Under a fatigue chart: each segment's line sample, its name and its trend, in full."""
    rows = []
    for x in series:
        t = x["time_trend"]
        ci = "" if t["low_pct"] is None else f" (95 % interval {t['low_pct']:+.1f} to {t['high_pct']:+.1f})"
        rows.append([charts.segment_icon(x["segment"]),
                     doc.para(f"{x['segment']} {x['segment_name']}: {t['per_lap_pct']:+.1f} % a lap{ci}", "BodyText")])
    return _plain(rows, [30, width - 30])


def _fatigue(doc: _Doc, s: _Session) -> None:
    doc.keep(doc.heading("Fatigue across laps"),
             doc.para("Theil-Sen trend of each segment's time, percent of lap 1 per lap, with its 95 % interval (the "
                      "slope's standard error from the laps' scatter; none with fewer than four laps)."))
    by_rider: dict[str, list[dict[str, Any]]] = {}
    for x in s.data["fatigue"]["series"]:
        by_rider.setdefault(x["rider_id"], []).append(x)
    for rid in [r for r in s.marks if r in by_rider]:
        series = by_rider[rid]
        if len({lap["lap"] for x in series for lap in x["laps"]}) < 2:
            continue  # one lap of this rider: no line to draw
        doc.keep(doc.heading(_name(s, rid), "Heading3"), charts.fatigue_chart(series, doc.width * 0.8),
                 _segment_legend(doc, series, doc.width))
    changes = s.data["fatigue"]["transitions"]
    if changes:
        doc.keep(doc.heading("Quadrant changes (both laps outside the neutral band: z-scores beyond ±0.5)",
                             "Heading3"), *[doc.para(t["text"]) for t in changes[:5]])
        for t in changes[5:60]:
            doc.add(t["text"])


def _conventions(doc: _Doc, s: _Session) -> None:
    windows = ", ".join(sorted({r.get("np_window") or "segment" for r in s.everyone}))
    small = doc.styles["BodyText"].clone("Small", fontSize=7.5, leading=9.5)
    doc.styles.add(small)
    doc.keep(doc.heading("Conventions", "Heading3"),
             *[doc.para(line.format(windows=windows, coverage=100 * s.min_coverage), "Small")
               for line in CONVENTIONS])


def _comparison(doc: _Doc, cmp: dict[str, Any], tag: str) -> None:
    doc.keep(doc.heading(f"Comparison: {tag}={cmp['a']} (A) against {tag}={cmp['b']} (B)"), doc.para(
        f"Model, on each segment: {cmp['model']}; a rider counts with at least {cmp['min_runs']} runs of each "
        "setup. A setup ridden only before the other, or by other riders, gets no number."))
    doc.story.append(doc.table([["Segment", "Runs A/B", "Riders", "A vs B at equal power", "Verdict"]] + [
        [doc.para(f"{s['segment']} {s['segment_name']}", "BodyText"), f"{s['runs_a']}/{s['runs_b']}", s["riders_both"],
         "-" if s["effect_pct"] is None else f"{s['effect_pct']:+.1f} % [{s['low_pct']:+.1f}, {s['high_pct']:+.1f}]",
         doc.para(s["verdict"], "BodyText")] for s in cmp["segments"]]))


def _seg(r: dict[str, Any], names: Sequence[str]) -> str:
    k = r.get("segment")
    return f"{k} {names[k - 1]}" if k and 0 < k <= len(names) else str(r["number"])


def typed(value: Any) -> str:
    """A number as the coach typed it: 330, not 330.0; 61.5 stays 61.5."""
    if value is None or value == "":
        return "-"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _fmt(v: Any, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _quadrant_word(r: dict[str, Any]) -> str:
    """The quadrant as the page says it: none before z-scores, "≈ Average" in the neutral band."""
    from gateway.debrief.fatigue import quadrant

    if r.get("time_zscore") is None or r.get("power_zscore") is None:
        return "-"
    return charts.QUADRANTS[q][0] if (q := quadrant(r)) else "≈ Average"
