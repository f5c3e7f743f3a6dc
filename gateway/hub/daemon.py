"""`trackside-gateway hub`: the consumer group member that writes every box's stream into PostgreSQL,
and the same coach's page over it.

Threads: ``hub-consumer`` (Kafka -> one transaction per poll -> commit), ``hub-course`` (each written
batch's pages and crossings into their course sessions, course results settled and written once a
second: ``hub.coursework``), ``hub-feed`` (new segment
results from the database to the page's live streams, whichever hub wrote them), the page's
waitress threads (reads through ``PgResults``, a connection per thread), and the main thread (status,
sd_notify, signals). Start a second hub with the same ``hub.group_id`` to share the partitions.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway import __version__
from gateway.config import Config
from gateway.config.settings import HubSettings
from gateway.config.validate import EMBEDDED
from gateway.errors import GatewayError
from gateway.hub.boxes import spool_report
from gateway.hub.consumer import HubConsumer
from gateway.hub.coursework import CourseWork
from gateway.hub.results import PgResults
from gateway.hub.schema import DatabaseError, migrate
from gateway.hub.workers import HUB_PID, Workers, merged
from gateway.status import StatusBoard
from gateway.watch.supervise import Supervisor

log = logging.getLogger(__name__)


def read_dsn(hub: HubSettings, environ: dict[str, str] | None = None) -> str:
    """The PostgreSQL connection string, from a file or the environment: never from the YAML."""
    env = os.environ if environ is None else environ
    if hub.dsn_file:
        try:
            dsn = Path(hub.dsn_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise GatewayError(f"cannot read the database connection file: {getattr(exc, 'strerror', None) or exc}",
                               where=hub.dsn_file, hint="hub.dsn_file names a file holding the DSN") from None
        where = hub.dsn_file
    else:
        dsn = env.get(hub.dsn_env or "") or ""
        where = f"hub (environment variable {hub.dsn_env})"
        if not dsn:
            raise GatewayError(f"no database connection string: set the environment variable {hub.dsn_env}",
                               where="hub", hint=DSN_HINT + ", or set hub.dsn_file")
    _check_dsn(dsn, where)
    return dsn


GC_YOUNG = 50_000  # allocations between collections of the youngest generation (Python: 700)
SWITCH_S = 0.0005  # how long a thread holds the interpreter lock while another waits for it (Python: 5 ms)
DSN_HINT = "e.g. host=db.local dbname=trackside user=hub (the password from ~/.pgpass or PGPASSWORD)"


def _check_dsn(dsn: str, where: str) -> None:
    """A DSN that libpq cannot parse, in one line that never repeats it: its parser quotes the text
    it stumbled on, which may be the password."""
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        return  # said when the hub starts: it needs psycopg
    try:
        conninfo_to_dict(dsn)
    except Exception:
        raise GatewayError("the database connection string is malformed (not key=value pairs nor a postgresql:// "
                           "URL; a value with spaces needs single quotes)", where=where, hint=DSN_HINT) from None


def describe(dsn: str) -> str:
    """The DSN without its secrets, for the log and the status page."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(dsn)
    except Exception:
        return "(an unreadable connection string)"
    return " ".join(f"{k}={parts[k]}" for k in ("host", "port", "dbname", "user") if parts.get(k))


def _first_line(exc: Exception, dsn: str) -> str:
    """An error's first line with no value of the DSN that could be a secret in it."""
    from psycopg.conninfo import conninfo_to_dict

    line = (str(exc).splitlines() or [type(exc).__name__])[0]
    try:
        secrets = [str(v) for k, v in conninfo_to_dict(dsn).items() if k in ("password", "passfile", "sslpassword")]
    except Exception:
        secrets = [dsn]
    for secret in secrets:
        if secret:
            line = line.replace(secret, "***")
    return line


