"""The ranges a real sensor reading falls in (``sources.plausible``); a glitch or a forged page does not."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config.settings import PlausibleSettings
from gateway.model import PowerSample


@dataclass(frozen=True)
class Plausible:
    power_w: tuple[float, float] = (0.0, 3000.0)
    cadence_rpm: tuple[float, float] = (0.0, 250.0)
    torque_nm: tuple[float, float] = (-50.0, 400.0)

    @classmethod
    def from_settings(cls, ranges: PlausibleSettings) -> Plausible:
        return cls(ranges.power_w, ranges.cadence_rpm, ranges.torque_nm)

    def problems(self, sample: PowerSample) -> list[str]:
        """The fields of ``sample`` outside their range (NaN and infinities included)."""
        out = []
        checks = (("power", sample.power, self.power_w), ("cadence", sample.cadence, self.cadence_rpm),
                  ("torque", sample.torque, self.torque_nm))
        for name, value, (lo, hi) in checks:
            if value is not None and not lo <= value <= hi:
                out.append(name)
        return out
