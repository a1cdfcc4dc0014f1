"""Entity descriptions for Bluetooth BMSes: the Serial BMS kind's, plus the radio's signal.

A Bluetooth BMS gives the library's values as a :class:`BmsReading`, the shape a wired BMS
gives, so its entities are the Serial BMS kind's own descriptions (cells and their statistics,
temperatures incl. MOSFET, SOC, current, power, capacity, cycles, balancing, each protection,
energy in/out, charge limits and what limits them), and the charge/discharge FET switches
for the families the link can switch (JK, JBD: ``data.fet_control``); other families show no
switch. The signal strength the BMS is heard with helps placing a proxy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from homeassistant.components.binary_sensor import BinarySensorDeviceClass
from homeassistant.components.sensor import SensorDeviceClass, SensorStateClass
from homeassistant.const import (
    PERCENTAGE,
    SIGNAL_STRENGTH_DECIBELS_MILLIWATT,
    EntityCategory,
    UnitOfElectricCurrent,
    UnitOfTime,
)

from ...binary_sensor import BridgeBinarySensorEntityDescription
from ...sensor import BridgeSensorEntityDescription
from ...switch import BridgeSwitchEntityDescription
from ..serial_bms import entities as serial

if TYPE_CHECKING:
    from .runtime import BleBmsData


def _rssi(data: BleBmsData) -> int | None:
    return data.rssi


def _extra(name: str) -> Callable[[Any], Any]:
    """A value only the library's reading has (``BleBmsReading``), None otherwise."""

    def value(data: BleBmsData) -> Any:
        return getattr(data.reading, name, None)

    return value


def _has_extra(name: str) -> Callable[[Any], bool]:
    def exists(data: BleBmsData) -> bool:
        return getattr(data.reading, name, None) is not None

    return exists


SENSORS: tuple[BridgeSensorEntityDescription, ...] = (
    *serial.SENSORS,
    BridgeSensorEntityDescription(
        key="rssi",
        translation_key="rssi",
        device_class=SensorDeviceClass.SIGNAL_STRENGTH,
        native_unit_of_measurement=SIGNAL_STRENGTH_DECIBELS_MILLIWATT,
        state_class=SensorStateClass.MEASUREMENT,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=_rssi,
    ),
    BridgeSensorEntityDescription(
        key="state_of_health",
        translation_key="state_of_health",
        native_unit_of_measurement=PERCENTAGE,
        state_class=SensorStateClass.MEASUREMENT,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=_extra("soh"),
        exists_fn=_has_extra("soh"),
    ),
    BridgeSensorEntityDescription(
        key="balance_current",
        translation_key="balance_current",
        device_class=SensorDeviceClass.CURRENT,
        native_unit_of_measurement=UnitOfElectricCurrent.AMPERE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=3,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=_extra("balance_current"),
        exists_fn=_has_extra("balance_current"),
    ),
    BridgeSensorEntityDescription(
        key="time_remaining",
        translation_key="time_remaining",
        device_class=SensorDeviceClass.DURATION,
        native_unit_of_measurement=UnitOfTime.SECONDS,
        suggested_unit_of_measurement=UnitOfTime.HOURS,
        value_fn=_extra("runtime"),
        exists_fn=_has_extra("runtime"),
    ),
    BridgeSensorEntityDescription(
        key="problem_code",
        translation_key="problem_code",
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=_extra("problem_code"),
        exists_fn=_has_extra("problem_code"),
    ),
)
BINARY_SENSORS: tuple[BridgeBinarySensorEntityDescription, ...] = (
    *serial.BINARY_SENSORS,
    BridgeBinarySensorEntityDescription(
        key="heater",
        translation_key="heater",
        device_class=BinarySensorDeviceClass.HEAT,
        is_on_fn=_extra("heater"),
        exists_fn=_has_extra("heater"),
    ),
)
SWITCHES: tuple[BridgeSwitchEntityDescription, ...] = serial.SWITCHES
