"""`trackside-gateway session ...` and `rider ...`: the set-up the page does, from a terminal. They ask
the running daemon (its page's API on the box itself), which owns the spool and the rider book."""

from __future__ import annotations

import argparse
import json
import os
import time
import unicodedata
import urllib.parse
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError


def add_parsers(sub: Any) -> None:
    session = sub.add_parser("session", help="start, end or list the box's sessions, add riders' files to one "
                                               "(asks the running daemon)")
    session.add_argument("action", choices=["start", "end", "list", "show", "add-files"])
    session.add_argument("words", nargs="*", metavar="NAME | SESSION FILE...",
                         help="the session's name (start); the session and the files (add-files)")
    session.add_argument("--whose", action="append", default=[], metavar="FILE=RIDER",
                         help="add-files: the rider a file belongs to, when the box asked (repeat)")
    session.add_argument("--offset", action="append", default=[], metavar="FILE=SECONDS",
                         help="add-files: seconds from the file's clock to the box's, when the box asked (repeat)")
    session.add_argument("--rider", action="append", default=[], help="a rider present (repeat; default: all)")
    session.add_argument("--tag", action="append", default=[], help="name=value, e.g. tyres=1.6bar (repeat)")
    session.add_argument("--notes", default="", help="free notes")
    _remote_args(session)

    rider = sub.add_parser("rider", help="list or add riders and record FTP and weight with their date")
    rider.add_argument("action", choices=["list", "add", "set"])
    rider.add_argument("id", nargs="?")
    rider.add_argument("name", nargs="?", help="the rider's name (add; renames a known rider)")
    rider.add_argument("--squad")
    rider.add_argument("--ftp", type=float, help="FTP in W (set)")
    rider.add_argument("--weight", type=float, help="weight in kg (set)")
    rider.add_argument("--from", dest="day", help="valid from this date, YYYY-MM-DD (set; default today)")
    _remote_args(rider)


def _remote_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="the daemon's YAML config (for its port and PIN)")
    p.add_argument("--url", help="the daemon's page (default http://127.0.0.1:<web.port>)")
    p.add_argument("--pin", help="the admin PIN (default: $TRACKSIDE_PIN, else web.admin_token of the config)")


def _call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None,
          form: tuple[bytes, str] | None = None) -> Any:
    import urllib.error  # here: every command builds these parsers; only these ask a daemon
    import urllib.request

    from gateway import config

    cfg = config.load(args.config)
    url = (args.url or f"http://127.0.0.1:{cfg.settings.web.port}").rstrip("/") + path
    pin = args.pin or os.environ.get("TRACKSIDE_PIN") or cfg.settings.web.admin_token or ""
    data = form[0] if form else json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": form[1] if form else "application/json",
                                              "X-Admin-Token": pin})
    try:
        with urllib.request.urlopen(request, timeout=90) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        try:
            said = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            said = exc.reason
        hint = "give the admin PIN with --pin or $TRACKSIDE_PIN" if exc.code == 401 else None
        raise GatewayError(str(said), where=url, hint=hint) from None
    except OSError as exc:
        raise GatewayError(f"the gateway does not answer ({exc})", where=url,
                           hint="is `trackside-gateway run` running? give its page with --url") from None


def cmd_session(args: argparse.Namespace) -> int:
    if args.action == "add-files":
        return _add_files(args)
    if args.action == "start":
        if len(args.words) != 1:
            raise GatewayError("session start needs a name", hint="trackside-gateway session start 'Hill repeats'")
        out = _call(args, "POST", "/api/session/start",
                    {"name": args.words[0], "riders": args.rider or None, "tags": args.tag, "notes": args.notes})
        print(_clean(f"session {out['session']} started: {out['name']}"))
    elif args.action == "end":
        out = _call(args, "POST", "/api/session/end", {})
        print(_clean(f"session {out['session']} ended: {out['name']}"))
    elif args.action == "show":
        out = _call(args, "GET", "/api/session")
        kind = "started" if out.get("named") else "automatic"
        print(_clean(f"{out['session']}\t{out['name']}\t{kind}\t{_when(out.get('started'))}\t"
                     + " ".join(f"{k}={v}" for k, v in (out.get("tags") or {}).items())))
    else:
        for s in _call(args, "GET", "/api/sessions"):
            when = _when(s.get("started") or s["first"])
            name, kind = s.get("name") or "", s.get("kind") or ""
            print(_clean(f"{s['session']}\t{name}\t{kind}\t{when}\t{s['results']} results"))
    return 0


