"""Config- and options-flow steps for a serial BMS (JBD, JBD UP, Daly, ANT).

Mixed into the integration's one ``ConfigFlow`` class. Like VE.Direct, a BMS is tested before an
entry exists: it must answer, and its protocol can be detected on the chosen port, and only there.
"""

from __future__ import annotations

import secrets
from typing import Any

from homeassistant.config_entries import (
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlow,
)
from homeassistant.helpers import selector

from ...const import (
    CONF_ADDRESS,
    CONF_CAPACITY,
    CONF_CELLS,
    CONF_DEVICE,
    CONF_INVERT_CURRENT,
    CONF_POLL_INTERVAL,
    CONF_PORT,
    CONF_PROTOCOL,
    CONF_SERIAL_NUMBER,
    CONF_SIMULATED,
    DEFAULT_POLL_INTERVAL,
    DeviceKind,
)
from ...flow_helpers import (
    OPTION_SETTINGS,
    PORT_MANUAL,
    async_port_exists,
    async_port_options,
    async_update_entry_and_abort,
    port_selector,
    settings_errors,
    settings_schema,
)
from ...protocols import jbd_up
from ...protocols.bms_client import BmsProtocol
from ...schema import vol
from ..base import ProbeError
from ..charge_settings import settings_from_entry
from .runtime import BmsProbe, async_probe_bms, create_simulator

PROTOCOL_AUTO = "auto"
SIMULATED: dict[str, BmsProtocol] = {
    "serial_bms_jbd": BmsProtocol.JBD,
    "serial_bms_daly": BmsProtocol.DALY,
    "serial_bms_ant": BmsProtocol.ANT,
    "serial_bms_jbd_up": BmsProtocol.JBD_UP,
}
"""The simulated-device menu's BMS choices and the protocol each simulator speaks."""
DALY_ADDRESSES = {"64": "0x40 (RS485)", "128": "0x80 (UART/TTL)"}
# The bus address of a JBD UP rack pack: a field of its own beside the Daly choice, since the
# two mean different things and a UP pack's address is a plain number (1 for a lone pack).
# It is stored under CONF_ADDRESS like the Daly address, the one the client is given.
CONF_PACK_ADDRESS = "pack_address"
PACK_ADDRESS_RANGE = (1, 255)


def _select(
    options: list[str] | list[selector.SelectOptionDict], translation_key: str | None = None
) -> selector.SelectSelector:
    config = selector.SelectSelectorConfig(options=options)
    if translation_key is not None:
        config["translation_key"] = translation_key
    return selector.SelectSelector(config)


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

    async def _async_start_simulated_serial_bms(self, choice: str) -> ConfigFlowResult:
        return await self._async_create_simulated_bms(SIMULATED[choice])

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
        if entry.data.get(CONF_SIMULATED):
            return self.async_abort(reason="simulated_fixed")
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
