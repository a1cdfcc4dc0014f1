"""Config- and options-flow steps for a Sunny Island on a CAN bus, as its BMS.

Mixed into the integration's one ``ConfigFlow`` class. Like VE.Direct, the link is tested before
an entry exists: the Sunny Island must be heard on the CAN bus.
"""

from __future__ import annotations

import secrets
from typing import Any

from homeassistant.config_entries import (
    SOURCE_RECONFIGURE,
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlow,
)
from homeassistant.helpers import selector

from ...const import (
    CONF_BITRATE,
    CONF_CAN_CHANNEL,
    CONF_CAN_INTERFACE,
    CONF_CAPACITY,
    CONF_CELLS,
    CONF_CHEMISTRY,
    CONF_DEVICE,
    CONF_SIMULATED,
    CONF_SOURCE,
    CONF_SOURCE_CURRENT,
    CONF_SOURCE_SOC,
    CONF_SOURCE_TEMPERATURE,
    CONF_SOURCE_VOLTAGE,
    SOURCE_ENTITIES,
    DeviceKind,
)
from ...control.chemistry import CHEMISTRIES, ChargeSettings, UnsafeSetting, allowed_cell_counts
from ...flow_helpers import (
    OPTION_SETTINGS,
    OPTION_SWITCHES,
    async_port_options,
    async_update_entry_and_abort,
    port_selector,
    settings_errors,
    settings_schema,
)
from ...schema import vol
from ..base import ProbeError
from ..battery_bank.bank_entry import (
    bank_cells,
    bank_chemistry,
    bank_source_options,
    is_bank_entry,
)
from ..battery_source import battery_source_options
from ..charge_settings import settings_from_entry

CONF_FAMILY = "family"
# Entry data of a Sunny Island fed by HA sensors: the current sensor counts discharging as
# positive. The runtime reads the same key (it lives there, not here: importing the runtime
# would import python-can into every config flow).
CONF_SOURCE_INVERT_CURRENT = "source_invert_current"
# Entry option: how long the Sunny Island may go on with the last limits when Home Assistant
# stops deciding, before the sender's dead-man guard sends safe frames by itself (s).
CONF_GUARD_TIME = "guard_time"
DEFAULT_GUARD_TIME = 10
GUARD_TIME_RANGE = (2, 50)
INTERFACES = ("socketcan", "slcan")
SIMULATED: tuple[str, ...] = ("sunny_island",)
"""The simulated-device menu's Sunny Island choice."""


def _select(
    options: list[str] | list[selector.SelectOptionDict], translation_key: str | None = None
) -> selector.SelectSelector:
    config = selector.SelectSelectorConfig(options=options)
    if translation_key is not None:
        config["translation_key"] = translation_key
    return selector.SelectSelector(config)


def battery_sources(flow: ConfigFlow | OptionsFlow) -> list[selector.SelectOptionDict]:
    """Every battery another entry of this integration measures (a bank too), plus 'HA sensors'."""
    sources = battery_source_options(flow.hass)
    sources.extend(bank_source_options(flow.hass))
    sources.append(selector.SelectOptionDict(value=SOURCE_ENTITIES, label="Home Assistant sensors"))
    return sources


def _bank_errors(flow: ConfigFlow, user_input: dict[str, Any]) -> dict[str, str]:
    """A battery bank as the source must be the battery the form describes (its cells)."""
    bank = flow.hass.config_entries.async_get_entry(str(user_input[CONF_SOURCE]))
    if not is_bank_entry(bank):
        return {}
    assert bank is not None
    if (bank_chemistry(bank), bank_cells(bank)) != (
        user_input[CONF_CHEMISTRY],
        int(user_input[CONF_CELLS]),
    ):
        return {CONF_SOURCE: "bank_cells_mismatch"}
    return {}


def cell_counts_text() -> str:
    """The cell counts each chemistry allows for a Sunny Island, for the battery form's text."""
    parts = []
    for key, chemistry in CHEMISTRIES.items():
        *first, last = (str(count) for count in allowed_cell_counts(key))
        counts = f"{', '.join(first)} or {last}" if first else last
        parts.append(f"{chemistry.name} {counts} cells")
    return "; ".join(parts)


def _interface_schema(default: str) -> vol.Schema:
    return vol.Schema(
        {
            vol.Required(CONF_CAN_INTERFACE, default=default): _select(
                list(INTERFACES), translation_key="can_interface"
            )
        }
    )


