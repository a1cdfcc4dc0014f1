"""Sensor platform: one entity per sensor description of the entry's device."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from homeassistant.components.sensor import SensorEntity, SensorEntityDescription
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.typing import StateType

from .entity import BridgeEntity, BridgeEntityDescription, async_add_description_entities
from .runtime import BridgeConfigEntry

PARALLEL_UPDATES = 0

type SensorValue = StateType | date | datetime | Decimal


@dataclass(frozen=True, kw_only=True)
class BridgeSensorEntityDescription(BridgeEntityDescription, SensorEntityDescription):
    """A sensor whose value is computed from the coordinator's data."""

    value_fn: Callable[[Any], SensorValue]
    attributes_fn: Callable[[Any], dict[str, Any] | None] | None = None


class BridgeSensor(BridgeEntity, SensorEntity):
    """A read-only value of a device."""

    entity_description: BridgeSensorEntityDescription

    @property
    def native_value(self) -> SensorValue:
        """The value, straight from the description's ``value_fn``."""
        return self.entity_description.value_fn(self.coordinator.data)

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """Extra attributes where the description defines them (e.g. all active alarm bits)."""
        if self.entity_description.attributes_fn is None:
            return None
        return self.entity_description.attributes_fn(self.coordinator.data)

    def _state_fingerprint(self) -> tuple[Any, ...]:
        if not self.available:
            return (False,)
        return (True, self.native_value, repr(self.extra_state_attributes))


async def async_setup_entry(
    hass: HomeAssistant,
    entry: BridgeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the entry's sensors."""
    async_add_description_entities(entry, Platform.SENSOR, BridgeSensor, async_add_entities)
