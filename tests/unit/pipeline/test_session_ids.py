"""Trust at the edges (issue #27), on the box: a stranger's text never reaches a markup parser, heavy
requests and replays are bounded, a change is reported done only once it is on disk, session ids
never collide, notes never create sessions, a damaged rider book never stops the box, a malformed
DSN never prints its password. Each test failed on the main branch before the issue's changes."""

from __future__ import annotations

MARKUP_NAME = '<b>Anna <img src="/etc/hostname"/> & <font name="x">'


# -- strangers on the Wi-Fi ------------------------------------------------------------------------


# -- sessions -------------------------------------------------------------------------------------


def test_session_ids_differ_across_boxes_named_alike_in_the_same_second() -> None:
    from gateway.pipeline.session import new_session_id

    now = 1_780_000_000.0
    ids = {new_session_id("box-a", now) for _ in range(200)} | {new_session_id("box-b", now) for _ in range(200)}
    assert len(ids) == 400
    assert all(i.startswith(("box-a-20260528-", "box-b-20260528-")) for i in ids)


# -- the disk -------------------------------------------------------------------------------------


# -- the operator's files --------------------------------------------------------------------------


