"""Button platform: one-shot actions on a device (e.g. start a full charge now)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from homeassistant.components.button import ButtonEntity, ButtonEntityDescription
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .devices.base import DeviceRuntime
from .entity import BridgeEntity, BridgeEntityDescription, async_add_description_entities
from .runtime import BridgeConfigEntry

PARALLEL_UPDATES = 1


@dataclass(frozen=True, kw_only=True)
class BridgeButtonEntityDescription(BridgeEntityDescription, ButtonEntityDescription):
    """A button: ``press_fn`` performs the action on the device runtime."""

    press_fn: Callable[[DeviceRuntime], Awaitable[None]]


class BridgeButton(BridgeEntity, ButtonEntity):
    """A one-shot action."""

    entity_description: BridgeButtonEntityDescription

    async def async_press(self) -> None:
        """Perform the action."""
        await self.entity_description.press_fn(self.runtime)

    def _state_fingerprint(self) -> tuple[Any, ...]:
        return (self.available,)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: BridgeConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the entry's buttons."""
    async_add_description_entities(entry, Platform.BUTTON, BridgeButton, async_add_entities)
