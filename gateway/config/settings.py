"""The validated configuration as frozen, typed settings: parsed once, read everywhere.

The JSON Schema (config/schema.json) stays the one place that says what is allowed and what the
defaults are; these classes only give the filled-in document types, so no layer reads raw dicts.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class GatewaySettings:
    id: str
    state_dir: Path
    log_level: str = "info"
    session_gap_h: float = 6.0


@dataclass(frozen=True)
class GateSettings:
    id: str
    name: str | None = None


@dataclass(frozen=True)
class SegmentSettings:
    name: str
    terrain: str | None = None


@dataclass(frozen=True)
class CourseSettings:
    gates: tuple[GateSettings, ...]
    segments: tuple[SegmentSettings, ...] = ()
    name: str | None = None
    id: str | None = None
    debounce_s: float = 5.0
    max_segment_s: float = 3600.0

    @property
    def gate_ids(self) -> list[str]:
        return [g.id for g in self.gates]

    @property
    def key(self) -> str:
        """The course's id, or one made from its name: what results are compared on across sessions."""
        if self.id:
            return self.id
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", (self.name or "course").lower()).strip("-")[:64] or "course"

    def as_dict(self) -> dict[str, Any]:
        """The course as the page and the API show it."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class MetricsSettings:
    np_window: str = "segment"


@dataclass(frozen=True)
class MeterSettings:
    kind: str  # "ant" or "ble"
    id: str  # the ANT+ device number as text, or the BLE address or name


@dataclass(frozen=True)
class RiderSettings:
    id: str
    name: str
    squad: str | None = None
    weight_kg: float | None = None
    ftp_w: float | None = None
    transponder: str | None = None
    power_meters: tuple[MeterSettings, ...] = ()


@dataclass(frozen=True)
class AntSettings:
    enabled: bool = False
    retry_max_s: float = 30.0


@dataclass(frozen=True)
class BleSettings:
    enabled: bool = False
    scan_timeout_s: float = 10.0
    retry_max_s: float = 30.0


@dataclass(frozen=True)
class SerialSettings:
    enabled: bool = False
    port: str = "/dev/ttyUSB0"
    baudrate: int = 9600
    gate: str | None = None
    decoder: Mapping[str, Any] = field(default_factory=dict)
    max_clock_jump_s: float = 600.0
    clock_tolerance_s: float = 2.0


@dataclass(frozen=True)
class ReplaySourceSettings:
    enabled: bool = False
    files: tuple[str, ...] = ()
    loop: bool = False
    offset_s: float = 0.0


@dataclass(frozen=True)
class LoadSettings:
    enabled: bool = False
    rate_hz: float = 4.0
    segment_s: float = 60.0
    seed: int = 1


@dataclass(frozen=True)
class PlausibleSettings:
    power_w: tuple[float, float] = (0.0, 3000.0)
    cadence_rpm: tuple[float, float] = (0.0, 250.0)
    torque_nm: tuple[float, float] = (-50.0, 400.0)


@dataclass(frozen=True)
class SourcesSettings:
    ant: AntSettings = AntSettings()
    ble: BleSettings = BleSettings()
    serial: SerialSettings = SerialSettings()
    replay: ReplaySourceSettings = ReplaySourceSettings()
    load: LoadSettings = LoadSettings()
    plausible: PlausibleSettings = PlausibleSettings()


@dataclass(frozen=True)
class SpoolSettings:
    path: Path | None = None
    synchronous: str = "NORMAL"
    batch_interval_ms: int = 1000
    batch_size: int = 500
    max_size_mb: float = 1024.0
    retention_h: float = 72.0
    full_policy: str = "reject"
    reserve_mb: float = 8.0


@dataclass(frozen=True)
class KafkaSettings:
    enabled: bool = False
    bootstrap_servers: str = "127.0.0.1:9092"
    topics: Mapping[str, str] = field(default_factory=dict)
    properties: Mapping[str, Any] = field(default_factory=dict)
    partitions: int = 3
    replication_factor: int = -1
    min_insync_replicas: int | None = None


@dataclass(frozen=True)
class WebSettings:
    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = 8080
    admin_token: str | None = None
    max_streams: int = 64
    streams_per_address: int = 4
    request_threads: int = 16
    max_body_kb: int = 256
    heavy_requests: int = 2
    heartbeat_s: float = 10.0
    chart: Mapping[str, Any] = field(default_factory=dict)  # handed to the page as it is
    view_sets: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HubSettings:
    group_id: str = "trackside-hub"
    dsn_env: str | None = "TRACKSIDE_PG_DSN"
    dsn_file: str | None = None
    batch_size: int = 20000
    batch_ms: int = 250
    host: str = "0.0.0.0"
    port: int = 8090
    web: bool = True


@dataclass(frozen=True)
class ReplaySettings:
    simulationFactor: float = 1.0
    max_active: int = 4


@dataclass(frozen=True)
class Settings:
    gateway: GatewaySettings
    course: CourseSettings
    metrics: MetricsSettings
    riders: tuple[RiderSettings, ...]
    sources: SourcesSettings
    spool: SpoolSettings
    kafka: KafkaSettings
    web: WebSettings
    replay: ReplaySettings
    hub: HubSettings = HubSettings()

    @property
    def spool_path(self) -> Path:
        return self.spool.path or self.gateway.state_dir / "spool.sqlite"


def rider(data: Mapping[str, Any]) -> RiderSettings:
    """A rider from its YAML form (also for riders that replayed files add to a roster)."""
    meters = tuple(MeterSettings(kind, str(value)) for m in data.get("power_meters") or () for kind, value in m.items())
    return RiderSettings(str(data["id"]), str(data["name"]), data.get("squad"), data.get("weight_kg"),
                         data.get("ftp_w"), data.get("transponder"), meters)


def riders(data: Sequence[Mapping[str, Any]]) -> tuple[RiderSettings, ...]:
    return tuple(rider(r) for r in data)


def from_document(data: Mapping[str, Any]) -> Settings:
    """Settings from a validated document with its defaults filled in (config.validate)."""
    built: Settings = _build(Settings, {**data, "riders": ()})
    return dataclasses.replace(built, riders=riders(data["riders"]))


def _build(cls: type[Any], data: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _value(hints[f.name], data[f.name])
    return cls(**kwargs)


def _value(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _value(inner[0], value) if len(inner) == 1 else value
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return _build(typing.cast(type[Any], hint), value)
    if origin is tuple:
        args = typing.get_args(hint)
        item = args[0]
        return tuple(_value(item, v) for v in value)
    if hint is Path:
        return Path(value)
    if hint is float and isinstance(value, int):
        return float(value)
    return value
