"""The command line as a user meets it: one clear line and exit 2 for anything expected."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness import ROOT


def run_cli(*args: str, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)


def test_help_lists_every_command(gateway_env: dict[str, str]) -> None:
    out = run_cli("--help", env=gateway_env)
    assert out.returncode == 0
    for command in ("run", "check-config", "replay", "metrics", "export", "status", "decode"):
        assert f"    {command}" in out.stdout


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).parent / "trackside-gateway"
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    assert out.stdout.startswith("trackside-gateway ")


def test_run_refuses_an_invalid_config_without_a_traceback(tmp_path: Path, gateway_env: dict[str, str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("gateway: {id: box-01}\ncourse: {gates: [{id: SF}]}\nriders: []\nweb: {prot: 8080}\n")
    out = run_cli("run", "--config", str(bad), env=gateway_env)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.strip() == (
        f"trackside-gateway: {bad}:4: web.prot: unknown key (did you mean 'port'? allowed here: "
        "admin_token, chart, enabled, heartbeat_s, heavy_requests, host, hub_url, max_body_kb, max_streams, "
        "max_upload_mb, port, request_threads, streams_per_address, view_sets)"
    )
