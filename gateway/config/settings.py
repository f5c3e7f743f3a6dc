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


@dataclass(frozen=True, kw_only=True)
class GatewaySettings:
    id: str
    state_dir: Path
    log_level: str
    session_gap_h: float


@dataclass(frozen=True)
class GateSettings:
    id: str
    name: str | None = None


@dataclass(frozen=True)
class SegmentSettings:
    name: str
    terrain: str | None = None


@dataclass(frozen=True, kw_only=True)
class CourseSettings:
    gates: tuple[GateSettings, ...]
    segments: tuple[SegmentSettings, ...] = ()
    name: str | None = None
    id: str | None = None
    debounce_s: float
    max_segment_s: float

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


@dataclass(frozen=True, kw_only=True)
class MetricsSettings:
    np_window: str
    min_coverage: float


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


@dataclass(frozen=True, kw_only=True)
class AntSettings:
    enabled: bool
    retry_max_s: float


@dataclass(frozen=True, kw_only=True)
class BleSettings:
    enabled: bool
    scan_timeout_s: float
    retry_max_s: float


@dataclass(frozen=True, kw_only=True)
class SerialSettings:
    enabled: bool
    port: str
    baudrate: int
    gate: str | None = None
    decoder: Mapping[str, Any] = field(default_factory=dict)
    max_clock_jump_s: float
    clock_tolerance_s: float


@dataclass(frozen=True, kw_only=True)
class ReplaySourceSettings:
    enabled: bool
    files: tuple[str, ...] = ()
    loop: bool
    offset_s: float


@dataclass(frozen=True, kw_only=True)
class LoadSettings:
    enabled: bool
    rate_hz: float
    segment_s: float
    seed: int


@dataclass(frozen=True, kw_only=True)
class SimSettings:
    enabled: bool
    feed: str | None = None
    speed: float


@dataclass(frozen=True, kw_only=True)
class PlausibleSettings:
    power_w: tuple[float, float]
    cadence_rpm: tuple[float, float]
    torque_nm: tuple[float, float]


@dataclass(frozen=True, kw_only=True)
class SourcesSettings:
    ant: AntSettings
    ble: BleSettings
    serial: SerialSettings
    replay: ReplaySourceSettings
    load: LoadSettings
    sim: SimSettings
    plausible: PlausibleSettings


@dataclass(frozen=True, kw_only=True)
class SpoolSettings:
    path: Path | None = None
    synchronous: str
    batch_interval_ms: int
    batch_size: int
    max_size_mb: float
    retention_h: float
    full_policy: str
    reserve_mb: float


@dataclass(frozen=True, kw_only=True)
class KafkaSettings:
    enabled: bool
    bootstrap_servers: str
    topics: Mapping[str, str] = field(default_factory=dict)
    properties: Mapping[str, Any] = field(default_factory=dict)
    partitions: int
    replication_factor: int
    min_insync_replicas: int | None = None


@dataclass(frozen=True, kw_only=True)
class WebSettings:
    enabled: bool
    host: str
    port: int
    admin_token: str | None = None
    max_streams: int
    streams_per_address: int
    request_threads: int
    max_body_kb: int
    heavy_requests: int
    heartbeat_s: float
    max_upload_mb: int
    hub_url: str | None = None
    chart: Mapping[str, Any] = field(default_factory=dict)  # handed to the page as it is
    view_sets: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class HubSettings:
    group_id: str
    dsn_env: str | None
    dsn_file: str | None = None
    batch_size: int
    batch_ms: int
    host: str
    port: int
    web: bool
    receiver_latency_ms: float


@dataclass(frozen=True, kw_only=True)
class ReplaySettings:
    simulation_factor: float = field(metadata={"key": "simulationFactor"})
    max_active: int


@dataclass(frozen=True, kw_only=True)
class FilesSettings:
    watch_dir: Path | None = None
    poll_s: float


@dataclass(frozen=True, kw_only=True)
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
    files: FilesSettings
    hub: HubSettings

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
        key = f.metadata.get("key", f.name)  # the document's name where Python's differs (camelCase)
        if key in data:
            kwargs[f.name] = _value(hints[f.name], data[key])
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
