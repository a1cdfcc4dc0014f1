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

type SettingFields = tuple[tuple[str, float, str], ...]
"""``(setting, step, unit)`` of each number field of a charge-settings form."""

OPTION_SETTINGS: SettingFields = (
    # Per-cell voltages: what the pack is charged to, where it rests, where it must stop.
    ("cell_charge_cutoff", 0.005, "V"),
    ("cell_absorption_voltage", 0.005, "V"),
    ("cell_absorption_voltage_without_cells", 0.005, "V"),
    ("cell_absorption_trigger", 0.005, "V"),
    ("absorption_margin", 0.005, "V"),
    ("cell_float_voltage", 0.005, "V"),
    ("cell_rebulk_voltage", 0.005, "V"),
    ("cell_discharge_cutoff", 0.005, "V"),
    ("undervoltage_hysteresis", 0.01, "V"),
    # Currents and how fast they and the charge voltage may change.
    ("bulk_current", 1.0, "A"),
    ("max_discharge_current", 1.0, "A"),
    ("tail_current", 0.5, "A"),
    ("ramp_rate", 0.5, "A/s"),
    ("cvl_ramp_rate", 0.5, "mV/s"),
    # When absorption ends and float returns to bulk.
    ("tail_hold", 1.0, "s"),
    ("max_absorption_time", 60.0, "s"),
    ("rebulk_delay", 1.0, "s"),
    ("rebulk_soc", 1.0, "%"),
    ("full_charge_interval_days", 1.0, "d"),
    ("recovery_hold", 1.0, "s"),
    # Cell balance.
    ("cell_imbalance_warning", 0.005, "V"),
    ("absorption_spread", 0.001, "V"),
    ("spread_hold", 60.0, "s"),
    ("rebulk_spread", 0.005, "V"),
    # A source that stops reporting.
    ("stale_after", 1.0, "s"),
    ("stale_alarm_after", 1.0, "s"),
    ("alarm_delay", 1.0, "s"),
)
"""Every tuned number of :class:`ChargeSettings` (all but the battery's chemistry, cells and
capacity, which are the battery itself): the options offer each one, bounded like its number
entity, so nothing is settable only through an entity or only through the options."""

OPTION_SWITCHES: tuple[str, ...] = ("allow_charge_without_temperature", "stale_alarm")
"""True/false charge settings a Sunny Island's options offer (as checkboxes): whether to charge
with no battery temperature at all, and whether battery data stale for ``stale_alarm_after``
raises an alarm (without the switch that time would be a setting with no effect)."""


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


def settings_schema(
    settings: ChargeSettings,
    fields: SettingFields = OPTION_SETTINGS,
    switches: tuple[str, ...] = (),
) -> dict[Any, Any]:
    """Number fields for charge settings, bounded like the number entities; then checkboxes."""
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
    for name in switches:
        schema[vol.Required(name, default=getattr(settings, name))] = selector.BooleanSelector()
    return schema


def settings_errors(
    settings: ChargeSettings,
    values: dict[str, Any],
    fields: SettingFields = OPTION_SETTINGS,
    switches: tuple[str, ...] = (),
) -> tuple[ChargeSettings | None, dict[str, str]]:
    """Apply submitted settings; on an unsafe combination name the offending field."""
    from .control.chemistry import UnsafeSetting

    names = (*(name for name, _step, _unit in fields), *switches)
    changes = {name: values[name] for name in names if name in values}
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
