"""The `trackside-gateway` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway import __version__
from gateway.errors import ConfigError, GatewayError

log = logging.getLogger("gateway")


def _whole(text: str, low: int, high: int, what: str, give: str) -> int:
    """A whole number from ``low`` to ``high``, or one line saying what to give."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}: give {give}") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{value} is not {what}: give {give}")
    return value


def _port(text: str) -> int:
    """A TCP port, 0 for any free one (99999 listened on a port of the kernel's choosing, -1 failed
    with a traceback)."""
    return _whole(text, 0, 65535, "a port", "1 to 65535, or 0 for any free port")


def _processes(text: str) -> int:
    return _whole(text, 1, 64, "a number of hub processes", "1 to 64")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trackside-gateway",
        description="Power meters and timing gates beside the course, to Kafka and the coach's phone.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                        help="override gateway.log_level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    from gateway.cli import simulate
    from gateway.cli.remote import add_parsers

    _add_box_commands(sub)
    _add_file_commands(sub)
    add_parsers(sub)
    simulate.add_parser(sub)
    return parser


def _add_box_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The commands that run a root or ask a running one: run, check-config, replay, status, hub."""
    run = sub.add_parser("run", help="run the gateway daemon (sources, spool, engine, forwarder, page)")
    run.add_argument("--config", type=Path, help="YAML config (default: the embedded demo defaults)")
    run.add_argument("--state-dir", type=Path, help="override gateway.state_dir")
    run.add_argument("--port", type=_port, help="override web.port (0 picks a free port)")

    check = sub.add_parser("check-config", help="validate a config file: prints OK or every error with its path")
    check.add_argument("file", type=Path)

    replay = sub.add_parser(
        "replay", help="replay recorded sessions (Axiamo Excel, FIT, MyFreelap CSV) through the pipeline",
        description="Files: PATH, RIDER=PATH, PATH@+SECONDS (clock offset), or @sample (the bundled session).")
    replay.add_argument("files", nargs="+")
    replay.add_argument("--config", type=Path, help="YAML config (default: the embedded demo defaults)")
    replay.add_argument("--speed", type=float, help="simulationFactor: 1 real time, 0.5 twice as fast, 0 flat out")
    replay.add_argument("--state-dir", type=Path, help="override gateway.state_dir")
    replay.add_argument("--port", type=_port, help="override web.port")
    replay.add_argument("--no-web", action="store_true", help="no page: exit when the replay ends")
    replay.add_argument("--course-from-file", action="store_true",
                        help="take the course (segments a lap) from the files, not from the config; the default "
                             "when no --config is given")

    status = sub.add_parser("status", help="the running daemon's status: sources, backlog, uplink, disk, clock")
    status.add_argument("--state-dir", type=Path, help="the daemon's state directory (default: from the config)")
    status.add_argument("--config", type=Path, help="YAML config (default: the embedded demo defaults)")
    status.add_argument("--json", action="store_true")

    hub = sub.add_parser("hub", help="the hub: every box's stream from Kafka into PostgreSQL, and the page over it",
                         description="Reads the kafka section's topics in the consumer group hub.group_id and writes "
                                     "them to the PostgreSQL database named by $TRACKSIDE_PG_DSN (or hub.dsn_file).")
    hub.add_argument("--config", type=Path, help="YAML config (default: the embedded demo defaults)")
    hub.add_argument("--port", type=_port, help="override hub.port (0 picks a free port)")
    hub.add_argument("--state-dir", type=Path, help="where the hub keeps its status file")
    hub.add_argument("--processes", type=_processes, default=1,
                     help="consuming processes in the group on this machine (default 1: this one); with more, "
                          "this one serves the page and N workers consume; give the topics at least N partitions")
    hub.add_argument("--consumer-only", action="store_true", help=argparse.SUPPRESS)  # a worker of --processes



def _add_file_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The commands over files: a ride's metrics, a spool's export and report, payloads decoded."""
    metrics = sub.add_parser("metrics", help="NP, IF, TSS and W/kg of a recorded ride (FIT) and of each lap")
    metrics.add_argument("file")
    metrics.add_argument("--ftp", type=float, help="FTP in W (default: what the file records)")
    metrics.add_argument("--weight", type=float, help="rider weight in kg (default: what the file records)")
    metrics.add_argument("--tss-time", choices=["rolling", "timer", "nonzero"], default="rolling",
                         help="seconds TSS counts: the number of 30-s rolling values, as Garmin head units count "
                              "(default); the timer time; or only seconds with non-zero power")
    metrics.add_argument("--np-window", choices=["segment", "ride"], default="segment",
                         help="lap NP: the rolling mean restarted at each lap (default, as the live engine does by "
                              "default) or the ride-long rolling mean restricted to the lap, as head units do")
    metrics.add_argument("--session", type=int, help="with several cycling sessions in the file (a triathlon, a "
                                                     "multi-ride file): which one, from 1 (default 1)")
    metrics.add_argument("--json", action="store_true", help="one JSON object with keys ride and laps")

    export = sub.add_parser("export", help="a session's segment results with z-scores, as CSV, JSON or Excel")
    export.add_argument("--state-dir", type=Path, required=True)
    export.add_argument("--session", help="session id (default: the latest); `--session list` lists them")
    export.add_argument("--format", choices=["csv", "json", "xlsx"], default="csv")
    export.add_argument("--output", type=Path, help="file to write (default: standard output; xlsx needs one)")
    export.add_argument("--config", type=Path, help="YAML config for metrics.min_coverage (default: the embedded "
                                                    "defaults)")

    report = sub.add_parser("report", help="a session's debrief as a PDF to hand over (matrix per lap, latest "
                                           "segments, fatigue, comparisons, conventions, profiles used)")
    report.add_argument("--state-dir", type=Path, required=True)
    report.add_argument("--session", help="session id (default: the latest with results)")
    report.add_argument("--rider", help="one rider's own report (only their data)")
    report.add_argument("--pdf", type=Path, required=True, help="the PDF file to write")
    report.add_argument("--config", type=Path, help="YAML config (default: the embedded demo defaults)")

    decode = sub.add_parser("decode", help="decode ANT+ power pages or BLE 0x2A63 notifications given in hex",
                            description="One payload per argument (quote it if it has spaces); prints one "
                                        "JSON object per payload, with power and cadence once two allow it.")
    decode.add_argument("kind", choices=["ant-power", "ble-power"])
    decode.add_argument("hex", nargs="+")


