"""Session ids never collide: boxes named alike starting in the same second get different ids."""

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