def _add_files(args: argparse.Namespace) -> int:
    if len(args.words) < 2:
        raise GatewayError("session add-files needs a session and files",
                           hint="trackside-gateway session add-files SESSION ride1.fit ride2.fit")
    session, paths = args.words[0], [Path(p) for p in args.words[1:]]
    fields: list[tuple[str, str, bytes]] = []
    for path in paths:
        try:
            fields.append(("files", path.name, path.read_bytes()))
        except OSError as exc:
            raise GatewayError(f"cannot read the file: {exc.strerror or exc}", where=str(path)) from None
    for option, prefix in ((args.whose, "rider:"), (args.offset, "offset:")):
        for item in option:
            name, sep, value = item.partition("=")
            if not sep:
                raise GatewayError(f"{item!r}: give FILE=VALUE", hint="--whose ride1.fit=r03 --offset ride1.fit=-37.5")
            fields.append((prefix + Path(name).name, "", value.encode()))
    out = _call(args, "POST", f"/api/sessions/{urllib.parse.quote(session, safe='')}/files", form=_multipart(fields))
    failed = 0
    for f in out["files"]:
        print(_clean(f"{f['status']}: {f['message']}"))
        for c in f.get("candidates") or ():
            print(_clean(f"    {c['rider_id']}\t{c['name']}\t{c['evidence']}"))
        failed += f["status"] in ("refused", "choose")
    return 1 if failed else 0


def _multipart(fields: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body: (field, file name or "" for a plain field, bytes)."""
    boundary = "trackside-" + os.urandom(12).hex()
    out = bytearray()
    for name, filename, data in fields:
        out += f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"".encode()
        if filename:
            safe = filename.replace('"', "_").replace("\r", "_").replace("\n", "_")
            out += f"; filename=\"{safe}\"\r\nContent-Type: application/octet-stream".encode()
        out += b"\r\n\r\n" + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def cmd_rider(args: argparse.Namespace) -> int:
    if args.action == "list":
        for r in _call(args, "GET", "/api/riders"):
            print(_clean(f"{r['id']}\t{r['name']}\t{r['ftp_w'] if r['ftp_w'] is not None else '-'} W\t"
                         f"{r['weight_kg'] if r['weight_kg'] is not None else '-'} kg\t"
                         + ", ".join(f"{h['from']}: {h['ftp_w']} W {h['weight_kg']} kg" for h in r["history"])))
        return 0
    if not args.id:
        raise GatewayError(f"rider {args.action} needs a rider id")
    if args.action == "add":
        if not args.name:
            raise GatewayError("rider add needs a name", hint="trackside-gateway rider add r07 Mia")
        _call(args, "POST", "/api/riders", {"id": args.id, "name": args.name, "squad": args.squad})
        print(_clean(f"rider {args.id}: {args.name}"))
        return 0
    out = _call(args, "POST", f"/api/riders/{urllib.parse.quote(args.id, safe='')}/profile",
                {"ftp_w": args.ftp, "weight_kg": args.weight, "from": args.day})
    print(_clean(f"rider {args.id}: {out['ftp_w']} W, {out['weight_kg']} kg from {out['from']}"))
    return 0


def _clean(text: str) -> str:
    """A line for the terminal: control characters in names (an escape sequence cleared the terminal
    and set its title) are shown as their code, never sent to the terminal."""
    return "".join(c if c == "\t" or unicodedata.category(c) not in ("Cc", "Cf") else f"\\x{ord(c):02x}"
                   for c in text)


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else ""
