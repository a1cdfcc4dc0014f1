"""SMA Victron Bridge: SMA and Victron power systems in Home Assistant.

Each config entry talks to one device of one kind (see ``devices.KINDS``); the kind's package in
``devices/`` builds the runtime that owns the connection, the coordinator and the entity
descriptions, and the platforms stay generic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .const import CONF_DEVICE, DeviceKind
from .devices import KIND_BY_ID, Kind

# Home Assistant is imported lazily so that the pure packages (protocols/, control/,
# simulators/) can be imported, tested and benchmarked without it.
if TYPE_CHECKING:
    from types import ModuleType

    from homeassistant.core import HomeAssistant
    from homeassistant.helpers.device_registry import DeviceEntry

    from .devices.base import DeviceRuntime
    from .runtime import BridgeConfigEntry


async def _async_runtime_module(hass: HomeAssistant, kind: Kind) -> ModuleType:
    """The kind's ``runtime`` module, imported in Home Assistant's import executor.

    It pulls in the kind's protocol libraries (python-can scans package metadata when it is
    imported), which must never happen on the event loop.
    """
    from homeassistant.helpers.importlib import async_import_module

    return await async_import_module(hass, f"{kind.package}.runtime")


async def _async_create_runtime(hass: HomeAssistant, entry: BridgeConfigEntry) -> DeviceRuntime:
    kind = KIND_BY_ID[DeviceKind(entry.data[CONF_DEVICE])]
    module = await _async_runtime_module(hass, kind)
    runtime: DeviceRuntime = getattr(module, kind.runtime)(hass, entry)
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
    """Forget what only a removed entry kept (a simulated radio, a Sunny Island's charge history).

    A kind with such state has an ``async_remove_entry`` in its runtime module.
    """
    module = await _async_runtime_module(hass, KIND_BY_ID[DeviceKind(entry.data[CONF_DEVICE])])
    remove = getattr(module, "async_remove_entry", None)
    if remove is not None:
        await remove(hass, entry)


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
