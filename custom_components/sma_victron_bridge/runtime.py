"""The typed config entry of this integration: its ``runtime_data`` is the device runtime."""

from __future__ import annotations

from homeassistant.config_entries import ConfigEntry

from .devices.base import DeviceRuntime

type BridgeConfigEntry = ConfigEntry[DeviceRuntime]
