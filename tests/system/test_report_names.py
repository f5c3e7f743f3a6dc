"""The report a rider takes home (#33) prints every European name as typed: the font is embedded
DejaVu Sans, not a standard font that covers Windows-1252 only ("Dvořák" printed as "Dvo■ák")."""

from __future__ import annotations

import re
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from harness import ARTIFACTS, RunningDaemon
from test_debrief_page import _finished

NAMES = {"r01": "Tomáš Dvořák", "r02": "Zoë Łukasiewicz", "r03": "Sigurður Ørnsson", "r04": "Jürgen Ćosić"}


def test_european_names_print_as_typed_in_an_embedded_font(tmp_path: Path) -> None:
    def rename(data: dict[str, Any]) -> None:
        for rider in data["riders"]:
            rider["name"] = NAMES.get(rider["id"], rider["name"])
        data["riders"][0].update(ftp_w=330.0, weight_kg=61.5)  # as a rider book stores them

    with RunningDaemon(tmp_path / "state", edit=rename) as running:
        started = running.api("/api/replays", {"files": ["@sample"], "speed": 0})
        _finished(running, started["session"])
        with urllib.request.urlopen(f"{running.base}/api/report.pdf?session={started['session']}", timeout=60) as r:
            pdf = r.read()
        with urllib.request.urlopen(f"{running.base}/api/report.pdf?session={started['session']}&rider=r01",
                                    timeout=60) as r:
            own = r.read()
    own_path = tmp_path / "own.pdf"
    own_path.write_bytes(own)
    own_text = " ".join(subprocess.run(["pdftotext", str(own_path), "-"], capture_output=True, text=True,
                                       check=True).stdout.split())
    # A rider's own report: their laps as m:ss with the change from lap 1, no squad's latest table;
    # FTP and weight as typed (330, not 330.0).
    assert "Your laps" in own_text and "Latest segments" not in own_text and "vs lap 1" in own_text
    assert re.search(r"\b\d:\d\d\.\d\b", own_text) and "FTP 330 W, weight 61.5 kg" in own_text
    assert own_text.startswith("Tomáš Dvořák") and own_text.index("In plain words") < own_text.index("Your laps")
    path = ARTIFACTS / "report-names.pdf"
    ARTIFACTS.mkdir(exist_ok=True)
    path.write_bytes(pdf)
    text = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout
    for name in NAMES.values():
        assert name in text, name
    # The conventions say what the numbers do: a segment's TSS counts its gate-to-gate duration.
    assert "segment's duration from gate to gate" in " ".join(text.split())
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout
    lines = [line for line in fonts.splitlines()[2:] if line.strip()]
    assert lines and all("DejaVuSans" in line for line in lines), fonts  # no standard font left
    assert all(line.split()[-5] == "yes" for line in lines), fonts  # every one embedded


def test_a_report_is_named_for_people() -> None:
    from gateway.web.requests import attachment

    header = attachment("2026-12-04 Hill repeats - Tomáš Dvořák", "pdf")["Content-Disposition"]
    assert header == ('attachment; filename="2026-12-04 Hill repeats - Tom_ Dvo_k.pdf"; '
                      "filename*=UTF-8''2026-12-04%20Hill%20repeats%20-%20Tom%C3%A1%C5%A1%20Dvo%C5%99%C3%A1k.pdf")
    evil = attachment('x"; filename="evil.exe\r\nSet-Cookie: a=b', "csv")["Content-Disposition"]
    assert evil.count('"') == 2 and "\r" not in evil and "\n" not in evil
