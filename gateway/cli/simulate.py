"""`trackside-gateway simulate`: how much of each segment boxes placed here and there would hear,
before a session; and the feeds that drive box daemons through their ``sim`` source (tests,
rehearsals)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.errors import GatewayError
from gateway.simulate.world import TERRAIN, Gate, SimCourse, World, boxes_at, demo_course, riders_from

if TYPE_CHECKING:
    from gateway.simulate.ride import Session

DEFAULT_LAYOUTS = ("SF", "SF,G2", "SF,G1,G2")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("simulate", help="how much of each segment boxes at given places hear (a table, a picture); "
                                        "feeds for box daemons",
                       description="Simulates the course with the config's riders: meters broadcasting four times a "
                                   "second, boxes hearing them within --range metres. Coverage: the share of each "
                                   "segment's seconds with power from any box.")
    p.add_argument("--layout", action="append", help="boxes at gates or distances in metres, comma-separated "
                                                     "(repeat to compare; default: SF / SF,G2 / SF,G1,G2)")
    p.add_argument("--range", type=float, default=30.0, dest="range_m", help="radio range in metres (default 30)")
    p.add_argument("--laps", type=int, default=3)
    p.add_argument("--course", help="gates along the lap, ID:METRES,... from the start/finish at 0 "
                                    "(default: the demo loop, SF:0,G1:1300,G2:2300,G3:3300)")
    p.add_argument("--lap-m", type=float, help="the lap's length in metres (with --course)")
    p.add_argument("--terrain", help=f"each segment's terrain, comma-separated ({', '.join(TERRAIN)})")
    p.add_argument("--config", type=Path, help="YAML config whose riders ride (default: the embedded defaults)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--svg", type=Path, help="write a picture of the lap and the last layout's coverage")
    p.add_argument("--feeds", type=Path, help="write each box's feed of the last layout here (for `sim` sources)")
    p.add_argument("--json", action="store_true", help="the table as JSON")


def course_of(args: argparse.Namespace) -> SimCourse:
    if not args.course:
        return demo_course()
    gates = []
    for part in args.course.split(","):
        gate, _, metres = part.partition(":")
        try:
            gates.append(Gate(gate.strip(), float(metres)))
        except ValueError:
            raise GatewayError(f"--course: {part!r} is not ID:METRES", where="simulate") from None
    terrain = tuple(t.strip() for t in args.terrain.split(",")) if args.terrain else ("flat",) * len(gates)
    lap = args.lap_m or (gates[-1].at_m * len(gates) / max(1, len(gates) - 1))
    try:
        return SimCourse(lap, tuple(gates), terrain)
    except ValueError as exc:
        raise GatewayError(f"--course: {exc}", where="simulate", hint="e.g. --course SF:0,G1:1300 --lap-m 2500 "
                                                                      "--terrain climb,descent") from None


def cmd_simulate(args: argparse.Namespace) -> int:
    # Imported here: every command builds this parser, only `simulate` rides the course.
    from gateway import config
    from gateway.simulate.coverage import coverage_table, format_table, svg
    from gateway.simulate.ride import simulate

    if args.laps < 1 or args.range_m <= 0:
        raise GatewayError("--laps must be at least 1 and --range above 0", where="simulate")
    settings = config.load(args.config).settings
    course = course_of(args)
    riders = riders_from([(r.id, r.name, r.ftp_w, r.transponder) for r in settings.riders])
    tables: dict[str, list[tuple[int, str, str, float]]] = {}
    session: Session | None = None
    for layout in args.layout or DEFAULT_LAYOUTS:
        places = [p.strip() for p in layout.split(",") if p.strip()]
        try:
            boxes = boxes_at(course, places, args.range_m)
        except ValueError:
            raise GatewayError(f"--layout {layout!r}: a place is a gate id ({', '.join(g.id for g in course.gates)}) "
                               "or metres along the lap", where="simulate") from None
        session = simulate(World(course, riders, boxes, laps=args.laps), seed=args.seed)
        tables[f"{len(places)} box{'es' if len(places) > 1 else ''}: {'+'.join(places)}"] = coverage_table(session)
    assert session is not None
    if args.json:
        print(json.dumps({name: [{"segment": k, "gates": g, "terrain": t, "coverage": round(c, 4)}
                                 for k, g, t, c in rows] for name, rows in tables.items()}, indent=2))
    else:
        print(f"coverage of each segment (share of its seconds with power), {len(riders)} riders, {args.laps} laps, "
              f"radio range {args.range_m:g} m")
        print(format_table(tables))
    if args.svg:
        args.svg.write_text(svg(session, f"{course.lap_m:g} m lap, {list(tables)[-1]}"))
    if args.feeds:
        write_feeds(session, args.feeds)
    return 0


def write_feeds(session: Session, folder: Path) -> None:
    """Each box's feed (``<box>.jsonl``: what it hears, in its clock's order) and the world's riders
    and boxes (``world.json``), for box daemons' ``sim`` sources and for tests."""
    folder.mkdir(parents=True, exist_ok=True)
    for box, feed in session.feeds.items():
        with (folder / f"{box}.jsonl").open("w") as out:
            for h in feed:
                line = ({"t": h.box_t, "ant": h.device, "page": h.page.hex()} if h.kind == "ant"
                        else {"t": h.box_t, "chip": h.transponder, "gate": h.gate, "chip_t": h.chip_t})
                out.write(json.dumps(line) + "\n")
    world = session.world
    (folder / "world.json").write_text(json.dumps({
        "t0": world.t0, "laps": world.laps,
        "riders": [{"id": r.rider_id, "name": r.name, "device": r.device, "transponder": r.transponder}
                   for r in world.riders],
        "boxes": [{"id": b.box_id, "at_m": b.at_m, "gates": list(b.gates), "offset_s": b.clock.offset_s,
                   "drift_ppm": b.clock.drift_ppm} for b in world.boxes]}, indent=1))
