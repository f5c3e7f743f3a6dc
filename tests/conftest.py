from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.spool.store import Spool

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
DATA = TESTS / "data"
SYSTEM = TESTS / "system"
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(TESTS))  # harness, fakes and the other helpers, from every test directory

# What makes a test a system test: a real broker, database, browser or process. A test under
# tests/unit that asks for one is refused at collection (it belongs in tests/system).
SYSTEM_FIXTURES = {"kafka_bootstrap", "pg_dsn", "postgres_server", "browser", "gateway_env", "pytester"}

pytest_plugins = ["hygiene", "pytester"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--hardware", action="store_true",
                     help="also run tests that need a real ANT+ stick, BLE adapter or serial receiver")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(SYSTEM):
            item.add_marker(pytest.mark.system)
        elif used := SYSTEM_FIXTURES & set(getattr(item, "fixturenames", ())):
            raise pytest.UsageError(f"{item.nodeid} uses {', '.join(sorted(used))}: a system test, "
                                    "it belongs in tests/system")
    if config.getoption("--hardware"):
        return
    skip = pytest.mark.skip(reason="needs real hardware: run with --hardware")
    for item in items:
        if "hardware" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    """An empty spool of box1, open, closed after the test."""
    opened = Spool(tmp_path / "spool.sqlite", "box1").open()
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real broker `make test` started (KAFKA_BOOTSTRAP), or one started here for this session."""
    preset = os.environ.get("KAFKA_BOOTSTRAP")
    if preset:
        yield preset
        return
    from kafka_broker import Broker

    broker = Broker(tmp_path_factory.mktemp("kafka"))
    try:
        yield broker.start()
    finally:
        broker.stop()


@pytest.fixture
def gateway_env() -> dict[str, str]:
    """Environment for running the gateway as a subprocess from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("NOTIFY_SOCKET", None)
    return env


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real PostgreSQL server (Debian's package) for the session; each test takes its own database."""
    import shutil
    import tempfile

    from postgres import Postgres

    # The server runs as the postgres user (initdb refuses root): its directory must be reachable.
    base = Path(tempfile.mkdtemp(prefix="trackside-pg-"))
    base.chmod(0o755)
    server = Postgres(base / "pg")
    server.start()
    try:
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_dsn(postgres_server, request: pytest.FixtureRequest) -> str:
    """A fresh database on the session's server, named after the test."""
    import re

    name = "t_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:50]
    return postgres_server.create_database(name)
