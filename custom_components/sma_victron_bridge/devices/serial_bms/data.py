"""What every serial BMS reading turns into, whether the BMS is alone on its port or on a bus.

One BMS entry and each pack of a JK PB bus keep the same :class:`SerialBmsData` and derive the
same things from a reading: the battery snapshot other entries follow, charged and discharged
energy, and the charge limits the pack allows. Keeping that in one place is what makes a pack on
a bus a battery source exactly like a BMS of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
import time

from ...control.charge import ChargeController, ChargeDecision
from ...control.energy import EnergyIntegrator
from ...control.snapshot import BatterySnapshot
from ...protocols.bms_client import BmsInfo
from ...protocols.bms_common import BmsReading


@dataclass(slots=True)
class SerialBmsData:
    """The latest reading of a BMS and what is derived from it."""

    reading: BmsReading | None = None
    info: BmsInfo | None = None
    energy: EnergyIntegrator = field(default_factory=EnergyIntegrator)
    limits: ChargeDecision | None = None
    error_counters: list[int] | None = None
    polls: int = 0
    failures: int = 0
    fet_control: bool = False
    """Whether the charge and discharge FETs can be switched over this link (else no switch)."""


def snapshot_of(reading: BmsReading, now: float) -> BatterySnapshot:
    """A reading as the battery snapshot other entries (Sunny Island, forwarding) follow."""
    return BatterySnapshot(
        timestamp=now,
        soc=reading.soc,
        voltage=reading.voltage,
        current=reading.current,
        # The hottest sensor as the one representative reading; every sensor goes along so
        # the charge rules see the coldest one too (a pack at -6 °C and +3 °C is too cold).
        temperature=max(reading.temperatures) if reading.temperatures else None,
        temperatures=tuple(reading.temperatures),
        mosfet_temperature=reading.mosfet_temperature,
        cell_voltages=reading.cell_voltages,
        alarms=reading.protections,
    )


def record_reading(
    data: SerialBmsData, reading: BmsReading, controller: ChargeController
) -> BatterySnapshot:
    """Take ``reading`` into ``data`` (energy, limits, counters); return its snapshot."""
    now = time.monotonic()
    data.reading = reading
    data.polls += 1
    data.energy.add(now, reading.power)
    snapshot = snapshot_of(reading, now)
    data.limits = controller.update(snapshot, now)
    return snapshot


def record_gap(data: SerialBmsData) -> None:
    """A poll that got no reading: counted, and no energy is integrated across the gap."""
    data.failures += 1
    data.energy.add(time.monotonic(), None)


def anonymous_repr(value: BmsReading | BmsInfo | None) -> str | None:
    """A reading or identity for diagnostics, without the serial number that names the owner's
    hardware (diagnostics redact it by key; inside a repr no key would find it)."""
    return None if value is None else repr(replace(value, serial=None))
