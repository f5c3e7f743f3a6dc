"""The folder the box watches (a USB stick): a rider's file put there goes to the session it
overlaps, once; a bad file is said on the status page and nothing changes."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from rides import FILE, live_session

from gateway import config
from gateway.pipeline.completion import SessionCompletion
from gateway.service.filewatch import FolderWatch
from gateway.spool.store import Spool
from gateway.status import StatusBoard


def test_a_file_on_the_stick_completes_the_session_it_overlaps_once(spool: Spool, tmp_path: Path) -> None:
    session = live_session(spool, FILE)
    stick = tmp_path / "stick"
    stick.mkdir()
    status = StatusBoard()
    watch = FolderWatch(stick, SessionCompletion(config.load(None).settings, spool), spool, status, lambda: "other")
    watch.poll()
    assert status.snapshot()["components"]["files"]["outcomes"] == []
    for name in (FILE.name, "cut.fit"):
        target = stick / name
        shutil.copy(FILE, target)
        os.utime(target, (time.time() - 10, time.time() - 10))  # copied a while ago: complete
    (stick / "cut.fit").write_bytes(FILE.read_bytes()[:3000])
    os.utime(stick / "cut.fit", (time.time() - 10, time.time() - 10))
    watch.poll()
    files = status.snapshot()["components"]["files"]
    by_file = {o["file"]: o for o in files["outcomes"]}
    assert by_file[FILE.name]["status"] == "added" and by_file[FILE.name]["session"] == session
    assert by_file["cut.fit"]["status"] == "refused" and "truncated" in by_file["cut.fit"]["message"]
    assert any("cut.fit" in w for w in files["warnings"])
    assert spool.sessions.record(session)["files_added"][0]["added_by"] == f"folder {stick}"
    rows = spool.ledger.last_seq()
    watch.poll()  # nothing new: nothing done
    assert spool.ledger.last_seq() == rows
