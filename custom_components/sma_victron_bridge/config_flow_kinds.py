"""Config- and options-flow steps for serial BMSes and the Sunny Island BMS emulation.

Mixed into the integration's one ``ConfigFlow`` class. Like VE.Direct, each kind tests the link
before an entry exists: a BMS must answer (its protocol can be detected on the chosen port, and
only there), a Sunny Island must be heard on the CAN bus.
"""

from __future__ import annotations

import secrets
from typing import Any

from homeassistant.config_entries import (
    SOURCE_RECONFIGURE,
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlow,
)
from homeassistant.helpers import selector

from .const import (
    CONF_ADDRESS,
    CONF_BITRATE,
    CONF_CAN_CHANNEL,
    CONF_CAN_INTERFACE,
    CONF_CAPACITY,
    CONF_CELLS,
    CONF_CHEMISTRY,
    CONF_DEVICE,
    CONF_INVERT_CURRENT,
    CONF_POLL_INTERVAL,
    CONF_PORT,
    CONF_PROTOCOL,
    CONF_SERIAL_NUMBER,
    CONF_SIMULATED,
    CONF_SOURCE,
    CONF_SOURCE_CURRENT,
    CONF_SOURCE_SOC,
    CONF_SOURCE_TEMPERATURE,
    CONF_SOURCE_VOLTAGE,
    DEFAULT_POLL_INTERVAL,
    DOMAIN,
    SOURCE_ENTITIES,
    DeviceKind,
)
from .control.chemistry import CHEMISTRIES, ChargeSettings, UnsafeSetting, allowed_cell_counts
from .devices.charge_settings import settings_from_entry
from .devices.serial_bms import BmsProbe, async_probe_bms, create_simulator
from .devices.vedirect import ProbeError
from .flow_helpers import (
    OPTION_SETTINGS,
    OPTION_SWITCHES,
    PORT_MANUAL,
    async_port_exists,
    async_port_options,
    async_update_entry_and_abort,
    port_selector,
    settings_errors,
    settings_schema,
)
from .protocols import jbd_up
from .protocols.bms_client import BmsProtocol
from .schema import vol

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
PROTOCOL_AUTO = "auto"
DALY_ADDRESSES = {"64": "0x40 (RS485)", "128": "0x80 (UART/TTL)"}
# The bus address of a JBD UP rack pack: a field of its own beside the Daly choice, since the
# two mean different things and a UP pack's address is a plain number (1 for a lone pack).
# It is stored under CONF_ADDRESS like the Daly address, the one the client is given.
CONF_PACK_ADDRESS = "pack_address"
PACK_ADDRESS_RANGE = (1, 255)
INTERFACES = ("socketcan", "slcan")


def _select(
    options: list[str] | list[selector.SelectOptionDict], translation_key: str | None = None
) -> selector.SelectSelector:
    config = selector.SelectSelectorConfig(options=options)
    if translation_key is not None:
        config["translation_key"] = translation_key
    return selector.SelectSelector(config)


def battery_sources(flow: ConfigFlow | OptionsFlow) -> list[selector.SelectOptionDict]:
    """Entries of this integration that publish a battery snapshot, plus 'HA sensors'."""
    sources = [
        selector.SelectOptionDict(value=entry.entry_id, label=entry.title)
        for entry in flow.hass.config_entries.async_entries(DOMAIN)
        if entry.data.get(CONF_DEVICE) == DeviceKind.SERIAL_BMS
        or entry.data.get(CONF_FAMILY) == "battery_monitor"
        or (entry.data.get(CONF_DEVICE) == "victron_ble" and entry.data.get("record_type") == 2)
    ]
    sources.append(selector.SelectOptionDict(value=SOURCE_ENTITIES, label="Home Assistant sensors"))
    return sources


def bms_unique_id(probe: BmsProbe, port: str) -> str:
    """A BMS is keyed by protocol and serial number; one that never tells it, by its port."""
    if probe.info.serial:
        return f"{probe.protocol.value}:{probe.info.serial}"
    return f"{probe.protocol.value}:{port}"


