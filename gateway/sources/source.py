"""What every source is, and the table of the kinds there are (imported only when enabled).

A source turns hardware or a generator into ``PowerSample`` and ``GateCrossing`` events handed to
``submit`` (ingest's, which never blocks). It knows nothing of riders' names or metrics, reports its
link state on the status board, runs as one asyncio task, and lets go of its hardware on ``stop``
(a thread blocked in a radio library must be released; cancelling the task does the rest). Each
kind's module has ``build(settings, submit, status)``; the modules import their radio libraries
lazily, so a missing one is a status for that source ("no adapter"), never a failed start.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from gateway.config.settings import Settings
from gateway.model import GateCrossing, PowerSample
from gateway.status import StatusBoard

Submit = Callable[[PowerSample | GateCrossing], object]

SOURCE_MODULES: dict[str, str] = {
    "ant": "gateway.sources.ant",
    "ble": "gateway.sources.ble",
    "serial": "gateway.sources.serial",
    "load": "gateway.sources.load",
    "sim": "gateway.sources.sim",
}


class Source(Protocol):
    name: str

    async def run(self) -> None: ...

    def stop(self) -> None: ...


@runtime_checkable
class Pairable(Protocol):
    """A source that follows a meter paired on the page while it runs (ANT+: a channel of its own;
    BLE: a connection), given the meter's id as the page has it (a device number, an address)."""

    name: str

    def pair_meter(self, meter: str) -> None: ...


def enabled(settings: Settings) -> list[str]:
    return [kind for kind in SOURCE_MODULES if getattr(settings.sources, kind).enabled]


def build_sources(settings: Settings, submit: Submit, status: StatusBoard) -> list[Source]:
    """The enabled sources, built by their own modules."""
    sources: list[Source] = []
    for kind in enabled(settings):
        module = importlib.import_module(SOURCE_MODULES[kind])
        sources.append(module.build(settings, submit, status))
    return sources
