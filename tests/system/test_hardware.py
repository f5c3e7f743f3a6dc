"""Real radios and receivers: run with `pytest --hardware` on a box that has them.

Environment: TRACKSIDE_ANT_DEVICE (an ANT+ power meter's device number, pedalling),
TRACKSIDE_BLE_METER (a BLE power meter's address or name, pedalling), TRACKSIDE_SERIAL_PORT (a
timing receiver printing lines in the configured format; cross a gate during the test).
"""

from __future__ import annotations

import asyncio
import os

import pytest

from gateway.decode.lines import LineFormat

pytestmark = pytest.mark.hardware


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"set {name} to run this hardware test")
    return value


async def _first(source, got: list, timeout: float) -> None:
    task = asyncio.create_task(source.run())
    try:
        for _ in range(int(timeout * 10)):
            if got:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"nothing within {timeout} s; link {source.link.state} {source.link.detail}")
    finally:
        if hasattr(source, "stop"):
            source.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_a_real_ant_power_meter() -> None:
    from gateway.sources.ant import AntSource

    got: list = []
    asyncio.run(_first(AntSource(got.append, [int(_env("TRACKSIDE_ANT_DEVICE"))]), got, 60))
    assert 0 <= got[0].power < 2500


def test_a_real_ble_power_meter() -> None:
    from gateway.sources.ble import BleSource

    got: list = []
    asyncio.run(_first(BleSource(got.append, [_env("TRACKSIDE_BLE_METER")]), got, 60))
    assert -500 < got[0].power < 2500


def test_a_real_serial_timing_receiver() -> None:
    from gateway.sources.serial import SerialSource

    got: list = []
    asyncio.run(_first(SerialSource(got.append, _env("TRACKSIDE_SERIAL_PORT"), 9600, LineFormat()), got, 120))
    assert got[0].transponder
