"""The spool on a real full disk (a small tmpfs): survived and counted, and "full" clears once
there is room again without waiting for a write."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from harness import open_spool
from harness import power_event as power


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A real 2 MB filesystem (tmpfs) when we may mount one, else the file is capped by SQLite itself."""
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True).returncode == 0
    yield mount, mounted
    if mounted:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_survived_and_counted(tiny_disk) -> None:
    mount, mounted = tiny_disk
    sp = open_spool(mount / "s.sqlite", full_policy="reject")
    if not mounted:
        sp.file.conn().execute("PRAGMA max_page_count=500")
    accepted = sum(len(sp.appender.append([power(b * 100 + i) for i in range(100)])) for b in range(300))
    status = sp.status()
    assert status["disk_full"] >= 1 and status["rejected"] > 0
    assert "full" in status["last_error"]
    assert [r.seq for r in sp.queries.since(0)] == list(range(1, accepted + 1))
    sp.close()


def test_full_clears_once_the_disk_has_room_without_waiting_for_a_write(tmp_path: Path) -> None:
    """#28, point 10: `full: true` stayed on the status after the disk was freed, until the next write."""
    from harness import fill, tmpfs

    disk = tmpfs(tmp_path / "disk", "3m")
    mount = next(disk)
    try:
        sp = open_spool(mount / "s.sqlite", full_policy="reject")
        sp.appender.append([power(i) for i in range(10)])
        sp.file.conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        fill(mount / "filler")
        assert sp.appender.append([power(i) for i in range(10, 2000)]) == [] and sp.status()["full"]
        (mount / "filler").unlink()
        assert not sp.status()["full"]  # said at once, no write needed
        assert sp.appender.append([power(5000)])
        sp.close()
    finally:
        next(disk, None)
