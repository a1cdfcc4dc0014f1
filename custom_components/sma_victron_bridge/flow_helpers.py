"""Form pieces shared by the config and options flows of every device kind."""

from __future__ import annotations

import os
from typing import Any

from homeassistant.components import usb
from homeassistant.config_entries import ConfigEntry, ConfigEntryState, ConfigFlow, ConfigFlowResult
from homeassistant.core import HomeAssistant
from homeassistant.helpers import selector
import serial.tools.list_ports

from .control.chemistry import ChargeSettings
from .schema import vol

PORT_MANUAL = "manual"

# The charge settings offered in options flows (all of them are also number entities).
OPTION_SETTINGS: tuple[tuple[str, float, str], ...] = (
    ("cell_absorption_voltage", 0.005, "V"),
    ("cell_float_voltage", 0.005, "V"),
    ("cell_rebulk_voltage", 0.005, "V"),
    ("cell_charge_cutoff", 0.005, "V"),
    ("cell_discharge_cutoff", 0.005, "V"),
    ("bulk_current", 1.0, "A"),
    ("max_discharge_current", 1.0, "A"),
    ("tail_current", 0.5, "A"),
    ("max_absorption_time", 60.0, "s"),
    ("rebulk_soc", 1.0, "%"),
    ("stale_after", 1.0, "s"),
)


def list_serial_ports() -> dict[str, str]:
    """Stable path → human-readable name of every serial port (runs in the executor)."""
    ports: dict[str, str] = {}
    for port in serial.tools.list_ports.comports():
        path = usb.get_serial_by_id(port.device)
        ports[path] = usb.human_readable_device_name(
            port.device,
            port.serial_number,
            port.manufacturer,
            port.description,
            None if port.vid is None else f"{port.vid:04X}",
            None if port.pid is None else f"{port.pid:04X}",
        )
    return ports


async def async_port_options(hass: HomeAssistant) -> list[selector.SelectOptionDict]:
    """The serial ports with their USB names, and a manual entry.

    Only real ports: simulated devices have their own menu entry, so that nobody mistakes one
    for hardware in a port list.
    """
    ports = await hass.async_add_executor_job(list_serial_ports)
    options = [selector.SelectOptionDict(value=path, label=name) for path, name in ports.items()]
    options.append(selector.SelectOptionDict(value=PORT_MANUAL, label="Enter the path manually"))
    return options


def port_selector(options: list[selector.SelectOptionDict]) -> selector.SelectSelector:
    """A port picker that also accepts a typed path."""
    return selector.SelectSelector(
        selector.SelectSelectorConfig(
            options=options, mode=selector.SelectSelectorMode.DROPDOWN, custom_value=True
        )
    )


async def async_port_exists(hass: HomeAssistant, port: str) -> bool:
    """Whether a serial device path exists (checked in the executor)."""
    return await hass.async_add_executor_job(os.path.exists, port)


type SettingFields = tuple[tuple[str, float, str], ...]


def settings_schema(
    settings: ChargeSettings, fields: SettingFields = OPTION_SETTINGS
) -> dict[Any, Any]:
    """Number fields for charge settings, bounded like the number entities."""
    schema: dict[Any, Any] = {}
    for name, step, unit in fields:
        low, high = settings.bounds(name)
        schema[vol.Required(name, default=getattr(settings, name))] = selector.NumberSelector(
            selector.NumberSelectorConfig(
                min=low,
                max=high,
                step=step,
                unit_of_measurement=unit,
                mode=selector.NumberSelectorMode.BOX,
            )
        )
    return schema


def settings_errors(
    settings: ChargeSettings, values: dict[str, Any], fields: SettingFields = OPTION_SETTINGS
) -> tuple[ChargeSettings | None, dict[str, str]]:
    """Apply submitted settings; on an unsafe combination name the offending field."""
    from .control.chemistry import UnsafeSetting

    changes = {name: values[name] for name, _step, _unit in fields if name in values}
    try:
        return settings.replace(**changes), {}
    except UnsafeSetting as err:
        return None, {err.field if err.field in changes else "base": "unsafe_setting"}


def async_update_entry_and_abort(
    flow: ConfigFlow, entry: ConfigEntry, **changes: Any
) -> ConfigFlowResult:
    """Save a reconfigured or reauthenticated entry and end the flow.

    The entry's update listener reloads a loaded entry whose connection data changed (Home
    Assistant wants the listener, not the flow, to schedule that reload). An entry that is not
    loaded (waiting to retry, or stopped by a wrong password) has no listener: it is set up again
    at once with the new data.
    """
    result = flow.async_update_and_abort(entry, **changes)
    if entry.state in (ConfigEntryState.SETUP_RETRY, ConfigEntryState.SETUP_ERROR):
        flow.hass.config_entries.async_schedule_reload(entry.entry_id)
    return result
