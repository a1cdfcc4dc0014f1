"""UI set-up: pick a device kind, then its port; every entry is tested before it is created.

The one ``ConfigFlow`` class of the integration is composed from the kinds' flow mixins listed in
``devices.KINDS`` (each in ``devices/<kind>/flow.py``). This module holds only what all kinds
share: the menu of kinds, the menu of simulated devices, and handing reconfigure and options to
the entry's kind.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType
from typing import Any

from homeassistant.config_entries import ConfigEntry, ConfigFlow, ConfigFlowResult, OptionsFlow
from homeassistant.core import callback
from homeassistant.helpers import selector

from .const import CONF_DEVICE, DOMAIN, DeviceKind
from .devices import KIND_BY_ID, KINDS, Kind
from .schema import vol

CONF_SIMULATED_DEVICE = "simulated_device"
STEP_SIMULATED = "simulated"

# The flow modules import no protocol library that blocks on import (the Sunny Island's python-can
# is imported by its steps, in the import executor), and Home Assistant imports this module in its
# import executor anyway.
FLOWS: dict[DeviceKind, ModuleType] = {
    kind.kind: import_module(f"{kind.package}.flow") for kind in KINDS
}

SIMULATED_KINDS: dict[str, DeviceKind] = {
    choice: kind.kind for kind in KINDS for choice in FLOWS[kind.kind].SIMULATED
}
"""Every built-in simulator, as offered by the one "Simulated device" menu entry, and its kind."""
SIMULATED_DEVICES: tuple[str, ...] = tuple(SIMULATED_KINDS)


def _entry_kind(entry: ConfigEntry) -> Kind:
    return KIND_BY_ID[DeviceKind(entry.data.get(CONF_DEVICE, DeviceKind.VEDIRECT))]


class BridgeFlowBase(ConfigFlow):
    """The steps every kind shares; the kinds' mixins come before it in ``BridgeConfigFlow``."""

    VERSION = 1
    MINOR_VERSION = 1

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> OptionsFlow:
        """The options flow of the entry's kind."""
        kind = _entry_kind(config_entry)
        options_flow: OptionsFlow = getattr(FLOWS[kind.kind], kind.options_flow)()
        return options_flow

    @classmethod
    @callback
    def async_supports_options_flow(cls, config_entry: ConfigEntry) -> bool:
        """Whether the entry's kind offers options for it (e.g. MPPTs do, battery monitors not)."""
        kind = _entry_kind(config_entry)
        if kind.supports_options is None:
            return True
        supported: bool = getattr(FLOWS[kind.kind], kind.supports_options)(config_entry)
        return supported

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Menu of the device kinds, and last the simulated devices for trying without hardware.

        Simulators live in their own entry rather than in the port and device lists: a user
        picking a port should only ever see real hardware.
        """
        return self.async_show_menu(
            step_id="user",
            menu_options=[*(kind.kind.value for kind in KINDS), STEP_SIMULATED],
        )

    async def async_step_simulated(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Pick a built-in simulator; it is then set up by the same code as its real device."""
        if user_input is not None:
            choice: str = user_input[CONF_SIMULATED_DEVICE]
            start = getattr(self, f"_async_start_simulated_{SIMULATED_KINDS[choice].value}")
            result: ConfigFlowResult = await start(choice)
            return result
        return self.async_show_form(
            step_id=STEP_SIMULATED,
            data_schema=vol.Schema(
                {
                    vol.Required(CONF_SIMULATED_DEVICE): selector.SelectSelector(
                        selector.SelectSelectorConfig(
                            options=list(SIMULATED_DEVICES),
                            translation_key="simulated_device",
                            mode=selector.SelectSelectorMode.DROPDOWN,
                        )
                    )
                }
            ),
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Each kind has its own reconfigure steps; a simulated device says it cannot move.

        VE.Direct's form is this step itself, so its answer is handed on too.
        """
        kind = _entry_kind(self._get_reconfigure_entry())
        step = getattr(self, f"async_step_{kind.kind.value}_reconfigure")
        result: ConfigFlowResult = await step(user_input)
        return result


BridgeConfigFlow: type[BridgeFlowBase] = type(
    "BridgeConfigFlow",
    (*(getattr(FLOWS[kind.kind], kind.flow) for kind in KINDS), BridgeFlowBase),
    {
        "__module__": __name__,
        "__doc__": "Config flow of the integration: a menu of kinds, each with its own steps.",
    },
    domain=DOMAIN,
)
