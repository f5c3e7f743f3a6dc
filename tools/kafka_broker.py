#!/usr/bin/env python3
"""A real single-node Apache Kafka broker (KRaft, combined broker+controller) on 127.0.0.1.

The jars come from Maven Central through ``mvn`` and are cached, so a second start takes
seconds. Standard library only: the Makefile runs this before the virtual environment exists
and the test suite imports it for its fixtures.

    python3 tools/kafka_broker.py fetch            # resolve the jars into the cache
    python3 tools/kafka_broker.py start --dir D    # start, wait, print the bootstrap address
    python3 tools/kafka_broker.py stop --dir D     # stop what `start` started in D
    python3 tools/kafka_broker.py run              # start in the foreground until Ctrl-C
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

KAFKA_VERSION = "4.4.0"
SLF4J_VERSION = "2.0.17"
CACHE_ROOT = Path(os.environ.get("TRACKSIDE_CACHE", Path.home() / ".cache" / "trackside-gateway"))
HEAP = os.environ.get("KAFKA_TEST_HEAP", "-Xms128m -Xmx512m")

POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.trackside</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{KAFKA_VERSION}</version>
    </dependency>
    <!-- kafka_2.13's POM pins slf4j-api 1.7 and ships no binding; the clients jar needs 2.x.
         A direct declaration wins Maven's nearest-first mediation. -->
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-api</artifactId>
      <version>{SLF4J_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-simple</artifactId>
      <version>{SLF4J_VERSION}</version>
    </dependency>
  </dependencies>
</project>
"""


class BrokerError(RuntimeError):
    """The broker could not be resolved, formatted or started; the message says which step."""


def lib_dir() -> Path:
    return CACHE_ROOT / f"kafka-{KAFKA_VERSION}" / "lib"


