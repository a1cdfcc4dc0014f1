"""Config- and options-flow steps for a Bluetooth BMS (any family ``aiobmsble`` reads).

Mixed into the integration's one ``ConfigFlow`` class. Home Assistant's Bluetooth discovers the
BMS through the manifest's matchers (made from the library's, see ``matchers.py``); the library
then says which family the advertisement belongs to (``bms_identify``), the BMS is read once,
and only then the entry is created. The "Bluetooth BMS" menu entry lists the BMSes Home
Assistant hears through a connectable adapter or proxy that are not set up yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any, Final

from bleak.exc import BleakError
from homeassistant.components import bluetooth
from homeassistant.config_entries import (
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
    CONF_POLL_INTERVAL,
    CONF_SIMULATED,
    DeviceKind,
)
from ...flow_helpers import (
    OPTION_SETTINGS,
    async_update_entry_and_abort,
    settings_errors,
    settings_schema,
)
from ...protocols import ProtocolError
from ...schema import vol
from ..charge_settings import settings_from_entry
from .runtime import (
    CONF_FAMILY,
    CONF_RELEASE_CONNECTION,
    DEFAULT_BLE_POLL_INTERVAL,
    POLL_INTERVAL_RANGE,
    SIMULATED_BMSES,
    UPDATE_TIMEOUT,
    use_home_assistant_bleak_client,
)

SIMULATED: dict[str, str] = {f"ble_bms_{choice}": choice for choice in SIMULATED_BMSES}
"""The simulated-device menu's Bluetooth BMS choices and the simulated BMS of each."""
PROBE_TIMEOUT: Final = UPDATE_TIMEOUT


async def async_identify(info: bluetooth.BluetoothServiceInfoBleak) -> str | None:
    """The library's family (module name, e.g. ``jikong_bms``) for an advertisement, or None."""
    from aiobmsble.utils import bms_identify  # type: ignore[import-untyped]

    bms_class = await bms_identify(info.advertisement, info.address)
    if bms_class is None:
        return None
    family: str = bms_class.get_bms_module().rsplit(".", 1)[-1]
    return family


def family_name(family: str) -> str:
    """The family as the library names it, e.g. "Jikong JK BMS"."""
    from aiobmsble.utils import load_bms_plugins

    for module in load_bms_plugins():
        if module.__name__.rsplit(".", 1)[-1] == family:
            return str(module.BMS.bms_id())
    return family


async def async_probe(hass: Any, address: str, family: str) -> tuple[dict[str, str], Any]:
    """Connect to the BMS once and read it: its identity and first reading (or raise)."""
    from ...protocols.ble_bms import BleBmsLink, bms_class_for

    device = bluetooth.async_ble_device_from_address(hass, address, connectable=True)
    if device is None:
        raise ProtocolError("not heard by a connectable adapter or proxy")
    use_home_assistant_bleak_client()
    bms_class = await hass.async_add_import_executor_job(bms_class_for, family)
    link = BleBmsLink(bms_class, device, keep_connection=True, timeout=PROBE_TIMEOUT)
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            info = dict(await link.device_info())
            reading = await link.update()
    finally:
        await link.close()
    return info, reading


