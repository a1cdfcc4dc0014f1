"""Config- and options-flow steps for Victron Bluetooth (Instant Readout) devices.

Mixed into the integration's one ``ConfigFlow`` class. A device is found through Home
Assistant's bluetooth stack (discovery, or a list of what it hears), and its encryption key is
only accepted once it decrypts the device's live advertisements into sane values: the key-check
byte in every advertisement compares the key's first byte only, so one wrong key in 256 would
pass a check on that byte alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
import re
import secrets
from typing import Any, Final

from homeassistant.components import bluetooth
from homeassistant.config_entries import ConfigEntry, ConfigFlow, ConfigFlowResult, OptionsFlow
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import selector

from ...const import CONF_ADDRESS, CONF_DEVICE, CONF_SIMULATED, DeviceKind
from ...flow_helpers import async_update_entry_and_abort
from ...protocols import ProtocolError
from ...protocols.victron_ble import (
    MANUFACTURER_ID,
    MODEL_LAYOUT_OVERRIDES,
    RECORD_KEYS,
    AdvertHeader,
    KeyMismatch,
    decode_advertisement,
    parse_header,
    plausible,
)
from ...schema import vol
from .core import core_entry
from .runtime import (
    CONF_GATT,
    CONF_GATT_INTERVAL,
    CONF_KEY,
    CONF_MODEL_ID,
    CONF_RECORD_TYPE,
    DEFAULT_GATT_INTERVAL,
    SIMULATED_MODELS,
    gatt_capable,
    model_name,
)

# How many advertisements with different nonces a key must decrypt, and how long to wait for
# them (devices advertise about once a second; a single good one is accepted at the deadline).
KEY_CHECK_ADVERTS: Final = 3
KEY_CHECK_TIMEOUT: Final = 10.0

_KEY_PATTERN: Final = re.compile(r"[0-9a-f]{32}")
_KEY_SEPARATORS: Final = re.compile(r"[\s:-]")

SIMULATED: dict[str, str] = {f"victron_ble_{name}": name for name in SIMULATED_MODELS}
"""The simulated-device menu's Bluetooth choices and the simulated model of each."""


def normalize_key(text: str) -> str | None:
    """The key as 32 lowercase hex digits (spaces, colons, dashes dropped), or None."""
    key = _KEY_SEPARATORS.sub("", text).lower()
    return key if _KEY_PATTERN.fullmatch(key) else None


def victron_header(info: bluetooth.BluetoothServiceInfoBleak) -> AdvertHeader | None:
    """The advert's clear-text header if it is an Instant Readout record this integration reads."""
    data = info.manufacturer_data.get(MANUFACTURER_ID)
    if data is None:
        return None
    try:
        header = parse_header(data)
    except ProtocolError:
        return None
    layout = MODEL_LAYOUT_OVERRIDES.get(header.model_id, header.record_type)
    return header if layout in RECORD_KEYS else None


async def async_check_key(
    hass: HomeAssistant,
    address: str,
    key: bytes,
    *,
    adverts: int | None = None,
    timeout: float | None = None,
) -> str | None:
    """Decrypt the device's live advertisements with ``key``; None if it works, else an error.

    Starts from the last advertisement Home Assistant heard and waits for more until ``adverts``
    different nonces decoded into plausible records. A key-check byte that differs, or a record
    that decodes into nonsense, is ``wrong_key`` at once; nothing heard at all is ``no_advert``.
    """
    wanted = KEY_CHECK_ADVERTS if adverts is None else adverts
    decoded: set[int] = set()
    outcome: asyncio.Future[str | None] = hass.loop.create_future()

    @callback
    def check(info: bluetooth.BluetoothServiceInfoBleak) -> None:
        data = info.manufacturer_data.get(MANUFACTURER_ID)
        if outcome.done() or data is None:
            return
        try:
            nonce = parse_header(data).nonce
            if nonce in decoded:
                return
            record = decode_advertisement(data, key)
        except KeyMismatch:
            outcome.set_result("wrong_key")
            return
        except ProtocolError:
            return  # short or foreign advertisement: wait for the next one
        if not plausible(record):
            outcome.set_result("wrong_key")
            return
        decoded.add(nonce)
        if len(decoded) >= wanted:
            outcome.set_result(None)

    if (last := bluetooth.async_last_service_info(hass, address, connectable=False)) is not None:
        check(last)
    if outcome.done():
        return outcome.result()
    unsubscribe = bluetooth.async_register_callback(
        hass,
        lambda info, _change: check(info),
        bluetooth.BluetoothCallbackMatcher(
            address=address, manufacturer_id=MANUFACTURER_ID, connectable=False
        ),
        bluetooth.BluetoothScanningMode.PASSIVE,
    )
    try:
        async with asyncio.timeout(KEY_CHECK_TIMEOUT if timeout is None else timeout):
            return await outcome
    except TimeoutError:
        return None if decoded else "no_advert"
    finally:
        unsubscribe()


