"""At the hub without a broker or a database: two spools of one gateway sending together are told
apart, and the hub warns of them."""

from __future__ import annotations

from gateway.hub.boxes import spool_report


def test_two_spools_of_one_gateway_sending_together_are_told_apart_and_warned_of() -> None:
    now = 1_790_000_000.0
    rows = [("box-a", "aaaa11", now - 600, now - 5, now - 600, now - 5, 2400),
            ("box-a", "bbbb22", now - 590, now - 2, now - 590, now - 2, 2350),  # the same minutes: two boxes
            ("box-b", "", now - 9000, now - 8000, now - 9000, now - 8000, 10),  # before spool ids
            ("box-b", "cccc33", now - 100, now - 1, now - 100, now - 1, 400),  # upgraded
            ("box-c", "dddd44", now - 9000, now - 8000, now - 9000, now - 8000, 99),
            ("box-c", "eeee55", now - 3000, now - 1, now - 3000, now - 1, 99)]  # reinstalled, then on
    boxes, warnings = spool_report(rows, now)
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith("box-a: two spools (aaaa11 and bbbb22) send events of the same time: two boxes "
                                  "have gateway.id box-a")
    assert warnings[1].startswith("box-c started a new spool (eeee55) at 2026-09-21 13:23 UTC (reinstalled")
    assert boxes["box-a"]["interleaved"] and boxes["box-c"]["spool"] == "eeee55" and "changed" in boxes["box-c"]
    assert "changed" not in boxes["box-b"] and boxes["box-b"]["spool"] == "cccc33"  # an upgrade: nothing to say

