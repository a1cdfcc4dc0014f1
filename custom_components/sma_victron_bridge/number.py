"""Number platform: device settings written to the hardware and read back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from homeassistant.components.number import NumberEntity, NumberEntityDescription
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .devices.base import DeviceRuntime
from .entity import BridgeEntity, BridgeEntityDescription, async_add_description_entities
from .runtime import BridgeConfigEntry

PARALLEL_UPDATES = 1


@dataclass(frozen=True, kw_only=True)
class BridgeNumberEntityDescription(BridgeEntityDescription, NumberEntityDescription):
    """A setting: ``value_fn`` reads it from data, ``set_fn`` writes it (and reads it back).

    ``bounds_fn`` narrows the static min/max to what is safe for this device right now
    (e.g. the system voltage of a charger); values outside are refused before any write.
    """

    value_fn: Callable[[Any], float | None]
    set_fn: Callable[[DeviceRuntime, float], Awaitable[None]]
    bounds_fn: Callable[[Any], tuple[float, float] | None] | None = None


class BridgeNumber(BridgeEntity, NumberEntity):
    """A bounded, writable setting of a device."""

    entity_description: BridgeNumberEntityDescription

    @property
    def native_value(self) -> float | None:
        """The value the device reported last."""
        return self.entity_description.value_fn(self.coordinator.data)

    def _bounds(self) -> tuple[float, float] | None:
        if self.entity_description.bounds_fn is None:
            return None
        return self.entity_description.bounds_fn(self.coordinator.data)

    @property
    def native_min_value(self) -> float:
        """Lowest value the user may set for this device."""
        bounds = self._bounds()
        return super().native_min_value if bounds is None else bounds[0]

    @property
    def native_max_value(self) -> float:
        """Highest value the user may set for this device."""
        bounds = self._bounds()
        return super().native_max_value if bounds is None else bounds[1]

    async def async_set_native_value(self, value: float) -> None:
        """Write the setting; the device runtime refuses unsafe values and reads it back."""
        await self.entity_description.set_fn(self.runtime, value)

    def _state_fingerprint(self) -> tuple[Any, ...]:
        if not self.available:
            return (False,)
        return (True, self.native_value, self.native_min_value, self.native_max_value)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: BridgeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the entry's settings."""
    async_add_description_entities(entry, Platform.NUMBER, BridgeNumber, async_add_entities)