def fetch(verbose: bool = False) -> Path:
    """Resolve Kafka and its runtime dependencies into the cache (once)."""
    lib = lib_dir()
    marker = lib / ".complete"
    if marker.exists():
        return lib
    if shutil.which("mvn") is None:
        raise BrokerError("mvn is not installed: `make test` installs it (Debian package maven)")
    if shutil.which("java") is None:
        raise BrokerError("java is not installed: `make test` installs it (Debian package default-jre-headless)")
    work = lib.parent
    work.mkdir(parents=True, exist_ok=True)
    (work / "pom.xml").write_text(POM)
    tmp_lib = work / "lib.partial"
    shutil.rmtree(tmp_lib, ignore_errors=True)
    cmd = [
        "mvn", "-B", "-f", str(work / "pom.xml"),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={tmp_lib}", "-DincludeScope=runtime",
    ]
    if not verbose:
        cmd.insert(1, "-q")
    proc = subprocess.run(cmd, capture_output=not verbose, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout or "")[-3000:] + (proc.stderr or "")[-2000:]
        raise BrokerError(f"mvn could not resolve org.apache.kafka:kafka_2.13:{KAFKA_VERSION}:\n{tail}")
    shutil.rmtree(lib, ignore_errors=True)
    tmp_lib.rename(lib)
    marker.write_text(KAFKA_VERSION + "\n")
    return lib


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Broker:
    """A broker process whose state lives in ``workdir`` (logs, data, pid, ports)."""

    workdir: Path
    port: int = 0
    controller_port: int = 0
    process: subprocess.Popen[bytes] | None = None
    # How long a new group waits for more members before its first assignment: 0 for the tests (no
    # 3 s wait at each group's start); Kafka's own default (3000) where a benchmark measures a group
    # of several consumers as a production broker would form it.
    group_join_delay_ms: int = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "broker.log"

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            "java", *HEAP.split(), "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-cp", str(lib_dir() / "*"), main, *args,
        ]

    def _write_properties(self) -> Path:
        data = self.workdir / "data"
        props = self.workdir / "server.properties"
        props.write_text(
            "\n".join([
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"log.dirs={data}",
                "num.partitions=1",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                f"group.initial.rebalance.delay.ms={self.group_join_delay_ms}",
                "auto.create.topics.enable=true",
                "",
            ])
        )
        return props

    def format(self) -> None:
        """Write the properties and format KRaft storage (only once per workdir)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        ports = self.workdir / "ports"
        if ports.exists():
            self.port, self.controller_port = (int(p) for p in ports.read_text().split())
            return
        self.port, self.controller_port = free_port(), free_port()
        props = self._write_properties()
        cluster_id = subprocess.run(
            self._java("kafka.tools.StorageTool", "random-uuid"),
            capture_output=True, text=True, check=False,
        )
        if cluster_id.returncode != 0:
            raise BrokerError(f"kafka StorageTool random-uuid failed: {cluster_id.stderr[-2000:]}")
        fmt = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "--standalone",
                       "-t", cluster_id.stdout.strip().splitlines()[-1], "-c", str(props)),
            capture_output=True, text=True, check=False,
        )
        if fmt.returncode != 0:
            raise BrokerError(f"kafka StorageTool format failed: {fmt.stdout[-1000:]}{fmt.stderr[-2000:]}")
        ports.write_text(f"{self.port} {self.controller_port}\n")

    def start(self, timeout: float = 90.0) -> str:
        """Start the broker (formatting first if needed), wait until it serves, return bootstrap."""
        fetch()
        self.format()
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self._java("kafka.Kafka", str(self.workdir / "server.properties")),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        (self.workdir / "pid").write_text(f"{self.process.pid}\n")
        self._wait_ready(timeout)
        return self.bootstrap

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise BrokerError(
                    f"the broker exited with status {self.process.returncode} during start-up; "
                    f"last lines of {self.log_path}:\n{self._log_tail()}"
                )
            if _answers_api_versions(self.port):
                return
            time.sleep(0.2)
        self.stop()
        raise BrokerError(f"the broker did not accept connections within {timeout:.0f} s:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (a clean controlled shutdown), SIGKILL if it does not exit in time."""
        pid = self._pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid, self.process):
            time.sleep(0.1)
        if _alive(pid, self.process):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if self.process is not None:
                self.process.wait(10)
        elif self.process is not None:
            self.process.wait(1)
        self.process = None
        (self.workdir / "pid").unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL, as a crashed broker or a pulled plug."""
        pid = self._pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if self.process is not None:
                self.process.wait(10)
        self.process = None
        (self.workdir / "pid").unlink(missing_ok=True)

    def _pid(self) -> int | None:
        if self.process is not None:
            return self.process.pid
        pidfile = self.workdir / "pid"
        if pidfile.exists():
            return int(pidfile.read_text().strip())
        return None


def _alive(pid: int, proc: subprocess.Popen[bytes] | None) -> bool:
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _answers_api_versions(port: int) -> bool:
    """True once the broker answers a Kafka ApiVersions request (not merely a TCP accept)."""
    # ApiVersions v0: api_key 18, version 0, correlation id 1, client id "probe".
    client = b"probe"
    body = (18).to_bytes(2, "big") + (0).to_bytes(2, "big") + (1).to_bytes(4, "big")
    body += len(client).to_bytes(2, "big") + client
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(len(body).to_bytes(4, "big") + body)
            head = s.recv(4)
            if len(head) < 4:
                return False
            reply = s.recv(int.from_bytes(head, "big"))
            # correlation id echoed, then error code 0
            return reply[:4] == (1).to_bytes(4, "big") and reply[4:6] == b"\x00\x00"
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch", help="resolve the jars from Maven Central into the cache")
    for name in ("start", "stop"):
        p = sub.add_parser(name)
        p.add_argument("--dir", required=True, type=Path, help="the broker's working directory")
    sub.add_parser("run", help="start in a temporary directory and stay in the foreground")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "fetch":
            t0 = time.monotonic()
            print(f"kafka {KAFKA_VERSION} jars in {fetch(verbose=True)} ({time.monotonic() - t0:.1f} s)")
        elif args.cmd == "start":
            t0 = time.monotonic()
            broker = Broker(args.dir)
            bootstrap = broker.start()
            print(f"kafka broker ready on {bootstrap} in {time.monotonic() - t0:.1f} s", file=sys.stderr)
            print(bootstrap)
        elif args.cmd == "stop":
            Broker(args.dir).stop()
        else:
            with tempfile.TemporaryDirectory(prefix="kafka-") as d:
                broker = Broker(Path(d))
                print(broker.start(), flush=True)
                try:
                    signal.sigwait({signal.SIGINT, signal.SIGTERM})
                finally:
                    broker.stop()
    except BrokerError as exc:
        print(f"kafka_broker: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
