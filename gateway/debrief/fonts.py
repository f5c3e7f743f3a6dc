"""The report's font: DejaVu Sans, embedded, so that every European name prints as typed ("Tomáš
Dvořák", "Zoë Łukasiewicz"). The PDF standard fonts cover Windows-1252 only and lost "ř" and "Ł".
Debian's fonts-dejavu-core provides it (`tools/install-system-deps` installs it)."""

from __future__ import annotations

import threading
from pathlib import Path

from gateway.errors import GatewayError

REGULAR = "TracksideSans"
BOLD = "TracksideSans-Bold"
FOLDERS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"),
           Path("/usr/local/share/fonts/dejavu"))
_lock = threading.Lock()
_registered = False


def register() -> tuple[str, str]:
    """Registers the regular and bold faces with reportlab (once) and returns their names."""
    global _registered
    with _lock:
        if _registered:
            return REGULAR, BOLD
        from reportlab.lib.fonts import addMapping
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.ttfonts import TTFont

        folder = next((f for f in FOLDERS
                       if (f / "DejaVuSans.ttf").is_file() and (f / "DejaVuSans-Bold.ttf").is_file()), None)
        if folder is None:
            raise GatewayError("the report's font (DejaVu Sans) is not installed", where="report",
                               hint="install Debian's fonts-dejavu-core (tools/install-system-deps does)")
        pdfmetrics.registerFont(TTFont(REGULAR, str(folder / "DejaVuSans.ttf")))
        pdfmetrics.registerFont(TTFont(BOLD, str(folder / "DejaVuSans-Bold.ttf")))
        # <b> in a paragraph picks the bold face of the family.
        for bold, italic, name in ((0, 0, REGULAR), (1, 0, BOLD), (0, 1, REGULAR), (1, 1, BOLD)):
            addMapping(REGULAR, bold, italic, name)
        # Each page's canvas starts in reportlab's base font: this one, so no standard font is left.
        from reportlab import rl_config

        rl_config.canvas_basefontname = REGULAR
        from reportlab.graphics import shapes

        shapes.STATE_DEFAULTS["fontName"] = REGULAR  # charts' labels and axes
        _registered = True
        return REGULAR, BOLD
