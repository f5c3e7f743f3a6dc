"""`hub --processes N` (#35): the main process consumes nothing and shows its workers' figures
together: rows summed (with a worker's that exited), each partition's lag from its owner, each box's
newest event, the database as the workers see it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from gateway.hub.workers import Workers, merged


def _snap(rows: int, assigned: list[str], lag: dict[str, dict[str, int]], *, connected: bool = True,
          last: dict[str, float] | None = None, batches: int = 3) -> dict[str, object]:
    return {"power_rows": rows, "crossing_rows": 1, "segment_rows": 0, "duplicates_skipped": 2, "dead_letters": 0,
            "batches": batches, "lag": lag, "last_event": last or {}, "db_connected": connected, "db_error": None,
            "assigned": assigned}


def test_the_group_is_its_processes_together() -> None:
    # Partition 1 moved from the first process to the second: the first still reports its old lag.
    a = _snap(100, ["power[0]"], {"power": {"0": 5, "1": 900}}, last={"box-a": 10.0, "box-b": 30.0})
    b = _snap(40, ["power[1]", "power[2]"], {"power": {"1": 7, "2": 0}}, last={"box-a": 20.0})
    got = merged([a, b], {"power_rows": 1000, "batches": 9})
    assert got["power_rows"] == 1140 and got["crossing_rows"] == 2 and got["duplicates_skipped"] == 4
    assert got["batches"] == 15
    assert got["lag"] == {"power": {"0": 5, "1": 7, "2": 0}}
    assert got["last_event"] == {"box-a": 20.0, "box-b": 30.0}
    assert got["assigned"] == ["power[0]", "power[1]", "power[2]"] and got["processes"] == 2
    assert got["db_connected"] is True
    # One worker that has written and lost the database: the hub's database is not connected.
    assert merged([a, _snap(40, [], {}, connected=False)])["db_connected"] is False
    # One still starting (nothing written, not yet connected) does not make it so.
    assert merged([a, _snap(0, [], {}, connected=False, batches=0)])["db_connected"] is True
    assert merged([])["power_rows"] == 0 and merged([])["db_connected"] is False


def test_an_exited_workers_rows_still_count(tmp_path: Path) -> None:
    workers = Workers(2, config=None, state_dir=tmp_path, environ={})
    first, second = workers._workers
    for worker, rows in ((first, 500), (second, 70)):
        worker.process = subprocess.Popen(["sleep", "30"] if worker is second else ["true"])
        folder = tmp_path / f"worker-{worker.index}"
        folder.mkdir()
        (folder / "status.json").write_text(json.dumps({"pid": worker.process.pid, "components": {
            "hub": _snap(rows, [f"power[{worker.index}]"], {})}}))
    try:
        first.process.wait(10)  # type: ignore[union-attr]
        workers._check(first)  # seen to exit: what it wrote is carried
        workers._check(second)
        assert [s["power_rows"] for s in workers.stats()] == [70]
        assert merged(workers.stats(), workers.carried)["power_rows"] == 570
        # The worker started in its place reports from zero, and its predecessor's file is not its own.
        first.process = subprocess.Popen(["sleep", "30"])
        assert [s["power_rows"] for s in workers.stats()] == [70]
        assert merged(workers.stats(), workers.carried)["power_rows"] == 570
    finally:
        for worker in (first, second):
            if worker.process is not None:
                worker.process.kill()
                worker.process.wait()
