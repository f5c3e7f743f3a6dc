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
        # The common case first, in one expression: every sample of every meter passes here.
        power, cadence, torque = sample.power, sample.cadence, sample.torque
        if (self.power_w[0] <= power <= self.power_w[1]
                and (cadence is None or self.cadence_rpm[0] <= cadence <= self.cadence_rpm[1])
                and (torque is None or self.torque_nm[0] <= torque <= self.torque_nm[1])):
            return []
        out = []
        checks = (("power", sample.power, self.power_w), ("cadence", sample.cadence, self.cadence_rpm),
                  ("torque", sample.torque, self.torque_nm))
        for name, value, (lo, hi) in checks:
            if value is not None and not lo <= value <= hi:
                out.append(name)
        return out