class Hub:
    def __init__(self, config: Config, *, port: int | None = None, state_dir: Path | None = None,
                 environ: dict[str, str] | None = None, processes: int = 1, consumer_only: bool = False,
                 log_level: str | None = None) -> None:
        self.config = config
        self.consumer_only = consumer_only
        self.settings = config.settings
        self.port = self.settings.hub.port if port is None else port
        self.state_dir = state_dir or config.state_dir
        self.dsn = read_dsn(self.settings.hub, environ)
        self.status = StatusBoard()
        self.supervisor = Supervisor(self.status, self.state_dir)
        self.consumer = HubConsumer(self.settings, self.connect, client=f"hub-{os.getpid()}")
        self.course = CourseWork(self.settings, self.connect, self.status)
        self.consumer.on_written = self.course.offer
        self.consumer.on_revoked = self.course.revoked
        self.results = PgResults(self.connect)
        self.web_port: int | None = None
        self.server: Any = None
        self.broadcaster: Any = None
        self._stop = threading.Event()
        # A worker's hub, as the hub said it (by the time this runs it may already be gone).
        self._parent = int((os.environ if environ is None else environ).get(HUB_PID, 0) or os.getppid())
        self._threads: dict[str, threading.Thread] = {}
        self._next_boxes = 0.0
        self._boxes: tuple[dict[str, Any], list[str]] = ({}, [])
        # One process consumes itself; with several, they all consume and this one serves the page
        # and watches them (see hub.workers).
        self.workers = Workers(processes, config=None if config.source == EMBEDDED else Path(config.source),
                               state_dir=self.state_dir, log_level=log_level,
                               environ=environ, post=lambda w: self.status.post("workers", workers=w)
                               ) if processes > 1 and not consumer_only else None

    def connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.dsn, connect_timeout=5, application_name="trackside-hub")

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            import psycopg

            with self.connect() as conn:
                version = migrate(conn)
        except ImportError:
            raise GatewayError("the hub needs psycopg", hint="pip install 'trackside-gateway[hub]'") from None
        except psycopg.OperationalError as exc:
            raise DatabaseError(f"cannot reach the database: {_first_line(exc, self.dsn)}", where=describe(self.dsn),
                                hint="check the server and the connection string") from None
        except psycopg.Error as exc:
            raise DatabaseError(f"the database refused the hub: {_first_line(exc, self.dsn)}",
                                where=describe(self.dsn), hint="check the connection string's options") from None
        log.info("trackside-gateway %s hub, group %s, database %s (schema %d), kafka %s", __version__,
                 self.settings.hub.group_id, describe(self.dsn), version, self.settings.kafka.bootstrap_servers)
        handled = self._handle_signals()
        try:
            if self.workers is not None:  # after the migration: the workers find the schema in place
                self.workers.start()
                self._start("hub-workers", lambda: self.workers.watch(self._stop) if self.workers else None)
            if self.workers is None:
                self._start("hub-consumer", lambda: self.consumer.run(self._stop))
            self._start("hub-course", lambda: self.course.run(self._stop))
            if self.settings.hub.web and not self.consumer_only:
                self._start_web()
                self._start("hub-feed", self._feed)
            self.status.post("daemon", state="running", pid=os.getpid(), web_port=self.web_port, mode="hub")
            self._post_status()
            self.supervisor.tick()
            self.supervisor.ready()
            while not self._stop.wait(self.supervisor.tick_interval):
                self._post_status()
                self.supervisor.tick()
                if self._orphaned():
                    break
            log.info("stopping")
        finally:
            self.supervisor.stopping()
            self._stop.set()
            if self.workers is not None:
                self.workers.stop()
            for thread in self._threads.values():
                thread.join(30)
            if self.server is not None:
                self.server.stop()
            self.results.close()
            for sig in handled:
                signal.signal(sig, signal.SIG_DFL)
            self.status.post("daemon", state="stopped", pid=os.getpid(), mode="hub")
            self.supervisor.write_status_file(final=True)

    def _orphaned(self) -> bool:
        """A worker whose hub is gone (killed outright: systemd's cgroup would have taken the workers
        too, a shell or a test does not) stops, leaving the group, rather than consume unwatched."""
        if not self.consumer_only or os.getppid() == self._parent:
            return False
        log.warning("the hub process that started this worker (pid %d) is gone: stopping", self._parent)
        return True

    def _start(self, name: str, target: Any) -> None:
        def guarded() -> None:
            while not self._stop.is_set():
                try:
                    target()
                    return
                except Exception:
                    log.exception("%s failed; starting it again in 5 s", name)
                    self.status.post(f"task.{name}", state="restarting", error="see the log")
                    self._stop.wait(5.0)

        thread = threading.Thread(target=guarded, name=name, daemon=True)
        self._threads[name] = thread
        thread.start()

    def _handle_signals(self) -> list[int]:
        if threading.current_thread() is not threading.main_thread():
            return []  # tests run the hub in a thread: stop() still works
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())
        return [signal.SIGTERM, signal.SIGINT]

    def _start_web(self) -> None:
        from gateway.web.app import create_app
        from gateway.web.parts import Guards, WebParts
        from gateway.web.server import WebServer
        from gateway.web.stream import Broadcaster

        web, hub = self.settings.web, self.settings.hub
        self.broadcaster = Broadcaster(self.results, self.settings.metrics.min_coverage)
        server = WebServer(None, hub.host, self.port, streams=web.max_streams, request_threads=web.request_threads,
                           max_body=max(web.max_body_kb * 1024, web.max_upload_mb * 2**20))
        from gateway.hub.files import HubCompletion

        files = HubCompletion(self.settings, self.connect, self.course.offer)
        from gateway.watch.metrics import registry

        server.set_app(create_app(WebParts(self.config, self.status, Guards.of(web), results=self.results,
                                           broadcaster=self.broadcaster, health=self.health,
                                           metrics=registry(self.status, hub=True), stop=server.stop_streams,
                                           files=files, hub=True)))
        server.start()
        self.server, self.web_port = server, server.port

    def _feed(self) -> None:
        """New results (written by any hub of the group) to this page's live streams, in hub_seq order."""
        import psycopg

        last = self.results.last_seq()
        while not self._stop.wait(0.2):
            try:
                for seq, result in self.results.results_since(last):
                    self.broadcaster.publish(seq, result)
                    last = seq
            except psycopg.OperationalError:
                self._stop.wait(2.0)  # the consumer reports the database's state

    def health(self) -> dict[str, Any]:
        threads = {name: t.is_alive() for name, t in self._threads.items()}
        stats = self._consumers()
        threads["database"] = bool(stats["db_connected"] or not stats["batches"])
        return self.supervisor.alive(web_ok=True, threads=threads)

    def _post_status(self) -> None:
        if time.monotonic() >= self._next_boxes:
            self._next_boxes = time.monotonic() + 5.0
            try:
                rows = self.results.spools()
            except GatewayError:
                rows = None  # the database is away: the consumer says so
            if rows is not None:
                self._boxes = spool_report([[float(v) if isinstance(v, Decimal) else v for v in r] for r in rows],
                                           time.time())
        boxes, warnings = self._boxes
        self.status.post("hub", group=self.settings.hub.group_id, database=describe(self.dsn), boxes=boxes,
                         warnings=warnings, **self._consumers())

    def _consumers(self) -> dict[str, Any]:
        """The consumer figures: this process's, or its workers' together."""
        if self.workers is None:
            return self.consumer.stats.snapshot()
        return merged(self.workers.stats(), self.workers.carried)


