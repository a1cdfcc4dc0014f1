"""Diagnostics download: entry settings and device state, with identifying values redacted."""

from __future__ import annotations

from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.core import HomeAssistant

from .const import CONF_PORT, CONF_SERIAL_NUMBER
from .runtime import BridgeConfigEntry

# Serial numbers and USB paths identify the owner's hardware; they stay out of bug reports.
TO_REDACT = {CONF_SERIAL_NUMBER, CONF_PORT, "SER#", "serial_number", "unique_id", "title"}
# Sunny Boy entries: the inverter's log-on password, its Bluetooth address and its Speedwire host
# (an address on the owner's network).
TO_REDACT |= {"password", "bt_address", "host"}
# Victron Bluetooth entries: the Instant Readout encryption key and the device address.
TO_REDACT |= {"key", "address"}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: BridgeConfigEntry
) -> dict[str, Any]:
    """Entry data/options and the runtime's view of the device."""
    return async_redact_data(
        {
            "entry": {
                "title": entry.title,
                "unique_id": entry.unique_id,
                "data": dict(entry.data),
                "options": dict(entry.options),
            },
            "device": dict(entry.runtime_data.diagnostics()),
        },
        TO_REDACT,
    )
