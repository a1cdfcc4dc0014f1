"""SMA Victron Bridge: SMA and Victron power systems in Home Assistant.

Each config entry talks to one device of one kind (see ``const.DeviceKind``); the kind's module in
``devices/`` builds the runtime that owns the connection, the coordinator and the entity
descriptions, and the platforms stay generic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .const import CONF_DEVICE, DeviceKind

# Home Assistant is imported lazily so that the pure packages (protocols/, control/,
# simulators/) can be imported, tested and benchmarked without it.
if TYPE_CHECKING:
    from homeassistant.core import HomeAssistant
    from homeassistant.helpers.device_registry import DeviceEntry

    from .devices.base import DeviceRuntime
    from .runtime import BridgeConfigEntry


# Each kind's module pulls in its protocol libraries (python-can scans package metadata when it
# is imported), so it is imported in Home Assistant's import executor, never on the event loop.
RUNTIMES: dict[DeviceKind, tuple[str, str]] = {
    DeviceKind.VEDIRECT: ("vedirect", "VeDirectRuntime"),
    DeviceKind.SERIAL_BMS: ("serial_bms", "SerialBmsRuntime"),
    DeviceKind.SUNNY_ISLAND: ("sunny_island", "SunnyIslandRuntime"),
    DeviceKind.SUNNY_BOY: ("sunny_boy", "SunnyBoyRuntime"),
    DeviceKind.VICTRON_BLE: ("victron_ble", "VictronBleRuntime"),
}


async def _async_create_runtime(hass: HomeAssistant, entry: BridgeConfigEntry) -> DeviceRuntime:
    from homeassistant.helpers.importlib import async_import_module

    module_name, class_name = RUNTIMES[DeviceKind(entry.data[CONF_DEVICE])]
    module = await async_import_module(hass, f"{__name__}.devices.{module_name}")
    runtime: DeviceRuntime = getattr(module, class_name)(hass, entry)
    return runtime


async def async_setup_entry(hass: HomeAssistant, entry: BridgeConfigEntry) -> bool:
    """Connect to the entry's device and set up its entities."""
    runtime = await _async_create_runtime(hass, entry)
    await runtime.async_start()
    entry.runtime_data = runtime
    await hass.config_entries.async_forward_entry_setups(entry, runtime.platforms)
    started_with = dict(entry.data)

    async def _async_entry_updated(hass: HomeAssistant, entry: BridgeConfigEntry) -> None:
        """Apply a changed entry: new connection data reloads; options apply live where they can.

        This listener is the one place that schedules reloads (reconfigure and reauth flows only
        update the entry), as Home Assistant asks of entries that have an update listener.
        """
        if dict(entry.data) != started_with:
            hass.config_entries.async_schedule_reload(entry.entry_id)
            return
        if await entry.runtime_data.async_apply_options():
            return
        hass.config_entries.async_schedule_reload(entry.entry_id)

    entry.async_on_unload(entry.add_update_listener(_async_entry_updated))
    return True


async def async_unload_entry(hass: HomeAssistant, entry: BridgeConfigEntry) -> bool:
    """Unload the entities, then shut the device link down safely."""
    runtime = entry.runtime_data
    unloaded = await hass.config_entries.async_unload_platforms(entry, runtime.platforms)
    if unloaded:
        await runtime.async_shutdown()
    return unloaded


async def async_remove_entry(hass: HomeAssistant, entry: BridgeConfigEntry) -> None:
    """Forget what only a removed entry kept: a simulated radio, a Sunny Island's charge history."""
    from homeassistant.helpers.importlib import async_import_module

    kind = DeviceKind(entry.data[CONF_DEVICE])
    if kind is DeviceKind.VICTRON_BLE:
        module = await async_import_module(hass, f"{__name__}.devices.victron_ble")
        module.async_forget_simulated_scanner(hass, entry)
    elif kind is DeviceKind.SUNNY_ISLAND:
        module = await async_import_module(hass, f"{__name__}.devices.sunny_island")
        await module.async_remove_store(hass, entry.entry_id)


async def async_remove_config_entry_device(
    hass: HomeAssistant, entry: BridgeConfigEntry, device: DeviceEntry
) -> bool:
    """Let the user delete a device the entry no longer reads (a Sunny Boy that left the plant).

    The devices a loaded entry still reads are refused: they would only come back.
    """
    from homeassistant.config_entries import ConfigEntryState

    if entry.state is not ConfigEntryState.LOADED:
        return True
    return not entry.runtime_data.provides_device(set(device.identifiers))