class BleBmsFlow(ConfigFlow):
    """Steps for a Bluetooth BMS: discovery, the list of BMSes heard, confirm, reconfigure."""

    _bms_address: str
    _bms_family: str
    _bms_name: str

    async def async_step_ble_bms_bluetooth(
        self, discovery_info: bluetooth.BluetoothServiceInfoBleak
    ) -> ConfigFlowResult:
        """Home Assistant heard a BMS advertisement (routed here by ``async_step_bluetooth``)."""
        family = await async_identify(discovery_info)
        if family is None:
            return self.async_abort(reason="not_supported")
        await self.async_set_unique_id(discovery_info.address)
        self._abort_if_unique_id_configured()
        self._bms_chosen(discovery_info, family)
        self.context["title_placeholders"] = {"name": self._bms_name}
        return await self.async_step_ble_bms_confirm()

    def _bms_chosen(self, info: bluetooth.BluetoothServiceInfoBleak, family: str) -> None:
        self._bms_address = info.address
        self._bms_family = family
        self._bms_name = info.name if info.name and info.name != info.address else family

    async def async_step_ble_bms(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Pick one of the BMSes Home Assistant hears that is not set up yet."""
        heard = await self._async_bms_heard()
        if user_input is not None:
            address: str = user_input[CONF_ADDRESS]
            if address not in heard:
                return self.async_abort(reason="no_devices_found")
            await self.async_set_unique_id(address, raise_on_progress=False)
            self._abort_if_unique_id_configured()
            info, family = heard[address]
            self._bms_chosen(info, family)
            return await self.async_step_ble_bms_confirm()
        if not heard:
            return self.async_abort(reason="no_devices_found")
        options = [
            selector.SelectOptionDict(
                value=address, label=f"{info.name} — {family_name(family)} ({address})"
            )
            for address, (info, family) in heard.items()
        ]
        return self.async_show_form(
            step_id="ble_bms",
            data_schema=vol.Schema(
                {
                    vol.Required(CONF_ADDRESS): selector.SelectSelector(
                        selector.SelectSelectorConfig(options=options)
                    )
                }
            ),
        )

    async def _async_bms_heard(
        self,
    ) -> dict[str, tuple[bluetooth.BluetoothServiceInfoBleak, str]]:
        """BMSes heard through a connectable adapter or proxy, not configured, by address."""
        configured = self._async_current_ids(include_ignore=False)
        heard: dict[str, tuple[bluetooth.BluetoothServiceInfoBleak, str]] = {}
        for info in bluetooth.async_discovered_service_info(self.hass, connectable=True):
            if info.address in configured or info.address in heard:
                continue
            family = await async_identify(info)
            if family is not None:
                heard[info.address] = (info, family)
        return heard

    async def async_step_ble_bms_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Confirm, then read the BMS once: it is only added when it answers."""
        errors: dict[str, str] = {}
        placeholders = {
            "name": self._bms_name,
            "model": family_name(self._bms_family),
            "address": self._bms_address,
        }
        if user_input is not None:
            try:
                _info, reading = await async_probe(self.hass, self._bms_address, self._bms_family)
            except ProtocolError, BleakError, OSError, TimeoutError:
                errors["base"] = "cannot_connect"
            else:
                return self.async_create_entry(
                    title=self._bms_name,
                    data={
                        CONF_DEVICE: DeviceKind.BLE_BMS.value,
                        CONF_ADDRESS: self._bms_address,
                        CONF_FAMILY: self._bms_family,
                        CONF_SIMULATED: False,
                        CONF_CELLS: len(reading.cell_voltages) or None,
                        CONF_CAPACITY: reading.nominal_capacity,
                    },
                )
        self._set_confirm_only()
        return self.async_show_form(
            step_id="ble_bms_confirm", errors=errors, description_placeholders=placeholders
        )

    async def _async_start_simulated_ble_bms(self, choice: str) -> ConfigFlowResult:
        """A simulated BMS at a random address, heard through its own simulated proxy."""
        bms = SIMULATED_BMSES[SIMULATED[choice]]
        address = "C0:DE:B5:" + ":".join(f"{byte:02X}" for byte in secrets.token_bytes(3))
        await self.async_set_unique_id(address)
        self._abort_if_unique_id_configured()
        return self.async_create_entry(
            title=f"Simulated {bms.name}",
            data={
                CONF_DEVICE: DeviceKind.BLE_BMS.value,
                CONF_ADDRESS: address,
                CONF_FAMILY: bms.family,
                CONF_SIMULATED: True,
            },
        )

    async def async_step_ble_bms_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Read the BMS again and take what it says now (after a BMS or library update).

        It must be this entry's BMS: the address stays, and the family is asked of the
        library again from what Home Assistant hears now. Nothing changes unless it answers.
        """
        entry = self._get_reconfigure_entry()
        if entry.data.get(CONF_SIMULATED):
            return self.async_abort(reason="simulated_fixed")
        address: str = entry.data[CONF_ADDRESS]
        errors: dict[str, str] = {}
        if user_input is not None:
            info = bluetooth.async_last_service_info(self.hass, address, connectable=True)
            family = None if info is None else await async_identify(info)
            if info is None:
                errors["base"] = "cannot_connect"
            elif family is None:
                return self.async_abort(reason="wrong_device")
            else:
                try:
                    # The running entry holds the BMS's one connection: it lets go meanwhile.
                    link = (
                        getattr(entry.runtime_data, "link", None)
                        if entry.state is ConfigEntryState.LOADED
                        else None
                    )
                    async with link.released() if link is not None else contextlib.nullcontext():
                        _device, reading = await async_probe(self.hass, address, family)
                except ProtocolError, BleakError, OSError, TimeoutError:
                    errors["base"] = "cannot_connect"
                else:
                    return async_update_entry_and_abort(
                        self,
                        entry,
                        data_updates={
                            CONF_FAMILY: family,
                            CONF_CELLS: len(reading.cell_voltages) or None,
                            CONF_CAPACITY: reading.nominal_capacity,
                        },
                    )
        return self.async_show_form(
            step_id="ble_bms_reconfigure",
            errors=errors,
            description_placeholders={"name": entry.title, "address": address},
        )


class BleBmsOptionsFlow(OptionsFlow):
    """How often to read, whether to hold the connection, and the charge-limit settings."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Options start here; the form has its own step id (and its own texts)."""
        return await self.async_step_ble_bms_options()

    async def async_step_ble_bms_options(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """One form: poll interval, connection use, charge-limit settings."""
        settings = settings_from_entry(self.config_entry)
        errors: dict[str, str] = {}
        if user_input is not None:
            updated, errors = settings_errors(settings, user_input, OPTION_SETTINGS)
            if updated is not None:
                return self.async_create_entry(data=dict(user_input))
        options = self.config_entry.options
        schema = vol.Schema(
            {
                vol.Required(
                    CONF_POLL_INTERVAL,
                    default=options.get(CONF_POLL_INTERVAL, DEFAULT_BLE_POLL_INTERVAL),
                ): selector.NumberSelector(
                    selector.NumberSelectorConfig(
                        min=POLL_INTERVAL_RANGE[0],
                        max=POLL_INTERVAL_RANGE[1],
                        step=1,
                        unit_of_measurement="s",
                        mode=selector.NumberSelectorMode.BOX,
                    )
                ),
                vol.Required(
                    CONF_RELEASE_CONNECTION,
                    default=bool(options.get(CONF_RELEASE_CONNECTION, False)),
                ): selector.BooleanSelector(),
                **settings_schema(settings, OPTION_SETTINGS),
            }
        )
        return self.async_show_form(
            step_id="ble_bms_options",
            data_schema=schema,
            errors=errors,
            description_placeholders={"name": self.config_entry.title},
        )
