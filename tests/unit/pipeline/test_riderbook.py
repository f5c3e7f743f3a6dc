"""The rider book on its own (issue #15): FTP and weight kept by date, pairings made on the page
over the YAML's."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.config.settings import MeterSettings, RiderSettings
from gateway.pipeline.riderbook import RiderBook, RiderBookError

pytestmark = pytest.mark.allow_threads("asyncio_", "fake-")
PHONE = {"width": 412, "height": 915}


def test_the_rider_book_keeps_values_by_date_and_pairings_over_the_yaml(tmp_path: Path) -> None:
    roster = (RiderSettings("r01", "Anna", "u23", 58, 245, "DM-0001", (MeterSettings("ant", "111"),)),
              RiderSettings("r02", "Lea", None, 61, 270, None, (MeterSettings("ant", "111"),)))
    book = RiderBook(tmp_path / "riders.json", roster)
    assert "ANT+ 111 is given to Anna and Lea in the configuration: choose its rider below" in book.warnings()
    book.set_profile("r01", ftp_w=260, day="2026-06-01")
    book.set_profile("r01", weight_kg=57.5, day="2026-09-01")
    june = time.mktime(time.strptime("2026-07-15", "%Y-%m-%d"))
    may = time.mktime(time.strptime("2026-05-15", "%Y-%m-%d"))
    autumn = time.mktime(time.strptime("2026-10-01", "%Y-%m-%d"))
    by = {t: {r.id: r for r in book.riders_on(t)} for t in (may, june, autumn)}
    assert (by[may]["r01"].ftp_w, by[may]["r01"].weight_kg) == (245, 58)  # the YAML's before any entry
    assert (by[june]["r01"].ftp_w, by[june]["r01"].weight_kg) == (260, 58)
    assert (by[autumn]["r01"].ftp_w, by[autumn]["r01"].weight_kg) == (260, 57.5)
    result = book.pair("ant", "111", "r02")
    assert result["before"] is None
    riders = {r.id: r for r in book.riders_on(autumn)}
    assert not riders["r01"].power_meters and riders["r02"].power_meters == (MeterSettings("ant", "111"),)
    assert book.warnings() == []
    book.pair("chip", "DM-0007", "r02")
    assert {r.id: r.transponder for r in book.riders_on(autumn)}["r02"] == "DM-0007"
    book.add("r07", "Mia")
    assert book.next_id() == "r08"  # a rider the coach only named gets the next free id
    with pytest.raises(RiderBookError, match="a rider needs a name") as info:
        book.add("r08", "  ")
    assert "name field" in (info.value.hint or "")
    # A second chip for Anna: the warning says, in names, which one counts and what to do.
    book.pair("chip", "DM-0099", "r01")
    assert book.warnings() == ["Anna has 2 chips (chip DM-0001 and chip DM-0099): only chip DM-0099 counts at the "
                               "gates; set the other to nobody"]
    book.unpair("chip", "DM-0001")  # a chip from the configuration can be set to nobody here
    assert book.warnings() == []
    again = RiderBook(tmp_path / "riders.json", roster)  # what a restart reads
    assert [r.id for r in again.riders_on(autumn)] == ["r01", "r02", "r07"]
    assert again.pairings()["ant:111"] == "r02"
    with pytest.raises(RiderBookError, match="not plausible"):
        again.set_profile("r01", ftp_w=5000)
    with pytest.raises(RiderBookError, match="no rider"):
        again.pair("ant", "5", "nobody")
    (tmp_path / "riders.json").write_text("{broken")
    fresh = RiderBook(tmp_path / "riders.json", roster)  # kept aside: the box starts from the YAML's riders
    assert fresh.damaged is not None and fresh.damaged.startswith("riders.json: not JSON")
    assert [r.id for r in fresh.riders_on(autumn)] == ["r01", "r02"]


