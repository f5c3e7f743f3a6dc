"""The systemd unit file: it lets the daemon read the clock's state and bounds what it may do."""

from __future__ import annotations

from harness import ROOT


def test_the_unit_lets_the_daemon_read_the_clock_state_and_bounds_it() -> None:
    """Under ProtectClock=yes adjtimex(2) fails even for reading (systemd issue 26413): the "clock not
    synchronised" warning could never show. The unit allows adjtimex by name instead (setting the clock
    needs CAP_SYS_TIME, which it takes away) and bounds memory, tasks and descriptors."""
    settings = [line.split("=", 1) for line in (ROOT / "systemd" / "trackside-gateway.service").read_text().splitlines()
                if "=" in line and not line.startswith("#")]
    keys = {k: v for k, v in settings}
    assert "ProtectClock" not in keys
    assert "adjtimex" in [v for k, v in settings if k == "SystemCallFilter"]
    assert keys["CapabilityBoundingSet"] == ""
    assert {"MemoryMax", "TasksMax", "LimitNOFILE"} <= set(keys)
    assert int(keys["LimitNOFILE"]) > 1024 + 100  # the page's connection limit, and the rest


def test_the_clock_state_a_session_record_carries() -> None:
    """#30: the hub places a box's events with the box's own clock state when no broadcast links it to
    another box; the kernel says whether the clock is synchronised and how far off it may be."""
    from gateway.watch.health import clock_state, clock_synchronised

    state = clock_state()
    assert state["synchronised"] == clock_synchronised()
    assert isinstance(state["sources"], list)
    if state["synchronised"] is not None:  # adjtimex answered: its errors are seconds, never negative
        assert 0 <= state["est_error_s"] <= state["max_error_s"]