def cmd_check_config(args: argparse.Namespace) -> int:
    from gateway import config

    try:
        config.load(args.file)
    except ConfigError as exc:
        for line in exc.lines():
            print(line)
        return 2
    print("OK")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from gateway.service import allocator
    from gateway.watch import openssl

    allocator.tune()  # before any thread allocates
    openssl.keep_out()  # before asyncio, secrets and hmac load
    import asyncio

    from gateway import config
    from gateway.service.daemon import Daemon
    from gateway.watch import logs

    cfg = config.load(args.config)
    logs.setup(args.log_level or cfg.settings.gateway.log_level)
    asyncio.run(Daemon(cfg, state_dir=args.state_dir, port=args.port).run())
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    import json

    from gateway.engine.ride import format_report, ride_report
    from gateway.readers.fit import read_fit

    for value, what in ((args.ftp, "--ftp"), (args.weight, "--weight")):
        if value is not None and value <= 0:
            raise GatewayError(f"{what} must be a positive number, got {value:g}")
    report = ride_report(read_fit(args.file, session=args.session), ftp_w=args.ftp, weight_kg=args.weight,
                         tss_time=args.tss_time, np_window=args.np_window)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    import asyncio

    from gateway import config
    from gateway.cli.progress import Progress
    from gateway.service.replay_run import Play, ReplayRun
    from gateway.watch import logs

    cfg = config.load(args.config)
    logs.setup(args.log_level or cfg.settings.gateway.log_level)
    if args.speed is not None:
        from gateway.replay.player import check_factor

        check_factor(args.speed)
    play = Play(args.files, args.speed, True if args.course_from_file else None)
    run = ReplayRun(cfg, play, state_dir=args.state_dir, port=args.port, web=not args.no_web, progress=Progress())
    asyncio.run(run.run())
    refused = run.refused()
    for s in refused:
        print(f"trackside-gateway: replay {s['session']}: {s['rejected']} of {s['position']} events were refused "
              f"by the spool ({run.spool_error or 'spool full'}); {s['stored']} stored", file=sys.stderr)
    return 1 if refused else 0


def cmd_export(args: argparse.Namespace) -> int:
    from gateway import config
    from gateway.results.export import export
    from gateway.results.sqlite import SpoolResults
    from gateway.spool.store import Spool

    path = args.state_dir / "spool.sqlite"
    if not path.exists():
        raise GatewayError("no spool here", where=str(args.state_dir), hint="give the gateway's state directory")
    spool = Spool(path, "export", readonly=True).open()  # never migrates, salvages or writes
    try:
        min_coverage = config.load(args.config).settings.metrics.min_coverage
        return export(SpoolResults(spool), str(path), args.session, (args.format, min_coverage), args.output)
    finally:
        spool.close()


