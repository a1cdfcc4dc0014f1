"""Select platform: device settings with a fixed set of choices."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from homeassistant.components.select import SelectEntity, SelectEntityDescription
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .devices.base import DeviceRuntime
from .entity import BridgeEntity, BridgeEntityDescription, async_add_description_entities
from .runtime import BridgeConfigEntry

PARALLEL_UPDATES = 1


@dataclass(frozen=True, kw_only=True)
class BridgeSelectEntityDescription(BridgeEntityDescription, SelectEntityDescription):
    """A choice: ``value_fn`` reads the current option, ``select_fn`` writes and reads back."""

    value_fn: Callable[[Any], str | None]
    select_fn: Callable[[DeviceRuntime, str], Awaitable[None]]


class BridgeSelect(BridgeEntity, SelectEntity):
    """A setting with named options."""

    entity_description: BridgeSelectEntityDescription

    @property
    def current_option(self) -> str | None:
        """The option the device reported last."""
        return self.entity_description.value_fn(self.coordinator.data)

    async def async_select_option(self, option: str) -> None:
        """Write the option to the device."""
        await self.entity_description.select_fn(self.runtime, option)

    def _state_fingerprint(self) -> tuple[Any, ...]:
        return (True, self.current_option) if self.available else (False,)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: BridgeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the entry's selects."""
    async_add_description_entities(entry, Platform.SELECT, BridgeSelect, async_add_entities)
