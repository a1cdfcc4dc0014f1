"""Sensor platform: one entity per sensor description of the entry's device."""

from __future__ import annotations

from collections.abc import Callable
import contextlib
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from homeassistant.components.sensor import (
    RestoreSensor,
    SensorEntity,
    SensorEntityDescription,
)
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.typing import StateType

from .devices.base import DeviceRuntime
from .entity import BridgeEntity, BridgeEntityDescription, async_add_description_entities
from .runtime import BridgeConfigEntry

PARALLEL_UPDATES = 0

type SensorValue = StateType | date | datetime | Decimal


@dataclass(frozen=True, kw_only=True)
class BridgeSensorEntityDescription(BridgeEntityDescription, SensorEntityDescription):
    """A sensor whose value is computed from the coordinator's data."""

    value_fn: Callable[[Any], SensorValue]
    attributes_fn: Callable[[Any], dict[str, Any] | None] | None = None
    # Totals the runtime computes itself (e.g. energy integrated from power) restart from the
    # last state Home Assistant saved: ``restore_fn`` hands that value back to the runtime.
    restore_fn: Callable[[DeviceRuntime, float], None] | None = None


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


class BridgeRestoreSensor(BridgeSensor, RestoreSensor):
    """A sensor whose value the runtime accumulates and that continues after a restart."""

    async def async_added_to_hass(self) -> None:
        """Give the saved total back to the runtime before the first state is written."""
        restore_fn = self.entity_description.restore_fn
        last = await self.async_get_last_sensor_data()
        if restore_fn is not None and last is not None and last.native_value is not None:
            with contextlib.suppress(ValueError):
                restore_fn(self.runtime, float(str(last.native_value)))
        await super().async_added_to_hass()


def _create_sensor(
    runtime: DeviceRuntime, description: BridgeSensorEntityDescription
) -> BridgeSensor:
    if description.restore_fn is not None:
        return BridgeRestoreSensor(runtime, description)
    return BridgeSensor(runtime, description)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: BridgeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the entry's sensors."""
    async_add_description_entities(entry, Platform.SENSOR, _create_sensor, async_add_entities)
