"""Config- and options-flow steps for a serial BMS (JBD, JBD UP, Daly, ANT, JK) or a JK PB bus.

Mixed into the integration's one ``ConfigFlow`` class. Like VE.Direct, a BMS is tested before an
entry exists: it must answer, and its protocol can be detected on the chosen port, and only there.
A JK PB bus is scanned instead: every address is asked, the packs that answered are shown, and
the user keeps the ones to read (one device each).
"""

from __future__ import annotations

import secrets
from typing import Any

from homeassistant.config_entries import (
    ConfigEntry,
    ConfigEntryState,
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
from ...protocols import ProtocolError, jbd_up
from ...protocols.bms_client import BmsProtocol
from ...schema import vol
from ..base import ProbeError
from ..charge_settings import settings_from_entry
from .bus import BusScan, JkPbBusRuntime, async_scan_bus, simulator_for
from .bus_entry import (
    CONF_ADDRESSES,
    CONF_PACKS,
    PACK_MODEL,
    PACK_SERIAL,
    PROTOCOL_JK_PB,
    bus_addresses,
    is_bus_entry,
    known_packs,
)
from .runtime import BUS_DETECTED, BmsProbe, async_probe_bms, create_simulator

PROTOCOL_AUTO = "auto"
SIMULATED: dict[str, BmsProtocol | str] = {
    "serial_bms_jbd": BmsProtocol.JBD,
    "serial_bms_daly": BmsProtocol.DALY,
    "serial_bms_ant": BmsProtocol.ANT,
    "serial_bms_jbd_up": BmsProtocol.JBD_UP,
    "serial_bms_jk": BmsProtocol.JK,
    "serial_bms_jk_pb": PROTOCOL_JK_PB,
}
"""The simulated-device menu's BMS choices and the protocol each simulator speaks."""
CONF_RESCAN = "rescan"
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
                if chosen == PROTOCOL_JK_PB:
                    return await self._async_scan_bus(
                        port, bool(user_input.get(CONF_INVERT_CURRENT, False)), errors
                    )
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
                    if err.reason == BUS_DETECTED:
                        return await self._async_scan_bus(port, invert, errors)
                    errors["base"] = err.reason
                else:
                    address = probe.address if probe.address is not None else address
                    return await self._async_create_bms(port, probe, address, invert, None)
        return await self._async_show_serial_bms_form(user_input, errors)

    async def _async_show_serial_bms_form(
        self, user_input: dict[str, Any] | None, errors: dict[str, str]
    ) -> ConfigFlowResult:
        schema = vol.Schema(
            {
                vol.Required(CONF_PORT): port_selector(await async_port_options(self.hass)),
                vol.Required(CONF_PROTOCOL, default=PROTOCOL_AUTO): _select(
                    [PROTOCOL_AUTO, *(p.value for p in BmsProtocol), PROTOCOL_JK_PB],
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
        protocol = SIMULATED[choice]
        if not isinstance(protocol, BmsProtocol):
            return await self._async_create_simulated_bus()
        return await self._async_create_simulated_bms(protocol)

    # --- a JK PB bus ---------------------------------------------------------------------------

    _bus_port: str
    _bus_invert: bool
    _bus_scan: BusScan

    async def _async_scan_bus(
        self, port: str, invert: bool, errors: dict[str, str]
    ) -> ConfigFlowResult:
        """Ask every address on the port; show what answered, or the form again with why not."""
        try:
            scan = await async_scan_bus(port, invert_current=invert)
        except ProbeError as err:
            errors["base"] = err.reason
            return await self._async_show_serial_bms_form(
                {CONF_PORT: port, CONF_PROTOCOL: PROTOCOL_JK_PB, CONF_INVERT_CURRENT: invert},
                errors,
            )
        self._bus_port, self._bus_invert, self._bus_scan = port, invert, scan
        return await self.async_step_serial_bms_bus()

    async def async_step_serial_bms_bus(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """The packs that answered: keep the ones to read (each becomes a device)."""
        scan = self._bus_scan
        errors: dict[str, str] = {}
        if user_input is not None:
            chosen = sorted(int(address) for address in user_input[CONF_ADDRESSES])
            if not chosen:
                errors[CONF_ADDRESSES] = "no_addresses"
            else:
                return await self._async_create_bus(self._bus_port, scan, chosen, None)
        return self.async_show_form(
            step_id="serial_bms_bus",
            data_schema=vol.Schema(
                {
                    vol.Required(
                        CONF_ADDRESSES, default=[str(a) for a in sorted(scan.packs)]
                    ): address_selector(scan.stored())
                }
            ),
            errors=errors,
            description_placeholders={"packs": scan.summary(), "count": str(len(scan.packs))},
        )

    async def _async_create_simulated_bus(self) -> ConfigFlowResult:
        """Start the built-in bus of three packs on a PTY and scan it like real hardware."""
        serial_number = f"SIM{secrets.randbelow(10**6):06d}"
        simulator = simulator_for(serial_number)
        await simulator.start()
        try:
            scan = await async_scan_bus(simulator.port)
        finally:
            await simulator.stop()
        self._bus_invert = False
        return await self._async_create_bus("", scan, sorted(scan.packs), serial_number)

    async def _async_create_bus(
        self, port: str, scan: BusScan, addresses: list[int], simulated_serial: str | None
    ) -> ConfigFlowResult:
        first = scan.packs[min(scan.packs)]
        if simulated_serial is not None:
            unique_id = f"simulated_jk_pb_{simulated_serial}"
        else:
            unique_id = f"{PROTOCOL_JK_PB}:{first.serial or port}"
        await self.async_set_unique_id(unique_id)
        self._abort_if_unique_id_configured(updates={CONF_PORT: port} if port else None)
        title = "JK PB bus" if simulated_serial is None else "Simulated JK PB bus"
        return self.async_create_entry(
            title=title,
            data={
                CONF_DEVICE: DeviceKind.SERIAL_BMS.value,
                CONF_PORT: port,
                CONF_PROTOCOL: PROTOCOL_JK_PB,
                CONF_PACKS: scan.stored(),
                CONF_INVERT_CURRENT: self._bus_invert,
                CONF_SERIAL_NUMBER: simulated_serial,
                CONF_SIMULATED: simulated_serial is not None,
                # The limits each pack shows are computed for a pack like the first one found.
                CONF_CELLS: len(first.reading.cell_voltages) or None,
                CONF_CAPACITY: first.reading.nominal_capacity,
            },
            options={CONF_ADDRESSES: addresses},
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
        if entry.data.get(CONF_SIMULATED):
            return self.async_abort(reason="simulated_fixed")
        errors: dict[str, str] = {}
        if user_input is not None:
            port = str(user_input[CONF_PORT]).strip()
            if port == PORT_MANUAL or not await async_port_exists(self.hass, port):
                errors[CONF_PORT] = "port_not_found"
            elif is_bus_entry(entry):
                return await self._async_move_bus(entry, port, errors)
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
        return await self._async_show_reconfigure_form(entry, user_input, errors)

    async def _async_show_reconfigure_form(
        self, entry: ConfigEntry, user_input: dict[str, Any] | None, errors: dict[str, str]
    ) -> ConfigFlowResult:
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

    async def _async_move_bus(
        self, entry: ConfigEntry, port: str, errors: dict[str, str]
    ) -> ConfigFlowResult:
        """Move a bus: at least one pack the entry knows must answer there, as itself."""
        packs = known_packs(entry)
        try:
            scan = await async_scan_bus(
                port,
                sorted(packs),
                invert_current=bool(entry.data.get(CONF_INVERT_CURRENT, False)),
            )
        except ProbeError as err:
            errors["base"] = err.reason
            return await self._async_show_reconfigure_form(entry, {CONF_PORT: port}, errors)
        if not same_bus(packs, scan):
            return self.async_abort(reason="wrong_device")
        return async_update_entry_and_abort(self, entry, data_updates={CONF_PORT: port})


def same_bus(packs: dict[int, Any], scan: BusScan) -> bool:
    """Whether a scan found the bus whose packs are ``packs``: one known serial answered.

    Packs that never told a serial number can only be recognised by answering at their address.
    """
    serials = {str(pack.get(PACK_SERIAL)) for pack in packs.values() if pack.get(PACK_SERIAL)}
    if serials:
        return any(found.serial in serials for found in scan.packs.values())
    return bool(set(scan.packs) & set(packs))


def address_selector(packs: dict[str, dict[str, str | None]]) -> selector.SelectSelector:
    """A list of pack addresses to tick, each labelled with what answered there."""
    options = []
    for address, pack in sorted(packs.items(), key=lambda item: int(item[0])):
        label = f"Pack {address}"
        details = [value for value in (pack.get(PACK_MODEL), pack.get(PACK_SERIAL)) if value]
        if details:
            label = f"{label}: {' '.join(details)}"
        options.append(selector.SelectOptionDict(value=address, label=label))
    return selector.SelectSelector(
        selector.SelectSelectorConfig(
            options=options, multiple=True, mode=selector.SelectSelectorMode.LIST
        )
    )


class SerialBmsOptionsFlow(OptionsFlow):
    """Polling interval and the settings behind the computed charge limits."""

    def __init__(self) -> None:
        """Nothing chosen yet."""
        self._bus_options: dict[str, Any] = {}
        self._packs: dict[str, dict[str, str | None]] | None = None

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Options start here; a bus first asks which packs to read."""
        if is_bus_entry(self.config_entry):
            return await self.async_step_bus_packs()
        return await self.async_step_bms_settings()

    async def async_step_bus_packs(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Which packs of the bus to read; a rescan asks every address again first."""
        entry = self.config_entry
        if self._packs is None:
            self._packs = {str(a): dict(p) for a, p in known_packs(entry).items()}
        errors: dict[str, str] = {}
        chosen = [str(address) for address in bus_addresses(entry)]
        if user_input is not None:
            chosen = [str(address) for address in user_input.get(CONF_ADDRESSES, [])]
            if user_input.get(CONF_RESCAN):
                try:
                    scan = await self._async_rescan()
                except ProbeError as err:
                    errors["base"] = err.reason
                else:
                    # Newly found packs are ticked; packs gone silent stay listed to untick.
                    new = [a for a in scan.stored() if a not in self._packs]
                    self._packs.update(scan.stored())
                    chosen = [*chosen, *new]
            elif not chosen:
                errors[CONF_ADDRESSES] = "no_addresses"
            else:
                self._bus_options = {CONF_ADDRESSES: sorted(int(a) for a in chosen)}
                return await self.async_step_bms_settings()
        return self.async_show_form(
            step_id="bus_packs",
            data_schema=vol.Schema(
                {
                    vol.Required(CONF_ADDRESSES, default=chosen): address_selector(self._packs),
                    vol.Required(CONF_RESCAN, default=False): selector.BooleanSelector(),
                }
            ),
            errors=errors,
            description_placeholders={"name": entry.title},
        )

    async def _async_rescan(self) -> BusScan:
        """Scan over the running entry's open port; or open the port when it is not running."""
        entry = self.config_entry
        if entry.state is ConfigEntryState.LOADED:
            runtime = entry.runtime_data
            assert isinstance(runtime, JkPbBusRuntime)
            try:
                found = await runtime.async_scan()
            except (ProtocolError, OSError) as err:
                raise ProbeError("cannot_connect") from err
            if not found:
                raise ProbeError("no_packs")
            return BusScan(found)
        return await async_scan_bus(
            entry.data.get(CONF_PORT, ""),
            invert_current=bool(entry.data.get(CONF_INVERT_CURRENT, False)),
        )

    async def async_step_bms_settings(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """One form: how often to poll, and the charge-limit settings."""
        settings = settings_from_entry(self.config_entry)
        errors: dict[str, str] = {}
        if user_input is not None:
            updated, errors = settings_errors(settings, user_input, OPTION_SETTINGS)
            if updated is not None:
                if self._packs is not None and self._packs != entry_packs(self.config_entry):
                    # A rescan found other packs: the entry keeps them (its listener reloads it).
                    self.hass.config_entries.async_update_entry(
                        self.config_entry,
                        data={**self.config_entry.data, CONF_PACKS: self._packs},
                    )
                return self.async_create_entry(data={**user_input, **self._bus_options})
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


def entry_packs(entry: ConfigEntry) -> dict[str, dict[str, str | None]]:
    """The packs stored in a bus entry, in the form a scan stores them."""
    return {str(a): dict(p) for a, p in known_packs(entry).items()}
