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

# Serial BMS entries.
CONF_PROTOCOL: Final = "protocol"
CONF_ADDRESS: Final = "address"
CONF_INVERT_CURRENT: Final = "invert_current"
CONF_POLL_INTERVAL: Final = "poll_interval"
DEFAULT_POLL_INTERVAL: Final = 2.0

# Sunny Island entries.
CONF_CAN_INTERFACE: Final = "can_interface"
CONF_CAN_CHANNEL: Final = "can_channel"
CONF_BITRATE: Final = "bitrate"
CONF_CHEMISTRY: Final = "chemistry"
CONF_CELLS: Final = "cells"
CONF_CAPACITY: Final = "capacity_ah"
CONF_CHARGE_MODE: Final = "charge_mode"
CONF_SOURCE: Final = "source"
CONF_SOURCE_SOC: Final = "source_soc_entity"
CONF_SOURCE_VOLTAGE: Final = "source_voltage_entity"
CONF_SOURCE_CURRENT: Final = "source_current_entity"
CONF_SOURCE_TEMPERATURE: Final = "source_temperature_entity"
SOURCE_ENTITIES: Final = "entities"

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
    SERIAL_BMS = "serial_bms"
    SUNNY_ISLAND = "sunny_island"
    SUNNY_BOY = "sunny_boy"
    VICTRON_BLE = "victron_ble"
    BLE_BMS = "ble_bms"
    BATTERY_BANK = "battery_bank"
