"""The coach's own record of riders, kept in the state directory over the YAML roster: riders added
or renamed from the page, FTP and weight with the date from which each value holds, and which
power meter or timing chip is whose since when.

A session uses the values valid on its date (a replay: the recording's date), so IF, TSS and W/kg
of last month's session do not change when today's FTP test raises a rider's FTP. The file is
written whole to a temporary file and renamed: a power cut leaves the old book or the new one. A
change is made to a copy, which is kept only once it is on disk: a full disk refuses the change
and leaves the book as it was. A file that cannot be read or is not a rider book (checked against
``BOOK_SCHEMA``, with its path and line) is moved aside and the box starts from the config's
riders, saying so on the status strip: it never keeps the box from starting.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import orjson

from gateway.config.settings import MeterSettings, RiderSettings
from gateway.config.validate import check_against
from gateway.errors import GatewayError
from gateway.model import parse_day

log = logging.getLogger(__name__)

METER_KINDS = ("ant", "ble", "chip")
RIDER_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # as the config's riders[].id: it goes in URLs and file names
SENSOR = re.compile(r"^[\x21-\x7e]{1,64}$")  # a device number, a BLE address or name, a chip id
HISTORY_KEPT = 2000  # pairing changes kept in the file (a session's record carries its own few)
T = TypeVar("T")
_NAME = {"type": "string", "minLength": 1, "maxLength": 80}
BOOK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "riders": {"type": "object", "propertyNames": {"pattern": RIDER_ID.pattern}, "additionalProperties": {
            "type": "object", "additionalProperties": False, "properties": {
                "name": _NAME, "squad": {"type": ["string", "null"], "maxLength": 80},
                "profile": {"type": "array", "items": {
                    "type": "object", "additionalProperties": False, "required": ["from"], "properties": {
                        "from": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
                        "ftp_w": {"type": ["number", "null"], "minimum": 30, "maximum": 700},
                        "weight_kg": {"type": ["number", "null"], "minimum": 25, "maximum": 200},
                        "recorded": {"type": "number"}}}}}}},
        "pairings": {"type": "object", "propertyNames": {"pattern": r"^(ant|ble|chip):[\x21-\x7e]{1,64}$"},
                     "additionalProperties": {
                         "type": "object", "required": ["rider"], "additionalProperties": False, "properties": {
                             "rider": {"type": ["string", "null"], "pattern": RIDER_ID.pattern},
                             "from": {"type": "number"}}}},
        "history": {"type": "array", "items": {"type": "object"}},
    },
}


class RiderBookError(GatewayError):
    """A rider or a pairing that cannot be recorded as asked."""


class BookNotSaved(RiderBookError):
    """The book could not be written (a full disk): the change was not made (HTTP 503)."""

    http_status = 503


def day_of(t: float) -> str:
    """A UTC date, YYYY-MM-DD: the key of a profile's validity."""
    return time.strftime("%Y-%m-%d", time.gmtime(t))


def _check_day(day: object) -> str:
    """The day in the one form the book compares (YYYY-MM-DD: as text, that sorts as dates do)."""
    try:
        return parse_day(day).isoformat()
    except ValueError as exc:
        raise RiderBookError(str(exc), hint="write it as YYYY-MM-DD, e.g. 2026-02-01") from None


def _sensor_key(kind: str, sensor: str) -> str:
    if kind not in METER_KINDS:
        raise RiderBookError(f"unknown kind {kind!r}", hint="use ant, ble or chip")
    sensor = sensor.strip()
    if not sensor:
        raise RiderBookError("no device number, address or chip given")
    if not SENSOR.match(sensor):
        raise RiderBookError(f"{sensor[:40]!r} is not a device number, address or chip id",
                             hint="up to 64 printable characters without spaces")
    return f"{kind}:{sensor.lower() if kind != 'chip' else sensor}"


