"""Who is who: ANT+ device numbers, BLE ids and transponders to rider ids and names."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.config.settings import RiderSettings


class Roster:
    def __init__(self, riders: Sequence[RiderSettings]) -> None:
        self.names = {r.id: r.name for r in riders}
        self._power_cache: dict[tuple[str, str], str | None] = {}
        self._meters: dict[tuple[str, str], str] = {}
        self._transponders: dict[str, str] = {}
        for r in riders:
            for meter in r.power_meters:
                self._meters[(meter.kind, meter.id.lower())] = r.id
            if r.transponder:
                self._transponders[r.transponder] = r.id

    def rider_for_power(self, source: str, sensor: str) -> str | None:
        key = (source, sensor)
        try:
            return self._power_cache[key]
        except KeyError:
            rider = self._power_cache[key] = self._lookup_power(source, sensor)
            return rider

    def _lookup_power(self, source: str, sensor: str) -> str | None:
        kind = source.split(":", 1)[0]
        if kind in ("ant", "ble"):
            return self._meters.get((kind, sensor.lower()))
        # Replayed files and generated load name their rider directly.
        return sensor if sensor in self.names else None

    def rider_for_crossing(self, source: str, transponder: str) -> str | None:
        rider = self._transponders.get(transponder)
        if rider is None and source.startswith("replay:") and transponder in self.names:
            return transponder  # a power file's own laps: the "transponder" is its rider
        return rider
