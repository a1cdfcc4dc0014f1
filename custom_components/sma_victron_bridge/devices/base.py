"""What every device kind provides to the integration: a push coordinator and a runtime.

Each device kind (`devices/<kind>.py`) builds a :class:`DeviceRuntime` at setup. The platforms stay
thin: they ask the runtime for its entity descriptions and the coordinator that feeds them. The
coordinator tracks the link to the hardware so every entity of the device goes unavailable when the
link drops and comes back when it returns, with one log line for each transition.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
import logging
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import Platform
from homeassistant.core import CALLBACK_TYPE, HassJob, HomeAssistant, callback
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator

from ..control.snapshot import BatterySnapshot

_LOGGER = logging.getLogger(__name__)


class PushCoordinator[DataT](DataUpdateCoordinator[DataT]):
    """A coordinator fed by a device that pushes data, with an explicit link state.

    There is no polling: the device's client calls :meth:`async_set_updated_data` for every
    accepted reading and :meth:`async_set_link` when the link is lost or regained.
    """

    def __init__(self, hass: HomeAssistant, *, name: str, initial: DataT) -> None:
        """Create the coordinator with an empty data object owned by the device runtime."""
        super().__init__(hass, _LOGGER, config_entry=None, name=name, update_interval=None)
        self.data = initial
        self.last_update_success = False
        self._link_up = False
        self._ever_up = False

    @property
    def link_up(self) -> bool:
        """Whether the hardware is talking to us right now."""
        return self._link_up

    @callback
    def async_set_link(self, up: bool, reason: str | None = None) -> None:
        """Record a link transition, log it once, and refresh entity availability."""
        if up == self._link_up:
            return
        self._link_up = up
        self.last_update_success = up
        if up:
            if self._ever_up:
                _LOGGER.info("%s is back", self.name)
            self._ever_up = True
        else:
            _LOGGER.warning("%s stopped answering%s", self.name, f": {reason}" if reason else "")
        self.async_update_listeners()

    @callback
    def async_show_own_change(self) -> None:
        """Show a change the runtime made itself (a status of its own, not a device reading).

        The entities refresh from the same data object; the link state stays what the device
        last told: a status that changes while the device is unplugged must not make its
        entities available again.
        """
        self.async_update_listeners()

    @callback
    def async_set_updated_data(self, data: DataT) -> None:
        """Publish new data; data only arrives over a working link."""
        if not self._link_up:
            self._link_up = True
            self.last_update_success = True
            if self._ever_up:
                _LOGGER.info("%s is back", self.name)
            self._ever_up = True
        super().async_set_updated_data(data)


type SnapshotListener = Callable[[BatterySnapshot], None]


@callback
def async_shutdown_on_stop(
    hass: HomeAssistant, entry: ConfigEntry[Any], shutdown: Callable[[], Awaitable[None]]
) -> None:
    """Run ``shutdown`` when Home Assistant stops, which does not unload entries.

    It runs as a shutdown job: Home Assistant runs those first, before it cancels background
    tasks (the device readers) and fires its stop event, so a charger can still be told to drop
    the remote battery sense and a Sunny Island still gets its last BMS frames.
    """
    entry.async_on_unload(hass.async_add_shutdown_job(HassJob(shutdown, cancel_on_shutdown=False)))


class DeviceRuntime(ABC):
    """Everything one config entry runs: its client, coordinator and entity descriptions."""

    platforms: tuple[Platform, ...] = ()

    def __init__(self) -> None:
        """Create the runtime; subclasses set up their client and coordinator."""
        self._snapshot_listeners: list[SnapshotListener] = []

    @property
    @abstractmethod
    def coordinator(self) -> PushCoordinator[Any]:
        """The coordinator every entity of this entry listens to."""

    @property
    @abstractmethod
    def device_info(self) -> DeviceInfo:
        """The device registry entry all entities of this entry belong to."""

    @abstractmethod
    def descriptions(self, platform: Platform) -> Sequence[EntityDescription]:
        """Entity descriptions for one platform (filtered by each description's ``exists_fn``)."""

    @abstractmethod
    async def async_start(self) -> None:
        """Connect to the device; raise ConfigEntryNotReady when it does not answer."""

    @abstractmethod
    async def async_shutdown(self) -> None:
        """Stop everything the runtime started, leaving the hardware in a safe state."""

    def device_runtimes(self) -> Sequence[DeviceRuntime]:
        """The devices whose entities the entry's platforms add: this runtime's own by default.

        An entry that reads several devices of the same kind at setup (the packs on one RS485
        bus) returns one runtime per device, each with its own coordinator, device info and
        descriptions, so each device's entities come and go with its own link.
        """
        return (self,)

    def provides_device(self, identifiers: set[tuple[str, str]]) -> bool:
        """Whether one of the devices this runtime reads has any of ``identifiers``.

        A device it no longer reads (an inverter that left a plant) may be removed by the user.
        """
        own = self.device_info.get("identifiers") or set()
        return bool(own & identifiers)

    async def async_apply_options(self) -> bool:
        """Apply changed options without a reload; False (the default) asks for a reload."""
        return False

    @abstractmethod
    def diagnostics(self) -> Mapping[str, Any]:
        """State useful in a bug report; the caller redacts identifying values."""

    # --- battery snapshot publishing (used by entries that measure a battery) ---

    @property
    def snapshot(self) -> BatterySnapshot | None:
        """The latest battery reading, for entries that measure a battery; None otherwise."""
        return None

    def member_snapshot(self, member: str) -> BatterySnapshot | None:
        """The latest reading of one of several batteries the entry reads (a pack on a bus).

        ``member`` is what follows the entry id in a battery-source id ``<entry_id>:<member>``;
        None for an entry that reads no such battery.
        """
        return None

    @callback
    def async_subscribe_snapshot(self, listener: SnapshotListener) -> CALLBACK_TYPE:
        """Call ``listener`` for every new snapshot until the returned callback is called."""
        self._snapshot_listeners.append(listener)

        @callback
        def _unsubscribe() -> None:
            if listener in self._snapshot_listeners:
                self._snapshot_listeners.remove(listener)

        return _unsubscribe

    @callback
    def _async_publish_snapshot(self, snapshot: BatterySnapshot) -> None:
        for listener in list(self._snapshot_listeners):
            listener(snapshot)


class ProbeError(Exception):
    """The device on the port did not answer as its kind should; ``reason`` says how."""

    def __init__(self, reason: str) -> None:
        """``reason`` is a config-flow error key."""
        super().__init__(reason)
        self.reason = reason
