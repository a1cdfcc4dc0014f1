"""The battery state one entry publishes for others to consume.

A VE.Direct BMV, a serial BMS or a Victron BLE battery monitor each turn their own readings into a
:class:`BatterySnapshot`; consumers (battery-sense forwarding to an MPPT, the Sunny Island BMS) only
ever see this shape, so any source can feed any consumer. Values are SI units; ``None`` means the
source does not measure that quantity. ``timestamp`` is a monotonic time so staleness checks do
not jump with the wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, kw_only=True)
class BatterySnapshot:
    """One consistent reading of a battery, taken at ``timestamp`` (monotonic seconds)."""

    timestamp: float
    soc: float | None = None
    voltage: float | None = None
    current: float | None = None
    temperature: float | None = None
    cell_voltages: tuple[float, ...] = field(default=())
    alarms: frozenset[str] = field(default_factory=frozenset)
    # Optional extras a BMS may know; consumers that ignore them keep working unchanged.
    mosfet_temperature: float | None = None
    soh: float | None = None
    capacity_ah: float | None = None

    def age(self, now: float) -> float:
        """Seconds since the reading was taken (never negative)."""
        return max(0.0, now - self.timestamp)

    def is_fresh(self, now: float, max_age: float) -> bool:
        """Whether the reading is recent enough to act on."""
        return self.age(now) <= max_age

    @property
    def power(self) -> float | None:
        """Battery power in W (+ = charging), when both voltage and current are known."""
        if self.voltage is None or self.current is None:
            return None
        return self.voltage * self.current
