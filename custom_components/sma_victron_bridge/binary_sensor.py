"""Binary sensor platform: on/off facts of a device (relay, alarm, link health)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homeassistant.components.binary_sensor import BinarySensorEntity, BinarySensorEntityDescription
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .entity import BridgeEntity, BridgeEntityDescription, async_add_description_entities
from .runtime import BridgeConfigEntry

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class BridgeBinarySensorEntityDescription(BridgeEntityDescription, BinarySensorEntityDescription):
    """A binary sensor whose state is computed from the coordinator's data."""

    is_on_fn: Callable[[Any], bool | None]


class BridgeBinarySensor(BridgeEntity, BinarySensorEntity):
    """An on/off value of a device."""

    entity_description: BridgeBinarySensorEntityDescription

    @property
    def is_on(self) -> bool | None:
        """The state, straight from the description's ``is_on_fn``."""
        return self.entity_description.is_on_fn(self.coordinator.data)

    def _state_fingerprint(self) -> tuple[Any, ...]:
        return (self.available, self.is_on) if self.available else (False,)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: BridgeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the entry's binary sensors."""
    async_add_description_entities(
        entry, Platform.BINARY_SENSOR, BridgeBinarySensor, async_add_entities
    )
