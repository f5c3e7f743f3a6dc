"""`trackside-gateway decode` as a process: payloads in, JSON out, one clear line for a bad one."""

from __future__ import annotations

import subprocess
import sys

import pytest
from harness import ROOT


def run_decode(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "decode", *args], capture_output=True, text=True,
                          env=env, timeout=60, cwd=ROOT)


def test_decode_command(gateway_env) -> None:
    import json

    out = run_decode("ant-power", "12 00 00 5A 00 00 00 00", "12 01 01 5A 55 05 C0 03", env=gateway_env)
    first, second = (json.loads(line) for line in out.stdout.splitlines())
    assert "power_w" not in first and second["power_w"] == pytest.approx(282.8, abs=0.1)
    out = run_decode("ble-power", "00 00 D2 04", env=gateway_env)
    assert json.loads(out.stdout)["power_w"] == 1234
    bad = run_decode("ble-power", "2C 00 00 00 9F", env=gateway_env)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == ("trackside-gateway: ble-power byte 4: the flags announce accumulated torque "
                                  "but the payload ends at byte 5")
    bad = run_decode("ant-power", "12 00 XY", env=gateway_env)
    assert bad.returncode == 2 and "payload 1: 'XY' is not a hex byte" in bad.stderr
