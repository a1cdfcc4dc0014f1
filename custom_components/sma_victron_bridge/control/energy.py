"""Charged and discharged energy integrated from battery power samples.

Most BMSes report power but no energy counters; the energy dashboard needs ever-increasing kWh.
The integrator uses the trapezoid rule between samples and refuses to bridge long gaps (a BMS that
was silent for minutes did not keep the last power flowing), so an unplugged cable never invents
energy. Totals start from restored values so they survive restarts.
"""

from __future__ import annotations

from dataclasses import dataclass

# Samples further apart than this are not integrated across: the link was down in between.
MAX_GAP = 60.0


@dataclass(slots=True)
class EnergyIntegrator:
    """Accumulates kWh into and out of a battery from (time, power) samples."""

    charged_kwh: float = 0.0
    discharged_kwh: float = 0.0
    max_gap: float = MAX_GAP
    _last_time: float | None = None
    _last_power: float | None = None

    def add(self, now: float, power: float | None) -> None:
        """Add one sample: ``power`` in W, + = charging; ``now`` in monotonic seconds."""
        if power is None:
            self._last_time = self._last_power = None
            return
        if self._last_time is not None and self._last_power is not None:
            dt = now - self._last_time
            if 0 < dt <= self.max_gap:
                self._integrate(self._last_power, power, dt)
        self._last_time, self._last_power = now, power

    def _integrate(self, p0: float, p1: float, dt: float) -> None:
        # Split the trapezoid where the power crosses zero so charge and discharge stay apart.
        if (p0 >= 0) == (p1 >= 0):
            self._account((p0 + p1) / 2 * dt)
            return
        crossing = dt * abs(p0) / (abs(p0) + abs(p1))
        self._account(p0 / 2 * crossing)
        self._account(p1 / 2 * (dt - crossing))

    def _account(self, joules: float) -> None:
        kwh = joules / 3_600_000
        if kwh >= 0:
            self.charged_kwh += kwh
        else:
            self.discharged_kwh -= kwh

    def restore(self, charged_kwh: float | None, discharged_kwh: float | None) -> None:
        """Continue from totals saved before a restart (never go backwards)."""
        if charged_kwh is not None:
            self.charged_kwh = max(self.charged_kwh, charged_kwh)
        if discharged_kwh is not None:
            self.discharged_kwh = max(self.discharged_kwh, discharged_kwh)
