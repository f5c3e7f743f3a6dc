"""The hub's quick check of power messages (``PowerChecks``, a box and session checked once) says
of every message what the full check (``power_problem``) says: a bad value from a box already
known good is still refused, with the full check's reason."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from gateway.hub.plausible import PowerChecks, power_problem

NOW = 1_790_000_000.0


@dataclass(frozen=True)
class Msg:
    gateway_id: str = "box-1"
    session_id: str | None = "box-1-20261205-090000"
    instantPower: float | None = 250.0
    wallTime: float = NOW - 60.0
    source: str = "ant:1234"
    rider_id: str | None = "r1"
    implausible: list[str] | None = None


GOOD = Msg()
VARIANTS = [
    GOOD,
    replace(GOOD, instantPower=None),
    replace(GOOD, instantPower=0.0),
    replace(GOOD, instantPower=10_000.0),
    replace(GOOD, instantPower=10_000.5),
    replace(GOOD, instantPower=-1.0),
    replace(GOOD, instantPower=math.nan),
    replace(GOOD, instantPower=math.inf),
    replace(GOOD, instantPower=1e308, implausible=["power"]),  # flagged by the box: kept
    replace(GOOD, instantPower=math.nan, implausible=["power"]),
    replace(GOOD, wallTime=math.nan),
    replace(GOOD, wallTime=math.inf),
    replace(GOOD, wallTime=900_000_000.0),  # 1998
    replace(GOOD, wallTime=NOW + 86_399.0),
    replace(GOOD, wallTime=NOW + 86_401.0),
    replace(GOOD, source="x" * 128),
    replace(GOOD, source="x" * 129),
    replace(GOOD, rider_id=None),
    replace(GOOD, rider_id="r" * 129),
    replace(GOOD, session_id=None),
    replace(GOOD, session_id="s" * 129),
    replace(GOOD, gateway_id="box 1"),
    replace(GOOD, gateway_id="b" * 65),
    GOOD,
]


def test_every_message_gets_the_full_checks_verdict_whatever_came_before() -> None:
    checks = PowerChecks(NOW)
    for msg in VARIANTS * 2:  # the second time round, box-1's session is known good
        assert checks.problem(msg) == power_problem(msg, NOW), msg
    assert checks.known == {("box-1", "box-1-20261205-090000"), ("box-1", None)}
    assert checks.problem(replace(GOOD, instantPower=20_000.0)) == (
        "instantPower 20000.0 W is outside 0-10000 W and not flagged implausible")


def test_a_bad_box_or_session_is_never_remembered() -> None:
    checks = PowerChecks(NOW)
    for msg in (replace(GOOD, gateway_id="box 1"), replace(GOOD, session_id="s" * 129)):
        assert checks.problem(msg) is not None
        assert checks.problem(msg) is not None
    assert checks.known == set()
