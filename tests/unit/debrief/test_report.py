"""The PDF a coach hands over (#33), read back as a person would (pdftotext, pdfinfo, rendered
pages): a rider's own report in two pages for five laps with plain words first, the squad's with a
lap grid per segment, full names in legends, every page with content, nothing empty for one lap."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from harness import ARTIFACTS

from gateway import config
from gateway.debrief.report import build
from gateway.model import SegmentResult
from gateway.results.sqlite import SpoolResults
from gateway.spool.sessions import SessionMeta
from gateway.spool.store import NewEvent, Spool
from gateway.wire import segment_body

NAMES = ["Tomáš Dvořák", "Zoë Łukasiewicz", "Sigurður Ørnsson", "Jürgen Ćosić", "Anna-Maria Kälin-Oberholzer",
         "Marco Rossi"]
SEGMENTS = [("First climb", 240.0), ("Descent", 95.0), ("Second climb up the quarry road", 180.0),
            ("Technical singletrack", 130.0)]
T0 = 1_781_427_600.0


def _session(spool: Spool, laps: int, session: str = "s1") -> str:
    """Six riders; Tomáš's power falls on the second climb lap after lap and his time with it."""
    results = []
    for k in range(len(NAMES)):
        t = T0 + 20 * k
        for lap in range(1, laps + 1):
            for seg, (_name, base) in enumerate(SEGMENTS, start=1):
                # Time goes with power to the -0.5 (a climb's rule of thumb), plus a little noise.
                power = 260.0 + 9 * ((k * 5 + seg) % 7) + 6 * ((lap * 3 + k + seg) % 4)
                if k == 0 and seg == 3:
                    power = 300.0 * (1 - 0.05 * (lap - 1))
                duration = base * (1 + 0.015 * k) * (power / 280) ** -0.5 * (1 + 0.002 * ((lap + k * seg) % 3))
                results.append(SegmentResult(session, f"r{k}", NAMES[k], f"{lap}.{seg}", lap, seg, t, t + duration,
                                             duration, f"G{seg - 1}", f"G{seg % len(SEGMENTS)}", power, 85.0,
                                             power * 1.04, power / 300, duration / 36, power / 65,
                                             int(duration * 4), 1.0))
                t += duration
    record = {"name": "Hill repeats", "started": T0, "course": {"id": "demo", "segments": [
        {"name": name} for name, _ in SEGMENTS]}, "riders": [
        {"id": f"r{k}", "name": n, "ftp_w": 330.0 if k == 0 else 300, "weight_kg": 61.5 if k == 0 else 70}
        for k, n in enumerate(NAMES)]}
    spool.appender.append([NewEvent("segment", r.rider_id, r.session_id, r.end, segment_body(r)) for r in results],
                          meta=SessionMeta.record_items([(session, record)]))
    return session


def _pages(pdf: bytes, path: Path) -> list[str]:
    path.write_bytes(pdf)
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
    count = int(re.search(r"Pages:\s+(\d+)", info).group(1))  # type: ignore[union-attr]
    return [" ".join(subprocess.run(["pdftotext", "-f", str(n), "-l", str(n), str(path), "-"], capture_output=True,
                                    text=True, check=True).stdout.split()) for n in range(1, count + 1)]


def _fonts(path: Path) -> list[str]:
    """The PDF's fonts, each line ``pdffonts`` prints: every one must be embedded DejaVu Sans."""
    out = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines()[2:] if line.strip()]


def _render(path: Path, stem: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    for old in ARTIFACTS.glob(f"{stem}-*.png"):
        old.unlink()
    subprocess.run(["pdftoppm", "-png", "-r", "60", str(path), str(ARTIFACTS / stem)], check=True)


def test_a_riders_report_is_two_pages_for_five_laps_with_plain_words_first(spool: Spool, tmp_path: Path) -> None:
    session = _session(spool, laps=5)
    pdf = build(SpoolResults(spool), session, config.load(None).settings, rider="r0")
    pages = _pages(pdf, tmp_path / "rider.pdf")
    _render(tmp_path / "rider.pdf", "report-rider")
    assert all("DejaVuSans" in f for f in _fonts(tmp_path / "rider.pdf"))
    assert len(pages) <= 2 and all(len(p.split()) > 40 for p in pages), [len(p.split()) for p in pages]
    text = " ".join(pages)
    # Plain words before any table: where the time went, and that the power fell there.
    words = text.index("In plain words")
    assert words < text.index("Your laps")
    assert "Most time lost on 3 Second climb up the quarry road: lap 5 was" in text
    assert "Power fell there (300 W on lap 1, 240 W on lap 5) and explains" in text
    assert "Lap 5 took" in text and "longer than lap 1" in text
    # Laps as m:ss with the change from lap 1, FTP and weight as typed, the matrix, conventions last.
    assert re.search(r"\b3:\d\d\.\d\b", text) and "FTP 330 W, weight 61.5 kg" in text
    assert re.search(r"5 3 Second climb up the quarry road 3:\d\d\.\d 240 3\.69 \+\d+\.\d %", text)
    assert "Your segments on the matrix" in text and "Latest segments" not in text
    assert text.rindex("Conventions") > text.index("Your segments on the matrix")
    assert "Tomáš Dvořák" in pages[0]


def test_the_squad_report_has_lap_grids_full_names_and_content_on_every_page(spool: Spool, tmp_path: Path) -> None:
    session = _session(spool, laps=3)
    pages = _pages(build(SpoolResults(spool), session, config.load(None).settings), tmp_path / "squad.pdf")
    _render(tmp_path / "squad.pdf", "report-squad")
    fonts = _fonts(tmp_path / "squad.pdf")
    assert fonts and all("DejaVuSans" in f and f.split()[-5] == "yes" for f in fonts), fonts
    assert all(len(p.split()) > 30 for p in pages), [len(p.split()) for p in pages]
    text = " ".join(pages)
    for name, _ in SEGMENTS:
        assert f"Lap times: {SEGMENTS.index((name, _)) + 1} {name}" in text
    assert "Anna-Maria Kälin-Oberholzer" in text and "Second climb up the quarry road: " in text  # not cut
    assert text.count("Efficiency matrix, lap") == 3 and "Fatigue across laps" in text
    assert text.index("Conventions") > text.index("Fatigue across laps")
    # A heading never ends a page: the page after starts with what the heading was for.
    for page in pages[:-1]:
        assert not re.search(r"(Lap times: [^·]{0,60}|Efficiency matrix, lap \d)\s*Hill repeats", page[-120:]), page


def test_a_one_lap_session_draws_no_empty_chart(spool: Spool, tmp_path: Path) -> None:
    session = _session(spool, laps=1)
    pages = _pages(build(SpoolResults(spool), session, config.load(None).settings), tmp_path / "one.pdf")
    text = " ".join(pages)
    assert "Fatigue across laps" not in text and "One lap: no change across laps to show" in text
    assert text.count("Efficiency matrix, lap") == 1 and all(len(p.split()) > 30 for p in pages)
    own = " ".join(_pages(build(SpoolResults(spool), session, config.load(None).settings, rider="r3"),
                          tmp_path / "own.pdf"))
    assert "Across the laps" not in own and "One lap: nothing to compare across laps" in own
