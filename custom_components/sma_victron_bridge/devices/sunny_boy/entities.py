"""Entity descriptions for Sunny Boy inverters: every live value the inverter reports.

Per-phase and per-string entities appear once the inverter reports a number for them, so a
single-phase inverter gets no L2/L3 entities (it reports NaN there). Values the inverter
reports as NaN later - every night - become unknown. The lifetime yield is the runtime's
monotonic copy, so the energy dashboard never sees it run backwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from homeassistant.components.sensor import SensorDeviceClass, SensorStateClass
from homeassistant.const import (
    PERCENTAGE,
    EntityCategory,
    UnitOfElectricCurrent,
    UnitOfElectricPotential,
    UnitOfEnergy,
    UnitOfFrequency,
    UnitOfPower,
    UnitOfTemperature,
    UnitOfTime,
)

from ...sensor import BridgeSensorEntityDescription

if TYPE_CHECKING:
    from .runtime import SunnyBoyData

PHASES: Final = ("l1", "l2", "l3")
MAX_STRINGS: Final = 3
STATUS_OPTIONS: Final = ["ok", "warning", "fault", "off", "not_available"]
RELAY_OPTIONS: Final = ["closed", "open", "not_available"]
DIAG = EntityCategory.DIAGNOSTIC


def _field(name: str) -> Callable[[Any], Any]:
    def value(data: SunnyBoyData) -> Any:
        return None if data.spot is None else getattr(data.spot, name)

    return value


def _reported(name: str) -> Callable[[Any], bool]:
    """Exists once the inverter has reported a number for it (not NaN)."""

    def exists(data: SunnyBoyData) -> bool:
        return data.spot is not None and getattr(data.spot, name) is not None

    return exists


def _has_spot(data: SunnyBoyData) -> bool:
    return data.spot is not None


def _scaled(name: str, factor: float, digits: int) -> Callable[[Any], float | None]:
    def value(data: SunnyBoyData) -> float | None:
        raw = None if data.spot is None else getattr(data.spot, name)
        return None if raw is None else round(raw * factor, digits)

    return value


def _option(name: str, options: list[str]) -> Callable[[Any], str | None]:
    """The tag's name if it is one of ``options``; tags this model does not know → unknown."""

    def value(data: SunnyBoyData) -> str | None:
        raw = None if data.spot is None else getattr(data.spot, name)
        return raw if raw in options else None

    return value


def _phase(kind: str, phase: str) -> BridgeSensorEntityDescription:
    name = f"ac_{kind}_{phase}"
    units: dict[str, tuple[SensorDeviceClass, str, int]] = {
        "power": (SensorDeviceClass.POWER, UnitOfPower.WATT, 0),
        "voltage": (SensorDeviceClass.VOLTAGE, UnitOfElectricPotential.VOLT, 1),
        "current": (SensorDeviceClass.CURRENT, UnitOfElectricCurrent.AMPERE, 2),
    }
    device_class, unit, precision = units[kind]
    return BridgeSensorEntityDescription(
        key=name,
        translation_key=f"ac_{kind}_line",
        translation_placeholders={"line": phase.upper()},
        device_class=device_class,
        native_unit_of_measurement=unit,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=precision,
        value_fn=_field(name),
        exists_fn=_reported(name),
    )


def _string(kind: str, number: int) -> BridgeSensorEntityDescription:
    units: dict[str, tuple[SensorDeviceClass, str, int]] = {
        "power": (SensorDeviceClass.POWER, UnitOfPower.WATT, 0),
        "voltage": (SensorDeviceClass.VOLTAGE, UnitOfElectricPotential.VOLT, 1),
        "current": (SensorDeviceClass.CURRENT, UnitOfElectricCurrent.AMPERE, 2),
    }
    device_class, unit, precision = units[kind]
    attribute = f"dc_{kind}"

    def value(data: SunnyBoyData) -> float | None:
        spot = data.spot
        if spot is None or number not in spot.dc_strings:
            return None
        values: tuple[float | None, ...] = getattr(spot, attribute)
        return values[spot.dc_strings.index(number)]

    def exists(data: SunnyBoyData) -> bool:
        return data.spot is not None and number in data.spot.dc_strings

    return BridgeSensorEntityDescription(
        key=f"dc_{kind}_{number}",
        translation_key=f"dc_{kind}_string",
        translation_placeholders={"string": str(number)},
        device_class=device_class,
        native_unit_of_measurement=unit,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=precision,
        value_fn=value,
        exists_fn=exists,
    )


