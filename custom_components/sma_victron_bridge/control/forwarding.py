"""When and what to write to an MPPT's battery-sense registers.

Victron chargers use a remote battery voltage (0x2002) and temperature (0x2003) for 60 s after the
last write; Victron's own GX device rewrites voltage every 3 s and temperature every 9 s, and
writing the "not available" values releases them at once. This module holds that schedule as pure
logic — given the current time and the latest battery snapshot, which register writes are due —
so the policy is testable without a serial port or Home Assistant.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
import math

from .snapshot import BatterySnapshot

VOLTAGE_PERIOD = 3.0
TEMPERATURE_PERIOD = 9.0
# Sensed voltage outside these bounds is never forwarded: a charger would reject or, worse, use it.
MIN_VOLTAGE = 0.0
MAX_VOLTAGE = 655.0
MIN_TEMPERATURE = -40.0
MAX_TEMPERATURE = 85.0


class ForwardState(StrEnum):
    """What the forwarder is doing now, shown to the user as an enum sensor."""

    WAITING = "waiting"
    FORWARDING = "forwarding"
    STALE = "stale"
    RELEASED = "released"


@dataclass(frozen=True, slots=True)
class SenseWrite:
    """One write the charger should receive: a quantity and its value (None = release)."""

    quantity: str  # "voltage" or "temperature"
    value: float | None


class ForwardSchedule:
    """Decides which battery-sense writes are due; the caller performs them."""

    def __init__(
        self,
        *,
        stale_after: float,
        voltage_period: float = VOLTAGE_PERIOD,
        temperature_period: float = TEMPERATURE_PERIOD,
    ) -> None:
        """Create a schedule; ``stale_after`` is the snapshot age at which forwarding stops."""
        self.stale_after = stale_after
        self.voltage_period = voltage_period
        self.temperature_period = temperature_period
        self._next_voltage = -math.inf
        self._next_temperature = -math.inf
        self.state = ForwardState.WAITING
        self.last_voltage: float | None = None
        self.last_temperature: float | None = None

    def due(self, now: float, snapshot: BatterySnapshot | None) -> list[SenseWrite]:
        """Writes due at ``now``; updates :attr:`state` (stale sources produce no writes)."""
        if snapshot is None:
            self.state = ForwardState.WAITING
            return []
        if not snapshot.is_fresh(now, self.stale_after):
            self.state = ForwardState.STALE
            return []
        self.state = ForwardState.FORWARDING
        writes: list[SenseWrite] = []
        voltage = snapshot.voltage
        if (
            voltage is not None
            and MIN_VOLTAGE < voltage < MAX_VOLTAGE
            and now >= self._next_voltage
        ):
            writes.append(SenseWrite("voltage", voltage))
            self._next_voltage = now + self.voltage_period
        temperature = snapshot.temperature
        if (
            temperature is not None
            and MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE
            and now >= self._next_temperature
        ):
            writes.append(SenseWrite("temperature", temperature))
            self._next_temperature = now + self.temperature_period
        return writes

    def confirm(self, write: SenseWrite) -> None:
        """Record a write the charger accepted, so the user sees what is in force."""
        if write.quantity == "voltage":
            self.last_voltage = write.value
        else:
            self.last_temperature = write.value

    def retry_soon(self, write: SenseWrite, now: float) -> None:
        """A write failed: try it again on the next tick instead of a full period later."""
        if write.quantity == "voltage":
            self._next_voltage = now
        else:
            self._next_temperature = now

    def release(self) -> list[SenseWrite]:
        """The writes that hand control back to the charger's own measurement."""
        self.state = ForwardState.RELEASED
        self.last_voltage = None
        self.last_temperature = None
        self._next_voltage = -math.inf
        self._next_temperature = -math.inf
        return [SenseWrite("voltage", None), SenseWrite("temperature", None)]
