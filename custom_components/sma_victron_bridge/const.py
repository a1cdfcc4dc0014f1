"""Constants shared by the integration's Home Assistant glue."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

DOMAIN: Final = "sma_victron_bridge"
MANUFACTURER_VICTRON: Final = "Victron Energy"
MANUFACTURER_SMA: Final = "SMA"

CONF_DEVICE: Final = "device"
CONF_PORT: Final = "port"
CONF_SIMULATED: Final = "simulated"
CONF_SERIAL_NUMBER: Final = "serial_number"

# Options of a VE.Direct MPPT entry: battery-sense forwarding.
CONF_FORWARD_SOURCE: Final = "forward_source"
CONF_FORWARD_VOLTAGE_ENTITY: Final = "forward_voltage_entity"
CONF_FORWARD_TEMPERATURE_ENTITY: Final = "forward_temperature_entity"
CONF_STALE_AFTER: Final = "stale_after"

FORWARD_NONE: Final = "none"
FORWARD_ENTITIES: Final = "entities"
DEFAULT_STALE_AFTER: Final = 30.0

# How long setup and the config flow's connection test wait for a device to speak.
CONNECT_TIMEOUT: Final = 8.0


class DeviceKind(StrEnum):
    """The `device` stored in every config entry: which kind of hardware it talks to."""

    VEDIRECT = "vedirect"
