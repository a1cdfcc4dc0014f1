"""Device registry look-ups that work on every supported Home Assistant release.

From 2026.9 a device identifier is unique only within its config entry: HA deprecated the global
``async_get_device`` (it stops working in 2027.8) for ``async_get_device_by_identifier``, which
takes the entry. Releases from the minimum supported (2026.6) up to 2026.8 only have the former.
"""

from __future__ import annotations

from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr

from ..const import DOMAIN


def async_entry_device(
    hass: HomeAssistant, entry_id: str, identifier: str
) -> dr.DeviceEntry | None:
    """The device ``(DOMAIN, identifier)`` of config entry ``entry_id``, if registered."""
    registry = dr.async_get(hass)
    by_identifier = getattr(registry, "async_get_device_by_identifier", None)
    if by_identifier is not None:
        device: dr.DeviceEntry | None = by_identifier((DOMAIN, identifier), entry_id)
        return device
    device = registry.async_get_device(identifiers={(DOMAIN, identifier)})
    if device is None or entry_id not in device.config_entries:
        return None
    return device
