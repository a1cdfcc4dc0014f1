"""The one entity base class and the description plumbing every platform shares.

Entities are built from frozen description dataclasses with a ``value_fn`` over the coordinator's
data and an ``exists_fn`` that says whether this device has the value at all. Entities appear as
soon as their value does (a BMV sends half its fields in a second block), and they write their
state only when what they show actually changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homeassistant.const import Platform
from homeassistant.core import callback
from homeassistant.helpers.entity import Entity, EntityDescription
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .devices.base import DeviceRuntime, PushCoordinator
from .runtime import BridgeConfigEntry


def _always(_: Any) -> bool:
    return True


@dataclass(frozen=True, kw_only=True)
class BridgeEntityDescription(EntityDescription):
    """Fields every description of this integration carries, whatever the platform."""

    exists_fn: Callable[[Any], bool] = _always
    available_fn: Callable[[Any], bool] = _always


class BridgeEntity(CoordinatorEntity[PushCoordinator[Any]]):
    """Base for all entities: device info, unique id, availability and change-only writes."""

    _attr_has_entity_name = True
    entity_description: BridgeEntityDescription

    def __init__(self, runtime: DeviceRuntime, description: BridgeEntityDescription) -> None:
        """Bind the entity to its device runtime and description."""
        super().__init__(runtime.coordinator)
        self.runtime = runtime
        self.entity_description = description
        self._attr_device_info = runtime.device_info
        identifiers = runtime.device_info.get("identifiers") or set()
        device_id = next(iter(identifiers))[1] if identifiers else "device"
        self._attr_unique_id = f"{device_id}_{description.key}"
        self._last_written: tuple[Any, ...] | None = None

    @property
    def available(self) -> bool:
        """Unavailable while the link is down or the device does not report this value."""
        return (
            self.coordinator.link_up
            and super().available
            and self.entity_description.available_fn(self.coordinator.data)
        )

    def _state_fingerprint(self) -> tuple[Any, ...]:
        """What the entity shows; platforms add their value."""
        return (self.available,)

    @callback
    def _handle_coordinator_update(self) -> None:
        fingerprint = self._state_fingerprint()
        if fingerprint != self._last_written:
            self._last_written = fingerprint
            self.async_write_ha_state()

    async def async_added_to_hass(self) -> None:
        """Remember what was written first so the next update can skip identical states."""
        await super().async_added_to_hass()
        self._last_written = self._state_fingerprint()


type EntityFactory = Callable[[DeviceRuntime, Any], Entity]


@callback
def async_add_description_entities(
    entry: BridgeConfigEntry,
    platform: Platform,
    factory: EntityFactory,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add an entity per description whose value exists, now and whenever a new one appears.

    Every device the entry's runtime reads (see ``DeviceRuntime.device_runtimes``) gets its own
    entities, following its own coordinator.
    """
    for runtime in entry.runtime_data.device_runtimes():
        _async_add_device_entities(entry, runtime, platform, factory, async_add_entities)


@callback
def _async_add_device_entities(
    entry: BridgeConfigEntry,
    runtime: DeviceRuntime,
    platform: Platform,
    factory: EntityFactory,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    descriptions = runtime.descriptions(platform)
    created: set[str] = set()

    @callback
    def _add_new() -> None:
        data = runtime.coordinator.data
        new = [
            d
            for d in descriptions
            if d.key not in created and getattr(d, "exists_fn", _always)(data)
        ]
        if not new:
            return
        created.update(d.key for d in new)
        async_add_entities([factory(runtime, d) for d in new])

    _add_new()
    if len(created) < len(descriptions):
        entry.async_on_unload(runtime.coordinator.async_add_listener(_add_new))