def _key_schema() -> vol.Schema:
    return vol.Schema({vol.Required(CONF_KEY): selector.TextSelector()})


def victron_ble_supports_options(entry: ConfigEntry) -> bool:
    """Only products with a GATT service this integration speaks have options."""
    return gatt_capable(int(entry.data[CONF_RECORD_TYPE]), int(entry.data[CONF_MODEL_ID]))


class VictronBleFlow(ConfigFlow):
    """Steps for a Victron Bluetooth device: discovery, device list, key, reauth, new key."""

    _ble_address: str
    _ble_header: AdvertHeader

    @property
    def _ble_title(self) -> str:
        return model_name(self._ble_header.model_id)

    async def async_step_bluetooth(
        self, discovery_info: bluetooth.BluetoothServiceInfoBleak
    ) -> ConfigFlowResult:
        """Home Assistant heard a Victron advertisement: offer to add the device.

        Bluetooth BMSes are discovered through the same manifest: an advertisement without
        Victron's company id (737) came from one of the BMS matchers and is the Bluetooth BMS
        kind's to identify.
        """
        if MANUFACTURER_ID not in discovery_info.manufacturer_data:
            bms_step = getattr(self, "async_step_ble_bms_bluetooth")  # noqa: B009
            result: ConfigFlowResult = await bms_step(discovery_info)
            return result
        header = victron_header(discovery_info)
        if header is None:
            return self.async_abort(reason="not_supported")
        if core_entry(self.hass, discovery_info.address) is not None:
            # Set up in HA's own victron_ble: not offered twice (devices/victron_ble/core.py).
            return self.async_abort(reason="configured_in_core")
        await self.async_set_unique_id(discovery_info.address)
        self._abort_if_unique_id_configured()
        self._ble_address, self._ble_header = discovery_info.address, header
        self.context["title_placeholders"] = {"name": self._ble_title}
        return await self.async_step_bluetooth_confirm()

    async def async_step_victron_ble(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Pick one of the Victron devices Home Assistant hears (real ones only)."""
        if user_input is not None:
            choice: str = user_input[CONF_ADDRESS]
            info = bluetooth.async_last_service_info(self.hass, choice, connectable=False)
            header = None if info is None else victron_header(info)
            if header is None:
                return self.async_abort(reason="no_devices_found")
            await self.async_set_unique_id(choice, raise_on_progress=False)
            self._abort_if_unique_id_configured()
            self._ble_address, self._ble_header = choice, header
            return await self.async_step_bluetooth_confirm()
        options = self._ble_device_options()
        if not options:
            return self.async_abort(reason="no_devices_found")
        return self.async_show_form(
            step_id="victron_ble",
            data_schema=vol.Schema(
                {
                    vol.Required(CONF_ADDRESS): selector.SelectSelector(
                        selector.SelectSelectorConfig(options=options)
                    )
                }
            ),
        )

    def _ble_device_options(self) -> list[selector.SelectOptionDict]:
        configured = self._async_current_ids(include_ignore=False)
        options: list[selector.SelectOptionDict] = []
        for info in bluetooth.async_discovered_service_info(self.hass, connectable=False):
            if info.address in configured:
                continue
            header = victron_header(info)
            if header is not None:
                label = f"{model_name(header.model_id)} ({info.address})"
                options.append(selector.SelectOptionDict(value=info.address, label=label))
        return options

    async def async_step_bluetooth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for the device's encryption key and test it on live advertisements."""
        errors: dict[str, str] = {}
        if user_input is not None:
            key, error = await self._async_ble_try_key(self._ble_address, user_input[CONF_KEY])
            if key is not None:
                return self.async_create_entry(
                    title=self._ble_title,
                    data={
                        CONF_DEVICE: DeviceKind.VICTRON_BLE.value,
                        CONF_ADDRESS: self._ble_address,
                        CONF_KEY: key,
                        CONF_RECORD_TYPE: self._ble_header.record_type,
                        CONF_MODEL_ID: self._ble_header.model_id,
                        CONF_SIMULATED: False,
                    },
                )
            errors["base"] = error
        return self.async_show_form(
            step_id="bluetooth_confirm",
            data_schema=_key_schema(),
            errors=errors,
            description_placeholders={"name": self._ble_title, "address": self._ble_address},
        )

    async def _async_ble_try_key(self, address: str, text: str) -> tuple[str | None, str]:
        """The normalised key when it decrypts the device's adverts, else an error key."""
        key = normalize_key(text)
        if key is None:
            return None, "invalid_key_format"
        error = await async_check_key(self.hass, address, bytes.fromhex(key))
        return (key, "") if error is None else (None, error)

    async def _async_start_simulated_victron_ble(self, choice: str) -> ConfigFlowResult:
        return await self._async_create_simulated_ble(SIMULATED[choice])

    async def _async_create_simulated_ble(self, name: str) -> ConfigFlowResult:
        """A simulated device with a random address and key, fed by the built-in advertiser.

        ``name`` is a key of ``SIMULATED_MODELS`` (offered by the "Simulated device" step).
        """
        model = SIMULATED_MODELS[name]
        address = "C0:DE:" + ":".join(f"{byte:02X}" for byte in secrets.token_bytes(4))
        await self.async_set_unique_id(address)
        self._abort_if_unique_id_configured()
        return self.async_create_entry(
            title=f"Simulated {model_name(model.model_id)}",
            data={
                CONF_DEVICE: DeviceKind.VICTRON_BLE.value,
                CONF_ADDRESS: address,
                CONF_KEY: secrets.token_hex(16),
                CONF_RECORD_TYPE: model.record_type,
                CONF_MODEL_ID: model.model_id,
                CONF_SIMULATED: True,
            },
        )

    # --- a new key: reauth (adverts stopped decoding) and reconfigure ---

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        """Adverts stopped decoding with the stored key; other kinds' reauth is theirs."""
        if entry_data.get(CONF_DEVICE) != DeviceKind.VICTRON_BLE:
            other = getattr(super(), "async_step_reauth", None)
            if other is None:
                return self.async_abort(reason="reauth_not_supported")
            result: ConfigFlowResult = await other(entry_data)
            return result
        return await self.async_step_victron_ble_reauth()

    async def async_step_victron_ble_reauth(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for the new key (the owner reset it in VictronConnect)."""
        return await self._async_ble_new_key(
            self._get_reauth_entry(), user_input, "victron_ble_reauth"
        )

    async def async_step_victron_ble_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Enter a new key for a device that is set up."""
        entry = self._get_reconfigure_entry()
        if entry.data.get(CONF_SIMULATED):
            return self.async_abort(reason="simulated_key_fixed")
        return await self._async_ble_new_key(entry, user_input, "victron_ble_reconfigure")

    async def _async_ble_new_key(
        self, entry: ConfigEntry, user_input: dict[str, Any] | None, step_id: str
    ) -> ConfigFlowResult:
        address: str = entry.data[CONF_ADDRESS]
        errors: dict[str, str] = {}
        if user_input is not None:
            key, error = await self._async_ble_try_key(address, user_input[CONF_KEY])
            if key is not None:
                return async_update_entry_and_abort(
                    self, entry, data_updates={CONF_KEY: key}, reason="key_updated"
                )
            errors["base"] = error
        return self.async_show_form(
            step_id=step_id,
            data_schema=_key_schema(),
            errors=errors,
            description_placeholders={"name": entry.title, "address": address},
        )


class VictronBleOptionsFlow(OptionsFlow):
    """The optional GATT link of a SmartSolar or SmartShunt: shown to everyone, off by default.

    The link holds one of the adapter's few connection slots for as long as it runs and stops
    the device's advertisements meanwhile, so it is never on unless the owner turns it on.
    """

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Options start here; the form has its own step id (and its own texts)."""
        return await self.async_step_victron_ble_options()

    async def async_step_victron_ble_options(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Turn the GATT link on or off and set how often it polls."""
        if user_input is not None:
            return self.async_create_entry(
                data={
                    CONF_GATT: bool(user_input[CONF_GATT]),
                    CONF_GATT_INTERVAL: float(user_input[CONF_GATT_INTERVAL]),
                }
            )
        options = self.config_entry.options
        schema = vol.Schema(
            {
                vol.Required(
                    CONF_GATT, default=bool(options.get(CONF_GATT, False))
                ): selector.BooleanSelector(),
                vol.Required(
                    CONF_GATT_INTERVAL,
                    default=options.get(CONF_GATT_INTERVAL, DEFAULT_GATT_INTERVAL),
                ): selector.NumberSelector(
                    selector.NumberSelectorConfig(
                        min=2,
                        max=300,
                        step=1,
                        unit_of_measurement="s",
                        mode=selector.NumberSelectorMode.BOX,
                    )
                ),
            }
        )
        return self.async_show_form(
            step_id="victron_ble_options",
            data_schema=schema,
            description_placeholders={"address": self.config_entry.data[CONF_ADDRESS]},
        )
