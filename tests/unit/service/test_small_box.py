"""The box's live path stays small: what a live session runs on imports neither NumPy nor jsonschema
nor prometheus_client (13, 5 and 3 MB of a box that must stay under 60 MB: tools/bench daemon);
replays, riders' files and a scrape import theirs when they come. And glibc's allocator takes the
box's settings."""

from __future__ import annotations

import json
import subprocess
import sys

from harness import ROOT

LIVE = """
import json, sys
from pathlib import Path
from gateway import config
from gateway.engine.course import Course
from gateway.engine.normalize import score
from gateway.engine.segments import RiderInfo, SegmentEngine
from gateway.pipeline.riderbook import RiderBook
from gateway.results.rows import annotate
import gateway.service.daemon, gateway.web.app, gateway.web.server

cfg = config.load(None)
book = RiderBook(Path(sys.argv[1]) / "riders.json", cfg.settings.riders)
engine = SegmentEngine(Course(("SF", "G1"), ("Climb", "Descent")), {"r1": RiderInfo("r1", "Anna", 250, 60)}, "s")
engine.add_crossing("r1", "SF", 0.0)
for i in range(400):
    engine.add_power("r1", i * 0.25, 200.0 + i % 7, 90.0)
results = engine.add_crossing("r1", "G1", 90.0) + engine.tick(200.0)
rows = annotate(results, results, 0.8)
print(json.dumps({"np": results[0].normalized_power, "rows": len(rows),
                  "loaded": sorted(m for m in ("numpy", "jsonschema", "prometheus_client") if m in sys.modules)}))
"""


def test_a_live_session_imports_none_of_the_heavy_libraries(tmp_path) -> None:
    out = subprocess.run([sys.executable, "-c", LIVE, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=120)
    got = json.loads(out.stdout)
    assert got["rows"] == 1 and 200.0 < got["np"] < 207.0  # it did compute a segment
    assert got["loaded"] == []


def test_glibc_takes_the_boxs_allocator_settings() -> None:
    out = subprocess.run([sys.executable, "-c", "from gateway.service import allocator; print(allocator.tune())"],
                         cwd=ROOT, capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "True"
