"""Switch platform: on/off controls of a device, each confirmed by reading the device back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from homeassistant.components.switch import SwitchEntity, SwitchEntityDescription
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .devices.base import DeviceRuntime
from .entity import BridgeEntity, BridgeEntityDescription, async_add_description_entities
from .runtime import BridgeConfigEntry

PARALLEL_UPDATES = 1


@dataclass(frozen=True, kw_only=True)
class BridgeSwitchEntityDescription(BridgeEntityDescription, SwitchEntityDescription):
    """A switch: ``is_on_fn`` reads the state, ``set_fn`` writes it and confirms it."""

    is_on_fn: Callable[[Any], bool | None]
    set_fn: Callable[[DeviceRuntime, bool], Awaitable[None]]


class BridgeSwitch(BridgeEntity, SwitchEntity):
    """An on/off control of a device."""

    entity_description: BridgeSwitchEntityDescription

    @property
    def is_on(self) -> bool | None:
        """The state the device reported last."""
        return self.entity_description.is_on_fn(self.coordinator.data)

    async def async_turn_on(self, **kwargs: Any) -> None:
        """Switch on; the device runtime refuses when it is unsafe."""
        await self.entity_description.set_fn(self.runtime, True)

    async def async_turn_off(self, **kwargs: Any) -> None:
        """Switch off."""
        await self.entity_description.set_fn(self.runtime, False)

    def _state_fingerprint(self) -> tuple[Any, ...]:
        return (True, self.is_on) if self.available else (False,)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: BridgeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the entry's switches."""
    async_add_description_entities(entry, Platform.SWITCH, BridgeSwitch, async_add_entities)