def tune_interpreter() -> None:
    """Python tuned for a hub process, from profiles of two workers on a three-box backlog.

    The cycle collector: each batch makes some hundred thousand objects (messages, rows), none of
    them in a cycle, and the collector walking them and everything imported at start-up took 8 % of
    a consumer's CPU. What start-up made is set aside for good (``gc.freeze``), and the youngest
    generation is collected every 50 000 allocations instead of 700: cycles are still collected, later.

    The interpreter lock: the writer thread sends a batch to PostgreSQL in pieces, and after each
    it waited up to Python's 5 ms for the lock while the consumer's thread decoded the next batch;
    PostgreSQL's backend sat idle meanwhile. Handing the lock over every 0.5 ms keeps it fed: one
    process 144 170 -> 168 323 events/s, two 202 107 -> 212 205, with less CPU a row, not more (an
    A/B on ``tools/bench hub.scale`` before it settled the server between runs)."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG, 20, 20)
    sys.setswitchinterval(SWITCH_S)


def run(config: Config, port: int | None = None, state_dir: Path | None = None, *, processes: int = 1,
        consumer_only: bool = False, log_level: str | None = None) -> None:
    hub = Hub(config, port=port, state_dir=state_dir, processes=processes, consumer_only=consumer_only,
              log_level=log_level)
    tune_interpreter()
    started = time.monotonic()
    hub.run()
    log.info("hub stopped after %.0f s", time.monotonic() - started)