def same_bms(entry: ConfigEntry, probe: BmsProbe) -> bool:
    """Whether the BMS that answered is the one ``entry`` was set up for.

    With a serial number that is certain. A BMS without one can only be told apart by what it
    reports: the same protocol and the same number of cells.
    """
    if probe.protocol.value != entry.data.get(CONF_PROTOCOL):
        return False
    if probe.info.serial or entry.data.get(CONF_SERIAL_NUMBER):
        return bms_unique_id(probe, "") == entry.unique_id
    cells = len(probe.reading.cell_voltages) or probe.info.cell_count
    return cells == entry.data.get(CONF_CELLS)


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


class SerialBmsFlow(ConfigFlow):
    """Steps for a JBD/Daly/ANT BMS on a serial port."""

    async def async_step_serial_bms(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Pick the port and protocol (auto-detected on this port by default)."""
        errors: dict[str, str] = {}
        if user_input is not None:
            port = str(user_input[CONF_PORT]).strip()
            if port == PORT_MANUAL or not await async_port_exists(self.hass, port):
                errors[CONF_PORT] = "port_not_found"
            else:
                chosen = user_input.get(CONF_PROTOCOL, PROTOCOL_AUTO)
                address = int(user_input.get(CONF_ADDRESS, "64"))
                pack_address = int(user_input.get(CONF_PACK_ADDRESS, jbd_up.DEFAULT_ADDRESS))
                invert = bool(user_input.get(CONF_INVERT_CURRENT, False))
                try:
                    probe = await async_probe_bms(
                        port,
                        None if chosen == PROTOCOL_AUTO else BmsProtocol(chosen),
                        address=address,
                        pack_address=pack_address,
                        invert_current=invert,
                    )
                except ProbeError as err:
                    errors["base"] = err.reason
                else:
                    address = probe.address if probe.address is not None else address
                    return await self._async_create_bms(port, probe, address, invert, None)
        schema = vol.Schema(
            {
                vol.Required(CONF_PORT): port_selector(await async_port_options(self.hass)),
                vol.Required(CONF_PROTOCOL, default=PROTOCOL_AUTO): _select(
                    [PROTOCOL_AUTO, *(p.value for p in BmsProtocol)],
                    translation_key="bms_protocol",
                ),
                vol.Required(CONF_ADDRESS, default="64"): _select(
                    [selector.SelectOptionDict(value=k, label=v) for k, v in DALY_ADDRESSES.items()]
                ),
                vol.Required(
                    CONF_PACK_ADDRESS, default=jbd_up.DEFAULT_ADDRESS
                ): selector.NumberSelector(
                    selector.NumberSelectorConfig(
                        min=PACK_ADDRESS_RANGE[0],
                        max=PACK_ADDRESS_RANGE[1],
                        step=1,
                        mode=selector.NumberSelectorMode.BOX,
                    )
                ),
                vol.Required(CONF_INVERT_CURRENT, default=False): selector.BooleanSelector(),
            }
        )
        return self.async_show_form(
            step_id="serial_bms",
            data_schema=self.add_suggested_values_to_schema(schema, user_input),
            errors=errors,
        )

    async def _async_create_simulated_bms(self, protocol: BmsProtocol) -> ConfigFlowResult:
        """Start the built-in BMS on a PTY and test it like real hardware."""
        serial_number = f"SIM{secrets.randbelow(10**6):06d}"
        simulator = create_simulator(protocol, serial_number)
        await simulator.start()
        try:
            probe = await async_probe_bms(simulator.port, protocol)
        finally:
            await simulator.stop()
        return await self._async_create_bms("", probe, None, False, serial_number)

    async def _async_create_bms(
        self,
        port: str,
        probe: BmsProbe,
        address: int | None,
        invert: bool,
        simulated_serial: str | None,
    ) -> ConfigFlowResult:
        if simulated_serial is not None:
            unique_id = f"simulated_bms_{simulated_serial}"
        else:
            unique_id = bms_unique_id(probe, port)
        await self.async_set_unique_id(unique_id)
        self._abort_if_unique_id_configured(updates={CONF_PORT: port} if port else None)
        title = probe.title if simulated_serial is None else f"Simulated {probe.title}"
        return self.async_create_entry(
            title=title,
            data={
                CONF_DEVICE: DeviceKind.SERIAL_BMS.value,
                CONF_PORT: port,
                CONF_PROTOCOL: probe.protocol.value,
                # Daly: the host address that answered; JBD UP: the pack's bus address.
                CONF_ADDRESS: (
                    address if probe.protocol in (BmsProtocol.DALY, BmsProtocol.JBD_UP) else None
                ),
                CONF_INVERT_CURRENT: invert,
                CONF_SERIAL_NUMBER: simulated_serial or probe.info.serial,
                CONF_SIMULATED: simulated_serial is not None,
                CONF_CELLS: len(probe.reading.cell_voltages) or probe.info.cell_count,
                CONF_CAPACITY: probe.reading.nominal_capacity,
            },
        )

    async def async_step_serial_bms_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Move a BMS to another port: the BMS answering there must be this entry's BMS.

        It is asked with the entry's own protocol and address, and the entry only changes once
        it answered, so a wrong port never leaves the entry pointing at nothing.
        """
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            port = str(user_input[CONF_PORT]).strip()
            if port == PORT_MANUAL or not await async_port_exists(self.hass, port):
                errors[CONF_PORT] = "port_not_found"
            else:
                address = entry.data.get(CONF_ADDRESS)
                try:
                    probe = await async_probe_bms(
                        port,
                        BmsProtocol(entry.data[CONF_PROTOCOL]),
                        address=None if address is None else int(address),
                        invert_current=bool(entry.data.get(CONF_INVERT_CURRENT, False)),
                    )
                except ProbeError as err:
                    errors["base"] = err.reason
                else:
                    if not same_bms(entry, probe):
                        return self.async_abort(reason="wrong_device")
                    # The unique id stays, even a port-based one: the device and entity ids
                    # are made from it, and the history of the entities must carry on.
                    return async_update_entry_and_abort(self, entry, data_updates={CONF_PORT: port})
        current = (user_input or {}).get(CONF_PORT) or entry.data.get(CONF_PORT)
        schema = vol.Schema(
            {
                vol.Required(CONF_PORT, default=current or vol.UNDEFINED): port_selector(
                    await async_port_options(self.hass)
                )
            }
        )
        return self.async_show_form(
            step_id="serial_bms_reconfigure",
            data_schema=schema,
            errors=errors,
            description_placeholders={"name": entry.title},
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

            island = await async_import_module(
                self.hass, "custom_components.sma_victron_bridge.devices.sunny_island"
            )
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


class SerialBmsOptionsFlow(OptionsFlow):
    """Polling interval and the settings behind the computed charge limits."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Options start here; the form has its own step id (and its own texts)."""
        return await self.async_step_bms_settings()

    async def async_step_bms_settings(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """One form: how often to poll, and the charge-limit settings."""
        settings = settings_from_entry(self.config_entry)
        errors: dict[str, str] = {}
        if user_input is not None:
            updated, errors = settings_errors(settings, user_input, OPTION_SETTINGS)
            if updated is not None:
                return self.async_create_entry(data=dict(user_input))
        schema = vol.Schema(
            {
                vol.Required(
                    CONF_POLL_INTERVAL,
                    default=self.config_entry.options.get(
                        CONF_POLL_INTERVAL, DEFAULT_POLL_INTERVAL
                    ),
                ): selector.NumberSelector(
                    selector.NumberSelectorConfig(
                        min=1,
                        max=60,
                        step=0.5,
                        unit_of_measurement="s",
                        mode=selector.NumberSelectorMode.BOX,
                    )
                ),
                **settings_schema(settings, OPTION_SETTINGS),
            }
        )
        return self.async_show_form(step_id="bms_settings", data_schema=schema, errors=errors)


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