def cmd_report(args: argparse.Namespace) -> int:
    from gateway import config
    from gateway.debrief.report import build
    from gateway.results.export import atomic_output
    from gateway.results.sqlite import SpoolResults
    from gateway.spool.store import Spool

    path = args.state_dir / "spool.sqlite"
    if not path.exists():
        raise GatewayError("no spool here", where=str(args.state_dir), hint="give the gateway's state directory")
    spool = Spool(path, "report", readonly=True).open()
    try:
        store = SpoolResults(spool)
        session, how = _session_named(store.sessions(), args.session, str(path))
        pdf = build(store, session, config.load(args.config).settings, rider=args.rider)
    finally:
        spool.close()
    with atomic_output(args.pdf, binary=True) as out:
        out.write(pdf)
    print(f"report of {session} ({how}){' for ' + args.rider if args.rider else ''} written to {args.pdf} "
          f"({len(pdf) // 1024} KB)", file=sys.stderr)
    return 0


def _session_named(sessions: list[dict[str, Any]], wanted: str | None, where: str) -> tuple[str, str]:
    """The session ``wanted`` names (its id, else its name: the newest of that name), else the newest
    with results; and how it was chosen, in words."""
    with_results = [s for s in sessions if s["results"]]
    if not wanted:
        if not with_results:
            raise GatewayError("no segment results here yet", where=where)
        return with_results[-1]["session"], "the newest session with results"
    if any(s["session"] == wanted for s in sessions):
        return wanted, "by its id"
    named = [s for s in with_results if (s.get("name") or "").casefold() == wanted.casefold()]
    if not named:
        raise GatewayError(f"no session with the id or name {wanted!r}", where=where,
                           hint="trackside-gateway export --state-dir DIR --session list lists them")
    more = f"; {len(named) - 1} older one(s) have that name too" if len(named) > 1 else ""
    return named[-1]["session"], f"the newest session named {wanted!r}{more}"


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from gateway import config
    from gateway.cli.status_report import report
    from gateway.watch.supervise import read_status_file

    state_dir = args.state_dir or config.load(args.config).state_dir
    doc = read_status_file(state_dir)
    if doc is None:
        print(f"trackside-gateway is not running here: no status in {state_dir}")
        return 3
    print(json.dumps(doc, indent=2, default=str) if args.json else report(doc))
    return 3 if doc["stale"] else 0


def cmd_hub(args: argparse.Namespace) -> int:
    from gateway import config
    from gateway.watch import logs

    cfg = config.load(args.config)
    logs.setup(args.log_level or cfg.settings.gateway.log_level)
    try:
        from gateway.hub.daemon import run
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "psycopg":
            raise
        raise GatewayError("the hub needs psycopg, which is not installed",
                           hint="pip install 'trackside-gateway[hub]'") from None
    run(cfg, port=args.port, state_dir=args.state_dir, processes=args.processes, consumer_only=args.consumer_only,
        log_level=args.log_level)
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    from gateway.cli.decode import main as decode_main

    return decode_main(args.kind, args.hex)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "check-config": cmd_check_config,
    "metrics": cmd_metrics,
    "replay": cmd_replay,
    "export": cmd_export,
    "report": cmd_report,
    "status": cmd_status,
    "decode": cmd_decode,
    "hub": cmd_hub,
    "session": lambda args: _remote("cmd_session", args),
    "rider": lambda args: _remote("cmd_rider", args),
    "simulate": lambda args: _simulate(args),
}


def _simulate(args: argparse.Namespace) -> int:
    from gateway.cli.simulate import cmd_simulate

    return cmd_simulate(args)


def _remote(name: str, args: argparse.Namespace) -> int:
    from gateway.cli import remote

    result: int = getattr(remote, name)(args)
    return result


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        from gateway.watch import logs

        logs.setup(args.log_level or "info")
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        for line in exc.lines():
            print(f"trackside-gateway: {line}", file=sys.stderr)
        return exc.exit_code
    except GatewayError as exc:
        print(f"trackside-gateway: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`export ... | head`): nothing more to say, and nothing at exit either
        # (Python would try to flush standard output again and print a traceback).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # as a program killed by SIGPIPE
