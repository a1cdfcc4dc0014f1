"""Device look-ups for tests, the same on every supported Home Assistant release."""

from __future__ import annotations

from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr

from custom_components.sma_victron_bridge.const import DOMAIN


def find_device(hass: HomeAssistant, identifier: str) -> dr.DeviceEntry | None:
    """The registered device with identifier ``(DOMAIN, identifier)``, if any."""
    devices = dr.async_get(hass).devices
    # From 2026.9 iterating gives the entries; before, it is a mapping of id → entry.
    for item in devices:
        device = item if isinstance(item, dr.DeviceEntry) else devices[item]
        if (DOMAIN, identifier) in device.identifiers:
            return device
    return None