class SunnyIslandFlow(ConfigFlow):
    """Steps for the Sunny Island BMS emulation: CAN interface, battery, battery source."""

    _si: dict[str, Any]

    async def async_step_sunny_island(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Pick how the computer is connected to the Sunny Island's CAN bus."""
        self._si = {}
        if user_input is not None:
            self._si = {CONF_CAN_INTERFACE: user_input[CONF_CAN_INTERFACE]}
            return await self.async_step_sunny_island_channel()
        return self.async_show_form(
            step_id="sunny_island", data_schema=_interface_schema("socketcan")
        )

    async def _async_start_simulated_sunny_island(self, choice: str) -> ConfigFlowResult:
        return await self._async_start_simulated_si()

    async def _async_start_simulated_si(self) -> ConfigFlowResult:
        """A simulated Sunny Island on a private virtual bus; the battery is asked next."""
        self._si = {CONF_SIMULATED: True, CONF_CAN_INTERFACE: "virtual"}
        await self.async_set_unique_id(f"sunny_island:simulated:{secrets.token_hex(4)}")
        return await self.async_step_sunny_island_battery()

    async def async_step_sunny_island_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Pick the CAN interface the Sunny Island is reached through now; the channel is next.

        The channel step listens for the Sunny Island on the new bus before anything is saved,
        as when the entry was created.
        """
        entry = self._get_reconfigure_entry()
        if entry.data.get(CONF_SIMULATED):
            return self.async_abort(reason="simulated_fixed")
        if user_input is not None:
            self._si = {CONF_CAN_INTERFACE: user_input[CONF_CAN_INTERFACE]}
            return await self.async_step_sunny_island_channel()
        current = entry.data.get(CONF_CAN_INTERFACE)
        return self.async_show_form(
            step_id="sunny_island_reconfigure",
            data_schema=_interface_schema(current if current in INTERFACES else "socketcan"),
        )

    async def async_step_sunny_island_channel(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """The channel (can0, or a serial port for slcan); then listen."""
        interface = self._si[CONF_CAN_INTERFACE]
        errors: dict[str, str] = {}
        if user_input is not None:
            # python-can is only needed once a Sunny Island is being set up; its import does
            # blocking I/O, so it happens in the import executor.
            from homeassistant.helpers.importlib import async_import_module

            island = await async_import_module(self.hass, f"{__package__}.runtime")
            channel = str(user_input[CONF_CAN_CHANNEL]).strip()
            config = island.CanConfig(interface=interface, channel=channel)
            try:
                await island.async_probe_si(self.hass, config)
            except ProbeError as err:
                errors["base"] = err.reason
            else:
                self._si.update({CONF_CAN_CHANNEL: channel, CONF_BITRATE: config.bitrate})
                if self.source == SOURCE_RECONFIGURE:
                    return self._async_move_si()
                await self.async_set_unique_id(f"sunny_island:{interface}:{channel}")
                self._abort_if_unique_id_configured()
                return await self.async_step_sunny_island_battery()
        channel_field: Any
        default: str | None
        if interface == "slcan":
            channel_field = port_selector(await async_port_options(self.hass))
            default = None
        else:
            channel_field = str
            default = "can0"
        if self.source == SOURCE_RECONFIGURE:
            entry = self._get_reconfigure_entry()
            if entry.data.get(CONF_CAN_INTERFACE) == interface:
                default = entry.data.get(CONF_CAN_CHANNEL) or default
        return self.async_show_form(
            step_id="sunny_island_channel",
            data_schema=vol.Schema(
                {vol.Required(CONF_CAN_CHANNEL, default=default or vol.UNDEFINED): channel_field}
            ),
            description_placeholders={"interface": interface},
            errors=errors,
        )

    def _async_move_si(self) -> ConfigFlowResult:
        """Save the new CAN connection of a reconfigured entry (its listener reloads it).

        The unique id stays as it was, though it names the first bus: the device and entity
        ids are made from it. Another entry on the new bus is found by its data instead.
        """
        entry = self._get_reconfigure_entry()
        bus = (self._si[CONF_CAN_INTERFACE], self._si[CONF_CAN_CHANNEL])
        for other in self._async_current_entries(include_ignore=False):
            if (
                other.entry_id != entry.entry_id
                and (
                    other.data.get(CONF_CAN_INTERFACE),
                    other.data.get(CONF_CAN_CHANNEL),
                )
                == bus
            ):
                return self.async_abort(reason="already_configured")
        return async_update_entry_and_abort(
            self,
            entry,
            data_updates={
                key: self._si[key] for key in (CONF_CAN_INTERFACE, CONF_CAN_CHANNEL, CONF_BITRATE)
            },
            reason="sunny_island_reconfigured",
        )

    async def async_step_sunny_island_battery(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Battery chemistry and size, and where its state of charge comes from."""
        errors: dict[str, str] = {}
        if user_input is not None:
            try:
                ChargeSettings.for_chemistry(
                    user_input[CONF_CHEMISTRY],
                    cells=int(user_input[CONF_CELLS]),
                    capacity_ah=float(user_input[CONF_CAPACITY]),
                )
            except UnsafeSetting as err:
                # A cell count outside the chemistry's range would put the charge or discharge
                # voltage outside what the Sunny Island accepts: say so next to the field.
                errors[CONF_CELLS if err.field == CONF_CELLS else "base"] = (
                    "cells_not_allowed" if err.field == CONF_CELLS else "unsafe_setting"
                )
            else:
                errors = _bank_errors(self, user_input)
            if not errors:
                self._si.update(
                    {
                        CONF_CHEMISTRY: user_input[CONF_CHEMISTRY],
                        CONF_CELLS: int(user_input[CONF_CELLS]),
                        CONF_CAPACITY: float(user_input[CONF_CAPACITY]),
                        CONF_SOURCE: user_input[CONF_SOURCE],
                    }
                )
                if user_input[CONF_SOURCE] == SOURCE_ENTITIES:
                    return await self.async_step_sunny_island_entities()
                return self._async_create_si()
        counts = [count for key in CHEMISTRIES for count in allowed_cell_counts(key)]
        schema = vol.Schema(
            {
                vol.Required(CONF_CHEMISTRY, default="lifepo4"): _select(
                    list(CHEMISTRIES), translation_key="chemistry"
                ),
                vol.Required(CONF_CELLS, default=16): selector.NumberSelector(
                    selector.NumberSelectorConfig(
                        min=min(counts),
                        max=max(counts),
                        step=1,
                        mode=selector.NumberSelectorMode.BOX,
                    )
                ),
                vol.Required(CONF_CAPACITY, default=280): selector.NumberSelector(
                    selector.NumberSelectorConfig(
                        min=1,
                        max=10000,
                        step=1,
                        unit_of_measurement="Ah",
                        mode=selector.NumberSelectorMode.BOX,
                    )
                ),
                vol.Required(CONF_SOURCE): _select(battery_sources(self)),
            }
        )
        return self.async_show_form(
            step_id="sunny_island_battery",
            data_schema=self.add_suggested_values_to_schema(schema, user_input),
            errors=errors,
            description_placeholders={"cell_counts": cell_counts_text()},
        )

    async def async_step_sunny_island_entities(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Home Assistant sensors as the battery source (SOC required)."""
        if user_input is not None:
            self._si.update(user_input)
            return self._async_create_si()

        def sensor(device_class: str) -> selector.EntitySelector:
            return selector.EntitySelector(
                selector.EntitySelectorConfig(domain="sensor", device_class=device_class)
            )

        return self.async_show_form(
            step_id="sunny_island_entities",
            data_schema=vol.Schema(
                {
                    vol.Required(CONF_SOURCE_SOC): sensor("battery"),
                    vol.Optional(CONF_SOURCE_VOLTAGE): sensor("voltage"),
                    vol.Optional(CONF_SOURCE_CURRENT): sensor("current"),
                    vol.Optional(CONF_SOURCE_TEMPERATURE): sensor("temperature"),
                    vol.Required(
                        CONF_SOURCE_INVERT_CURRENT, default=False
                    ): selector.BooleanSelector(),
                }
            ),
        )

    def _async_create_si(self) -> ConfigFlowResult:
        simulated = bool(self._si.get(CONF_SIMULATED))
        title = "Simulated Sunny Island" if simulated else "Sunny Island"
        return self.async_create_entry(
            title=title, data={CONF_DEVICE: DeviceKind.SUNNY_ISLAND.value, **self._si}
        )


class SunnyIslandOptionsFlow(OptionsFlow):
    """The charge settings; applied live, the BMS frames never stop for them."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Options start here; the form has its own step id (and its own texts)."""
        return await self.async_step_charge_settings()

    async def async_step_charge_settings(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """The main charge settings, bounded by the chemistry."""
        settings = settings_from_entry(self.config_entry)
        errors: dict[str, str] = {}
        if user_input is not None:
            updated, errors = settings_errors(
                settings, user_input, OPTION_SETTINGS, OPTION_SWITCHES
            )
            if updated is not None:
                return self.async_create_entry(data={**self.config_entry.options, **user_input})
        low, high = GUARD_TIME_RANGE
        guard = self.config_entry.options.get(CONF_GUARD_TIME, DEFAULT_GUARD_TIME)
        schema = vol.Schema(
            {
                **settings_schema(settings, OPTION_SETTINGS, OPTION_SWITCHES),
                vol.Required(CONF_GUARD_TIME, default=guard): selector.NumberSelector(
                    selector.NumberSelectorConfig(
                        min=low,
                        max=high,
                        step=1,
                        unit_of_measurement="s",
                        mode=selector.NumberSelectorMode.BOX,
                    )
                ),
            }
        )
        return self.async_show_form(
            step_id="charge_settings",
            data_schema=self.add_suggested_values_to_schema(schema, user_input),
            errors=errors,
        )
