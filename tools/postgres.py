#!/usr/bin/env python3
"""A real PostgreSQL server (Debian's package) on 127.0.0.1 and a free port, in a directory of its own.

For the hub's tests, benchmarks and a local try. `initdb` refuses to run as root, so as root the
server runs as the ``postgres`` user on a directory it owns; its Unix socket lives in that directory
too, so several servers can run side by side. Standard library only: the test suite imports it for
its fixtures.

    python3 tools/postgres.py start --dir D    # initdb (once), start, create the database, print the DSN
    python3 tools/postgres.py stop --dir D     # stop what `start` started in D
    python3 tools/postgres.py run              # start in the foreground (a temporary directory) until Ctrl-C
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

USER = "trackside"
DATABASE = "trackside"


class PostgresError(RuntimeError):
    pass


def bin_dir() -> Path:
    """Debian puts the server's programs under /usr/lib/postgresql/<major>/bin, off PATH."""
    root = Path("/usr/lib/postgresql")
    majors = sorted((p for p in root.glob("*/bin") if (p / "pg_ctl").exists()),
                    key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    if not majors:
        raise PostgresError("no PostgreSQL server found under /usr/lib/postgresql: install Debian's `postgresql` "
                            "package (make test does: tools/install-system-deps test)")
    return majors[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Postgres:
    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.dir = Path(directory)
        self.data = self.dir / "data"
        self.port_file = self.dir / "port"
        self.port = port or (int(self.port_file.read_text()) if self.port_file.exists() else free_port())
        self.as_root = os.geteuid() == 0

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} dbname={DATABASE} user={USER}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if check and out.returncode != 0:
            raise PostgresError(f"{' '.join(args[:2])} failed: {out.stderr.strip() or out.stdout.strip()}")
        return out

    def init(self) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
            os.chmod(self.dir, 0o700)
        self._run(str(bin_dir() / "initdb"), "-D", str(self.data), "-A", "trust", "-U", USER, "--no-sync",
                  "-E", "UTF8", "--locale=C")

    def start(self, timeout: float = 60.0, fsync: bool = False) -> str:
        """Start (initialising once) and wait until it takes connections; returns the DSN."""
        self.init()
        self.port_file.write_text(str(self.port))
        if self.as_root:
            shutil.chown(self.port_file, "postgres", "postgres")
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync={'on' if fsync else 'off'} "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=50 "
                   "-c shared_buffers=128MB -c max_wal_size=2GB")
        self._run(str(bin_dir() / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"),
                  "-w", "-t", str(int(timeout)), "start")
        deadline = time.monotonic() + timeout
        while self._run(str(bin_dir() / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port),
                        check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise PostgresError(f"PostgreSQL did not answer on port {self.port}: {self.log_tail()}")
            time.sleep(0.1)
        if not self.sql("postgres", f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'").strip():
            self.sql("postgres", f"CREATE DATABASE {DATABASE}")
        return self.dsn

    def sql(self, database: str, statement: str) -> str:
        psql = shutil.which("psql") or str(bin_dir() / "psql")
        out = subprocess.run([psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", database, "-tAc",
                              statement], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise PostgresError(f"psql: {out.stderr.strip()}")
        return out.stdout

    def create_database(self, name: str) -> str:
        """A fresh database on this server (one per test); returns its DSN."""
        self.sql("postgres", f"DROP DATABASE IF EXISTS {name}")
        self.sql("postgres", f"CREATE DATABASE {name}")
        return f"host=127.0.0.1 port={self.port} dbname={name} user={USER}"

    def drop_database(self, name: str) -> None:
        """Drop a database its phase is done with and write a checkpoint, so that nothing of that
        phase's work runs during the next (the autovacuum of the rows it wrote, a checkpoint its WAL
        called for): a benchmark's phases each start on a settled server."""
        self.sql("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.sql("postgres", "CHECKPOINT")

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(bin_dir() / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def log_tail(self) -> str:
        try:
            return "\n".join((self.dir / "log").read_text().splitlines()[-10:])
        except OSError:
            return "(no log)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("start", "stop"):
        p = sub.add_parser(name)
        p.add_argument("--dir", type=Path, required=True)
        p.add_argument("--port", type=int)
    run = sub.add_parser("run")
    run.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            print(Postgres(args.dir, args.port).start(fsync=True))
        elif args.command == "stop":
            Postgres(args.dir).stop()
        else:
            with tempfile.TemporaryDirectory(prefix="trackside-pg-") as d:
                server = Postgres(Path(d) / "pg", args.port)
                print(server.start(fsync=True), flush=True)
                try:
                    signal.sigwait({signal.SIGINT, signal.SIGTERM})
                except KeyboardInterrupt:
                    pass
                finally:
                    server.stop()
    except PostgresError as exc:
        print(f"postgres: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
