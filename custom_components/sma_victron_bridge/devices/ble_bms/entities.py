"""Entity descriptions for Bluetooth BMSes: the Serial BMS kind's, plus the radio's signal.

A Bluetooth BMS gives the library's values as a :class:`BmsReading`, the shape a wired BMS
gives, so its entities are the Serial BMS kind's own descriptions (cells and their statistics,
temperatures incl. MOSFET, SOC, current, power, capacity, cycles, balancing, each protection,
energy in/out, charge limits and what limits them). The library cannot switch FETs, so no
switches. The signal strength the BMS is heard with helps placing a proxy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from homeassistant.components.sensor import SensorDeviceClass, SensorStateClass
from homeassistant.const import SIGNAL_STRENGTH_DECIBELS_MILLIWATT, EntityCategory

from ...binary_sensor import BridgeBinarySensorEntityDescription
from ...sensor import BridgeSensorEntityDescription
from ..serial_bms import entities as serial

if TYPE_CHECKING:
    from .runtime import BleBmsData


def _rssi(data: BleBmsData) -> int | None:
    return data.rssi


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
)
BINARY_SENSORS: tuple[BridgeBinarySensorEntityDescription, ...] = serial.BINARY_SENSORS