class RiderBook:
    """Thread-safe; every change is saved before it returns."""

    def __init__(self, path: Path, roster: Sequence[RiderSettings]) -> None:
        self.path = path
        self.roster = tuple(roster)
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {"riders": {}, "pairings": {}, "history": []}
        # Why the book on disk was not used (it was moved aside), for the status strip; None when it was.
        self.damaged: str | None = None
        if path.exists():
            problem = self._load()
            if problem is not None:
                self._set_aside(problem)

    def _load(self) -> str | None:
        """Read the book; what is wrong with it, or None."""
        try:
            text = self.path.read_bytes().decode("utf-8")
            loaded = orjson.loads(text)  # NaN and infinities are refused, as in the API
        except (OSError, UnicodeDecodeError) as exc:
            return f"cannot be read ({getattr(exc, 'strerror', None) or exc})"
        except orjson.JSONDecodeError as exc:
            return f"not JSON ({exc})"
        problems = check_against(loaded, BOOK_SCHEMA, text)
        if problems:
            first = problems[0]
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            at = f"{first.path} (line {first.line}): " if first.path and first.line else (
                f"{first.path}: " if first.path else "")
            return f"{at}{first.message}{more}"
        for rider_id, entry in loaded.get("riders", {}).items():
            for i, p in enumerate(entry.get("profile", [])):
                try:
                    parse_day(p["from"])
                except ValueError as exc:
                    return f"riders.{rider_id}.profile[{i}].from: {exc}"
        self._data.update(loaded)
        return None

    def _set_aside(self, problem: str) -> None:
        aside = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
        try:
            os.replace(self.path, aside)
            kept = f"kept as {aside.name}"
        except OSError as exc:
            kept = f"left in place ({exc.strerror or exc})"
        self.damaged = (f"{self.path.name}: {problem}; {kept}; the riders of the configuration are used "
                        "(riders added, values and pairings made on the page must be set again)")
        log.error("rider book %s", self.damaged)

    # -- riders and profiles -------------------------------------------------------------------

    @staticmethod
    def _entry(data: dict[str, Any], rider_id: str) -> dict[str, Any]:
        entry: dict[str, Any] = data["riders"].setdefault(rider_id, {})
        entry.setdefault("profile", [])
        return entry

    def _change(self, edit: Callable[[dict[str, Any]], T]) -> T:
        """Apply ``edit`` to a copy of the book, write the copy, and only then keep it: a change that
        cannot reach the disk changes nothing in memory either (the caller holds the lock)."""
        data = copy.deepcopy(self._data)
        out = edit(data)
        data["history"] = data["history"][-HISTORY_KEPT:]
        self._save(data)
        self._data = data
        return out

    def known(self, rider_id: str) -> bool:
        return rider_id in self._data["riders"] or any(r.id == rider_id for r in self.roster)

    def add(self, rider_id: str, name: str, squad: str | None = None) -> None:
        """A new rider, or a new name (and squad) for a known one."""
        rider_id, name = rider_id.strip(), name.strip()
        if not name or len(name) > 80 or not name.isprintable():
            raise RiderBookError("a rider needs a name (up to 80 printable characters)",
                                 hint="type it in the name field, for example Anna Keller")
        if not RIDER_ID.match(rider_id):
            raise RiderBookError(f"{rider_id[:64]!r} cannot be a rider's id: up to 64 letters, digits, _ . -",
                                 hint="give none and the box gives the next free one (r07)")
        if squad is not None and (len(squad.strip()) > 80 or not squad.isprintable()):
            raise RiderBookError("a squad is up to 80 printable characters")

        def edit(data: dict[str, Any]) -> None:
            entry = self._entry(data, rider_id)
            entry["name"] = name
            if squad is not None:
                entry["squad"] = squad.strip() or None

        with self._lock:
            self._change(edit)

    def set_profile(self, rider_id: str, *, ftp_w: float | None = None, weight_kg: float | None = None,
                    day: str | None = None) -> dict[str, Any]:
        """FTP and/or weight from ``day`` (default today) on; a value for the same day replaces it."""
        if not self.known(rider_id):
            raise RiderBookError(f"no rider {rider_id!r}", hint="add the rider first")
        if ftp_w is None and weight_kg is None:
            raise RiderBookError("give an FTP (W) or a weight (kg)")
        if ftp_w is not None and not 30 <= ftp_w <= 700:
            raise RiderBookError(f"an FTP of {ftp_w:g} W is not plausible", hint="between 30 and 700 W")
        if weight_kg is not None and not 25 <= weight_kg <= 200:
            raise RiderBookError(f"a weight of {weight_kg:g} kg is not plausible", hint="between 25 and 200 kg")
        day = _check_day(day or day_of(time.time()))
        with self._lock:
            current = self._valid(rider_id, day)
            value = {"from": day, "ftp_w": ftp_w if ftp_w is not None else current.get("ftp_w"),
                     "weight_kg": weight_kg if weight_kg is not None else current.get("weight_kg"),
                     "recorded": time.time()}

            def edit(data: dict[str, Any]) -> None:
                entry = self._entry(data, rider_id)
                entry["profile"] = sorted([p for p in entry["profile"] if p["from"] != day] + [value],
                                          key=lambda p: p["from"])

            self._change(edit)
            return value

    def _valid(self, rider_id: str, day: str) -> dict[str, Any]:
        base = next((r for r in self.roster if r.id == rider_id), None)
        out: dict[str, Any] = {"ftp_w": base.ftp_w if base else None, "weight_kg": base.weight_kg if base else None,
                               "from": None}
        for p in self._data["riders"].get(rider_id, {}).get("profile", []):
            if p["from"] <= day:
                out = {k: p.get(k) for k in ("ftp_w", "weight_kg", "from")}
        return out

    def riders_on(self, t: float) -> tuple[RiderSettings, ...]:
        """The roster as it stood on the date of ``t``: YAML riders, then riders added on the page;
        names, FTP and weight as recorded; meters and chips as paired now."""
        day = day_of(t)
        with self._lock:
            pairs = self._data["pairings"]
            out: list[RiderSettings] = []
            in_yaml = {r.id for r in self.roster}
            ids = [r.id for r in self.roster] + [i for i in self._data["riders"] if i not in in_yaml]
            for rider_id in ids:
                base = next((r for r in self.roster if r.id == rider_id), None) or RiderSettings(rider_id, rider_id)
                entry = self._data["riders"].get(rider_id, {})
                valid = self._valid(rider_id, day)
                paired = [k for k, v in pairs.items() if v["rider"] == rider_id]
                # A meter or chip paired on the page moves to its new rider: it leaves the YAML one.
                meters = tuple(m for m in base.power_meters if f"{m.kind}:{m.id.lower()}" not in pairs)
                meters += tuple(MeterSettings(k.split(":", 1)[0], k.split(":", 1)[1]) for k in paired
                                if not k.startswith("chip:"))
                chips = [k.split(":", 1)[1] for k in paired if k.startswith("chip:")]
                transponder = chips[0] if chips else (None if base.transponder and f"chip:{base.transponder}" in pairs
                                                      else base.transponder)
                out.append(replace(base, name=entry.get("name") or base.name,
                                   squad=entry.get("squad", base.squad) if "squad" in entry else base.squad,
                                   ftp_w=valid["ftp_w"], weight_kg=valid["weight_kg"], power_meters=meters,
                                   transponder=transponder))
            return tuple(out)

    def profiles(self) -> list[dict[str, Any]]:
        """Every rider with the history of their values, for the page."""
        riders = self.riders_on(time.time())
        with self._lock:
            base = {b.id: b for b in self.roster}
            # ``configured``: the values the configuration gives, in force before any date set here.
            return [{"id": r.id, "name": r.name, "squad": r.squad, "ftp_w": r.ftp_w, "weight_kg": r.weight_kg,
                     "history": list(self._data["riders"].get(r.id, {}).get("profile", [])),
                     "configured": {"ftp_w": base[r.id].ftp_w, "weight_kg": base[r.id].weight_kg} if r.id in base
                     else None, "added": r.id not in base} for r in riders]

    # -- pairings ------------------------------------------------------------------------------

    def pair(self, kind: str, sensor: str, rider_id: str) -> dict[str, Any]:
        """``sensor`` is ``rider_id``'s from now on (a swap moves it from its previous rider)."""
        key = _sensor_key(kind, sensor)
        if not self.known(rider_id):
            raise RiderBookError(f"no rider {rider_id!r}", hint="add the rider first")
        with self._lock:
            return self._pair(key, rider_id)

    def unpair(self, kind: str, sensor: str) -> dict[str, Any]:
        """``sensor`` is nobody's from now on (over a YAML pairing too)."""
        key = _sensor_key(kind, sensor)
        with self._lock:
            return self._pair(key, None)

    def _pair(self, key: str, rider_id: str | None) -> dict[str, Any]:
        now = time.time()
        before = self._data["pairings"].get(key)
        previous = before["rider"] if before else None

        def edit(data: dict[str, Any]) -> None:
            data["pairings"][key] = {"rider": rider_id, "from": now}
            data["history"].append({"at": now, "sensor": key, "rider": rider_id, "before": previous})

        self._change(edit)
        return {"sensor": key, "rider": rider_id, "from": now, "before": previous}

    def pairings(self) -> dict[str, str]:
        """Sensor key ("ant:12345", "ble:aa:bb:..", "chip:DM-0007") -> rider id, YAML and page together."""
        out: dict[str, str] = {}
        for r in self.roster:
            for m in r.power_meters:
                out[f"{m.kind}:{m.id.lower()}"] = r.id
            if r.transponder:
                out[f"chip:{r.transponder}"] = r.id
        with self._lock:
            for key, value in self._data["pairings"].items():
                if value["rider"] is None:
                    out.pop(key, None)
                else:
                    out[key] = value["rider"]
        return out

    def history(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._data["history"])

    def warnings(self) -> list[str]:
        """What a coach must see, in words, with what to do: a meter the YAML gives to two riders, a
        rider with two meters or two chips (which one counts?)."""
        riders = {r.id: r for r in self.riders_on(time.time())}

        def who(rider_id: str) -> str:
            return riders[rider_id].name if rider_id in riders else rider_id

        owners: dict[str, list[str]] = {}
        for r in self.roster:
            for m in r.power_meters:
                owners.setdefault(f"{m.kind}:{m.id.lower()}", []).append(r.id)
        with self._lock:
            overridden = set(self._data["pairings"])
        out = [f"{device_name(key)} is given to {' and '.join(who(i) for i in ids)} in the configuration: choose "
               "its rider below" for key, ids in sorted(owners.items()) if len(ids) > 1 and key not in overridden]
        by_rider: dict[tuple[str, str], list[str]] = {}
        for key, rider in self.pairings().items():
            by_rider.setdefault((rider, key.split(":", 1)[0]), []).append(key)
        for (rider, kind), keys in sorted(by_rider.items()):
            if len(keys) < 2:
                continue
            names = " and ".join(device_name(k) for k in sorted(keys))
            if kind == "chip":
                counted = riders[rider].transponder if rider in riders else None
                out.append(f"{who(rider)} has {len(keys)} chips ({names}): only chip {counted} counts at the gates; "
                           "set the other to nobody")
            else:
                out.append(f"{who(rider)} has {len(keys)} power meters ({names}): both feed the same rider's "
                           "power; set the one not on the bike to nobody")
        return out

    def next_id(self) -> str:
        """The next free id of the form r01, r02, ... (a new rider the coach only named)."""
        with self._lock:
            taken = set(self._data["riders"]) | {r.id for r in self.roster}
        numbers = [int(m.group(1)) for i in taken if (m := re.fullmatch(r"r(\d+)", i))]
        n = max(numbers, default=0) + 1
        while f"r{n:02d}" in taken:
            n += 1
        return f"r{n:02d}"

    def _save(self, data: dict[str, Any]) -> None:
        """Write ``data`` whole, then rename it over the book; on any failure nothing is left behind
        and ``BookNotSaved`` says why."""
        tmp = self.path.with_suffix(".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True, allow_nan=False)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise BookNotSaved(f"the change was not saved ({exc.strerror or exc}) and was not made",
                               where=str(self.path), hint="free space on the box's disk and try again") from None


def device_name(key: str) -> str:
    """A sensor key as a coach reads it: "ant:12345" -> "ANT+ 12345", "chip:DM-0001" -> "chip DM-0001"."""
    kind, _, sensor = key.partition(":")
    return {"ant": f"ANT+ {sensor}", "ble": f"Bluetooth {sensor}", "chip": f"chip {sensor}"}.get(kind, key)
