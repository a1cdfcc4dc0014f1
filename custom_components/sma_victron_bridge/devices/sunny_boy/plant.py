"""The other inverters of a Sunny Boy plant (NetID > 1): one Home Assistant device each.

Several Sunny Boys can share one Bluetooth network; the inverter the entry connects to passes
requests on to the others. The entry's own inverter keeps the entry's device and entity ids
(a single-inverter entry looks exactly as before); every further inverter of the plant becomes
a device of its own, linked to the first one (``via_device``), with the same entity
descriptions and unique ids made from its serial number.

The description-driven entity plumbing adds the entities of one device per entry. Further
inverters are only known once the plant answered, after setup, so their entities are added
to the entry's sensor platform directly, as soon as that platform exists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
import logging
from typing import TYPE_CHECKING, Any

from homeassistant.const import Platform
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.entity_platform import EntityPlatform, async_get_platforms

from ...const import DOMAIN, MANUFACTURER_SMA
from ...protocols.sma_bt import Endpoint
from ...runtime import BridgeConfigEntry
from ...sensor import BridgeSensor, BridgeSensorEntityDescription
from ..base import DeviceRuntime, PushCoordinator
from ..registry import async_entry_device
from .entities import SENSORS

if TYPE_CHECKING:
    from .runtime import SunnyBoyData

_LOGGER = logging.getLogger(__name__)


class InverterView(DeviceRuntime):
    """Another inverter of the plant as the entities see a device: its data and identity.

    Owns nothing that runs: the entry's runtime polls the plant and feeds this view's
    coordinator.
    """

    platforms = ()

    def __init__(
        self,
        coordinator: PushCoordinator[SunnyBoyData],
        serial: str,
        via: str,
        fallback_model: str | None,
    ) -> None:
        """``via``: the identifier of the entry's own inverter, which links to this one."""
        super().__init__()
        self._coordinator = coordinator
        self.serial = serial
        self.via = via
        self._fallback_model = fallback_model

    @property
    def coordinator(self) -> PushCoordinator[SunnyBoyData]:
        """This inverter's coordinator."""
        return self._coordinator

    @property
    def data(self) -> SunnyBoyData:
        """This inverter's latest reading."""
        return self._coordinator.data

    @property
    def title(self) -> str:
        """Device name: type label and serial number, as an entry of its own would be named."""
        return f"{self.model} {self.serial}"

    @property
    def model(self) -> str:
        """Type label read from the inverter (or that of the entry's inverter)."""
        info = self.data.info
        return (info.type_label if info else None) or self._fallback_model or "Sunny Boy"

    @property
    def device_info(self) -> DeviceInfo:
        """A device per inverter, keyed by its serial number."""
        info = self.data.info
        return DeviceInfo(
            identifiers={(DOMAIN, self.serial)},
            manufacturer=MANUFACTURER_SMA,
            model=self.model,
            name=self.title,
            serial_number=self.serial,
            sw_version=info.software_version if info else None,
        )

    def descriptions(self, platform: Platform) -> Sequence[EntityDescription]:
        """The same sensors as the entry's own inverter."""
        return SENSORS if platform is Platform.SENSOR else ()

    async def async_start(self) -> None:
        """Nothing to start: the entry's runtime reads this inverter."""

    async def async_shutdown(self) -> None:
        """Nothing to stop."""

    def diagnostics(self) -> Mapping[str, Any]:
        """Counters and identity of this inverter (no serial numbers)."""
        data = self.data
        info = data.info
        return {
            "type_label": info.type_label if info else None,
            "software_version": info.software_version if info else None,
            "polls": data.polls,
            "history_imports": data.history_imports,
            "hours_last_import": data.history_hours,
        }


@dataclass(slots=True)
class PlantMember:
    """A further inverter of the plant: where to reach it and what Home Assistant shows."""

    endpoint: Endpoint
    view: InverterView
    entity_keys: set[str] = field(default_factory=set)
    """Descriptions whose entities exist (added once their value does)."""
    unsubscribe: Callable[[], None] | None = None


def sensor_platform(hass: HomeAssistant, entry: BridgeConfigEntry) -> EntityPlatform | None:
    """The entry's sensor platform, once Home Assistant has set it up."""
    for platform in async_get_platforms(hass, DOMAIN):
        if platform.domain == Platform.SENSOR and platform.config_entry is entry:
            return platform
    return None


@callback
def async_add_member_entities(
    hass: HomeAssistant, entry: BridgeConfigEntry, member: PlantMember
) -> bool:
    """Add the member's sensors whose values exist, now and whenever a new one appears.

    Returns False while the entry's sensor platform does not exist yet (call again later).
    """
    platform = sensor_platform(hass, entry)
    if platform is None:
        return False
    view = member.view

    @callback
    def _add_new() -> None:
        data = view.coordinator.data
        new: list[BridgeSensorEntityDescription] = [
            d for d in SENSORS if d.key not in member.entity_keys and d.exists_fn(data)
        ]
        if not new:
            return
        member.entity_keys.update(d.key for d in new)

        async def _add() -> None:
            await platform.async_add_entities([BridgeSensor(view, d) for d in new])
            async_update_member_device(hass, entry.entry_id, member)

        entry.async_create_task(hass, _add(), f"{DOMAIN} sunny boy {view.serial} entities")

    _add_new()
    if member.unsubscribe is None:
        member.unsubscribe = view.coordinator.async_add_listener(_add_new)
        entry.async_on_unload(member.unsubscribe)
    return True


@callback
def async_update_member_device(hass: HomeAssistant, entry_id: str, member: PlantMember) -> None:
    """Link the inverter to the entry's own one; show a firmware or type label it reports.

    The link is set here rather than through the device info's ``via_device``, which HA
    deprecated (2027.8) for a device id that only exists once the entry's inverter is registered.
    """
    registry = dr.async_get(hass)
    device = async_entry_device(hass, entry_id, member.view.serial)
    if device is None:
        return
    via = async_entry_device(hass, entry_id, member.view.via)
    if via is not None and device.via_device_id != via.id:
        device = registry.async_update_device(device.id, via_device_id=via.id) or device
    info = member.view.data.info
    if info is None:
        return
    model = info.type_label or device.model
    if (device.sw_version, device.model) != (info.software_version, model):
        registry.async_update_device(device.id, sw_version=info.software_version, model=model)