def _energy_total(data: SunnyBoyData) -> float | None:
    return None if data.energy_total is None else data.energy_total / 1000


SENSORS: tuple[BridgeSensorEntityDescription, ...] = (
    BridgeSensorEntityDescription(
        key="ac_power",
        translation_key="ac_power",
        device_class=SensorDeviceClass.POWER,
        native_unit_of_measurement=UnitOfPower.WATT,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        value_fn=_field("ac_power"),
        exists_fn=_has_spot,
    ),
    *(_phase(kind, phase) for kind in ("power", "voltage", "current") for phase in PHASES),
    BridgeSensorEntityDescription(
        key="grid_frequency",
        translation_key="grid_frequency",
        device_class=SensorDeviceClass.FREQUENCY,
        native_unit_of_measurement=UnitOfFrequency.HERTZ,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=2,
        value_fn=_field("grid_frequency"),
        exists_fn=_has_spot,
    ),
    *(
        _string(kind, number)
        for kind in ("power", "voltage", "current")
        for number in range(1, MAX_STRINGS + 1)
    ),
    BridgeSensorEntityDescription(
        key="energy_today",
        translation_key="yield_today",
        device_class=SensorDeviceClass.ENERGY,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        state_class=SensorStateClass.TOTAL_INCREASING,
        suggested_display_precision=3,
        value_fn=_scaled("energy_today", 0.001, 3),
        exists_fn=_has_spot,
    ),
    BridgeSensorEntityDescription(
        key="energy_total",
        translation_key="yield_total",
        device_class=SensorDeviceClass.ENERGY,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        state_class=SensorStateClass.TOTAL_INCREASING,
        suggested_display_precision=3,
        value_fn=_energy_total,
        exists_fn=_has_spot,
    ),
    BridgeSensorEntityDescription(
        key="operating_time",
        translation_key="operating_time",
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.HOURS,
        state_class=SensorStateClass.TOTAL_INCREASING,
        suggested_display_precision=1,
        entity_category=DIAG,
        value_fn=_scaled("operating_time", 1 / 3600, 2),
        exists_fn=_has_spot,
    ),
    BridgeSensorEntityDescription(
        key="feed_in_time",
        translation_key="feed_in_time",
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.HOURS,
        state_class=SensorStateClass.TOTAL_INCREASING,
        suggested_display_precision=1,
        entity_category=DIAG,
        value_fn=_scaled("feed_in_time", 1 / 3600, 2),
        exists_fn=_has_spot,
    ),
    BridgeSensorEntityDescription(
        key="temperature",
        translation_key="inverter_temperature",
        device_class=SensorDeviceClass.TEMPERATURE,
        native_unit_of_measurement=UnitOfTemperature.CELSIUS,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=1,
        value_fn=_field("temperature"),
        exists_fn=_has_spot,
    ),
    BridgeSensorEntityDescription(
        key="device_status",
        translation_key="inverter_status",
        device_class=SensorDeviceClass.ENUM,
        options=STATUS_OPTIONS,
        value_fn=_option("device_status", STATUS_OPTIONS),
        exists_fn=_has_spot,
    ),
    BridgeSensorEntityDescription(
        key="grid_relay",
        translation_key="grid_relay",
        device_class=SensorDeviceClass.ENUM,
        options=RELAY_OPTIONS,
        value_fn=_option("grid_relay", RELAY_OPTIONS),
        exists_fn=_has_spot,
    ),
    BridgeSensorEntityDescription(
        key="signal_strength",
        translation_key="bluetooth_signal_strength",
        native_unit_of_measurement=PERCENTAGE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        entity_category=DIAG,
        value_fn=_scaled("signal_strength", 1, 1),
        exists_fn=lambda data: data.bluetooth and data.spot is not None,
    ),
)
