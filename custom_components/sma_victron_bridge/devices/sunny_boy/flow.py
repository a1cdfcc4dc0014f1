"""Config-, reauth-, reconfigure- and options-flow steps for SMA Sunny Boy inverters.

Mixed into the integration's one ``ConfigFlow`` class. The inverter is reached over Bluetooth
(its RFCOMM address) or Speedwire (its IP address); either way the flow logs on before an
entry exists, so a wrong password or an unreachable inverter is reported in the form. The
entry is keyed by the inverter's serial number, which reconfigure and reauth insist on.

A Python without Bluetooth sockets is told so at once: no address form that can only fail.
Where the host's BlueZ lists nearby classic Bluetooth devices, the address form offers them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import secrets
from typing import Any

from homeassistant.config_entries import ConfigFlow, ConfigFlowResult, OptionsFlow
from homeassistant.helpers import selector

from ...const import (
    CONF_DEVICE,
    CONF_POLL_INTERVAL,
    CONF_PORT,
    CONF_SERIAL_NUMBER,
    CONF_SIMULATED,
    DeviceKind,
)
from ...flow_helpers import async_update_entry_and_abort
from ...protocols.sma_client import DeviceInfo as InverterInfo
from ...protocols.sma_transport import bluetooth_available
from ...schema import vol
from ...simulators.sunny_boy import SunnyBoySimulator
from . import bluez
from .bluez import ClassicDevice
from .link import (
    CONF_BT_ADDRESS,
    CONF_HISTORY_DAYS,
    CONF_HOST,
    CONF_MODEL,
    CONF_PASSWORD,
    CONF_SW_VERSION,
    CONF_TRANSPORT,
    CONF_USER_GROUP,
    DEFAULT_HISTORY_DAYS,
    DEFAULT_PASSWORD,
    DEFAULT_POLL_INTERVAL,
    SPEEDWIRE_PORT,
    TRANSPORT_BLUETOOTH,
    TRANSPORT_SPEEDWIRE,
    USER_GROUP_INSTALLER,
    USER_GROUP_USER,
    LinkConfig,
    SunnyBoyProbeError,
    async_probe_sunny_boy,
    normalize_bt_address,
    title_for,
)

SIMULATED_SERIAL_BASE = 2_130_000_000
SIMULATED: dict[str, str] = {
    "sunny_boy_speedwire": TRANSPORT_SPEEDWIRE,
    "sunny_boy_bluetooth": TRANSPORT_BLUETOOTH,
}
"""The simulated-device menu's Sunny Boy choices and the transport each entry then uses."""


def _select(options: list[str], translation_key: str) -> selector.SelectSelector:
    return selector.SelectSelector(
        selector.SelectSelectorConfig(options=options, translation_key=translation_key)
    )


def _login_fields(password: str = DEFAULT_PASSWORD, group: str = USER_GROUP_USER) -> dict[Any, Any]:
    return {
        vol.Required(CONF_PASSWORD, default=password): selector.TextSelector(
            selector.TextSelectorConfig(type=selector.TextSelectorType.PASSWORD)
        ),
        vol.Required(CONF_USER_GROUP, default=group): _select(
            [USER_GROUP_USER, USER_GROUP_INSTALLER], "sunny_boy_user_group"
        ),
    }


def _address_schema(
    address: str | None = None, devices: Sequence[ClassicDevice] = (), **login: str
) -> vol.Schema:
    """Address field: a list of the classic devices BlueZ knows (typing stays possible),
    or a plain text field when the host cannot tell."""
    field: Any = str
    if devices:
        field = selector.SelectSelector(
            selector.SelectSelectorConfig(
                options=[
                    selector.SelectOptionDict(value=device.address, label=device.label)
                    for device in devices
                ],
                custom_value=True,
                mode=selector.SelectSelectorMode.DROPDOWN,
            )
        )
        address = address or devices[0].address
    return vol.Schema(
        {
            vol.Required(CONF_BT_ADDRESS, default=address or vol.UNDEFINED): field,
            **_login_fields(**login),
        }
    )


def _host_schema(host: str | None = None, port: int = SPEEDWIRE_PORT, **login: str) -> vol.Schema:
    return vol.Schema(
        {
            vol.Required(CONF_HOST, default=host or vol.UNDEFINED): str,
            vol.Required(CONF_PORT, default=port): selector.NumberSelector(
                selector.NumberSelectorConfig(
                    min=1, max=65535, step=1, mode=selector.NumberSelectorMode.BOX
                )
            ),
            **_login_fields(**login),
        }
    )


def _link_input(transport: str, user_input: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Entry data from a form; the second item names a field with an invalid value."""
    data: dict[str, Any] = {
        CONF_TRANSPORT: transport,
        CONF_PASSWORD: str(user_input[CONF_PASSWORD]),
        CONF_USER_GROUP: user_input.get(CONF_USER_GROUP, USER_GROUP_USER),
    }
    if transport == TRANSPORT_BLUETOOTH:
        address = normalize_bt_address(str(user_input[CONF_BT_ADDRESS]))
        if address is None:
            return data, CONF_BT_ADDRESS
        data[CONF_BT_ADDRESS] = address
    else:
        data[CONF_HOST] = str(user_input[CONF_HOST]).strip()
        data[CONF_PORT] = int(user_input.get(CONF_PORT, SPEEDWIRE_PORT))
    return data, None


def _identity(info: InverterInfo) -> dict[str, Any]:
    return {
        CONF_SERIAL_NUMBER: str(info.serial),
        CONF_MODEL: info.type_label,
        CONF_SW_VERSION: info.software_version,
    }


class SunnyBoyFlow(ConfigFlow):
    """Steps for a Sunny Boy over Bluetooth or Speedwire (and the built-in simulator)."""

    async def async_step_sunny_boy(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Pick how the inverter is reached."""
        errors: dict[str, str] = {}
        if user_input is not None:
            transport = user_input[CONF_TRANSPORT]
            if transport == TRANSPORT_SPEEDWIRE:
                return await self.async_step_sunny_boy_speedwire()
            if bluetooth_available():
                return await self.async_step_sunny_boy_bluetooth()
            errors["base"] = "bluetooth_unavailable"
        options = [TRANSPORT_BLUETOOTH, TRANSPORT_SPEEDWIRE]
        return self.async_show_form(
            step_id="sunny_boy",
            data_schema=vol.Schema(
                {
                    vol.Required(CONF_TRANSPORT, default=TRANSPORT_SPEEDWIRE): _select(
                        options, "sunny_boy_transport"
                    )
                }
            ),
            errors=errors,
        )

    async def async_step_sunny_boy_bluetooth(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """The inverter's Bluetooth address and the password; logs on before adding.

        Where BlueZ can tell, the address is picked from the nearby classic devices (SMA's
        first); otherwise - or if the list cannot be read - it is typed in.
        """
        devices: list[ClassicDevice] | None = getattr(self, "_sunny_boy_devices", None)
        if devices is None:  # asked once per flow, not again for every submitted form
            devices = await bluez.async_discover_classic_devices()
            self._sunny_boy_devices = devices
        return await self._async_link_step(
            "sunny_boy_bluetooth", TRANSPORT_BLUETOOTH, user_input, _address_schema(None, devices)
        )

    async def async_step_sunny_boy_speedwire(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """The inverter's host or IP address and the password; logs on before adding."""
        return await self._async_link_step(
            "sunny_boy_speedwire", TRANSPORT_SPEEDWIRE, user_input, _host_schema()
        )

    async def _async_link_step(
        self, step_id: str, transport: str, user_input: dict[str, Any] | None, schema: vol.Schema
    ) -> ConfigFlowResult:
        errors: dict[str, str] = {}
        if user_input is not None:
            data, invalid = _link_input(transport, user_input)
            if invalid is not None:
                errors[invalid] = "invalid_address"
            else:
                try:
                    info = await async_probe_sunny_boy(LinkConfig.from_data(data))
                except SunnyBoyProbeError as err:
                    errors["base"] = err.reason
                else:
                    await self.async_set_unique_id(str(info.serial))
                    self._abort_if_unique_id_configured()
                    return self.async_create_entry(
                        title=title_for(info),
                        data={CONF_DEVICE: DeviceKind.SUNNY_BOY.value, **data, **_identity(info)},
                    )
        return self.async_show_form(
            step_id=step_id,
            data_schema=self.add_suggested_values_to_schema(schema, user_input),
            errors=errors,
        )

    async def _async_start_simulated_sunny_boy(self, choice: str) -> ConfigFlowResult:
        return await self._async_create_simulated_sunny_boy(SIMULATED[choice])

    async def _async_create_simulated_sunny_boy(self, transport: str) -> ConfigFlowResult:
        """Start the built-in inverter and log on to it like to a real one.

        ``transport`` is how the entry reaches it afterwards: over Speedwire, or over a simulated
        Bluetooth link (offered by the "Simulated device" step).
        """
        serial = SIMULATED_SERIAL_BASE + secrets.randbelow(10**6)
        simulator = SunnyBoySimulator(serial=serial, seed=serial)
        try:
            port = await simulator.serve_speedwire("127.0.0.1", 0)
            info = await async_probe_sunny_boy(
                LinkConfig(TRANSPORT_SPEEDWIRE, DEFAULT_PASSWORD, host="127.0.0.1", port=port)
            )
        finally:
            await simulator.close()
        await self.async_set_unique_id(str(info.serial))
        self._abort_if_unique_id_configured()
        data: dict[str, Any] = {
            CONF_DEVICE: DeviceKind.SUNNY_BOY.value,
            CONF_TRANSPORT: transport,
            CONF_SIMULATED: True,
            CONF_PASSWORD: DEFAULT_PASSWORD,
            CONF_USER_GROUP: USER_GROUP_USER,
            **_identity(info),
        }
        if transport == TRANSPORT_BLUETOOTH:
            data[CONF_BT_ADDRESS] = simulator.bt_address
        return self.async_create_entry(title=f"Simulated {title_for(info)}", data=data)

    # --- reauth: the password changed on the inverter ---

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        """A Sunny Boy refused the stored password; other kinds go to their own steps."""
        if entry_data.get(CONF_DEVICE) != DeviceKind.SUNNY_BOY:
            parent = getattr(super(), "async_step_reauth", None)
            if parent is None:
                return self.async_abort(reason="reauth_not_supported")
            result: ConfigFlowResult = await parent(entry_data)
            return result
        return await self.async_step_sunny_boy_reauth()

    async def async_step_sunny_boy_reauth(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for the new password and log on with it."""
        entry = self._get_reauth_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            updates = {
                CONF_PASSWORD: str(user_input[CONF_PASSWORD]),
                CONF_USER_GROUP: user_input[CONF_USER_GROUP],
            }
            try:
                info = await async_probe_sunny_boy(LinkConfig.from_data({**entry.data, **updates}))
            except SunnyBoyProbeError as err:
                errors["base"] = err.reason
            else:
                await self.async_set_unique_id(str(info.serial))
                self._abort_if_unique_id_mismatch(reason="wrong_inverter")
                return async_update_entry_and_abort(self, entry, data_updates=updates)
        return self.async_show_form(
            step_id="sunny_boy_reauth",
            data_schema=vol.Schema(
                _login_fields(group=entry.data.get(CONF_USER_GROUP, USER_GROUP_USER))
            ),
            description_placeholders={"name": entry.title},
            errors=errors,
        )

    # --- reconfigure: new address, host or password, same inverter ---

    async def async_step_sunny_boy_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change how the inverter is reached; it must be the same inverter (serial)."""
        entry = self._get_reconfigure_entry()
        if entry.data.get(CONF_SIMULATED):
            return self.async_abort(reason="simulated_fixed")
        transport = entry.data[CONF_TRANSPORT]
        current = entry.data
        login = {
            "password": current.get(CONF_PASSWORD, DEFAULT_PASSWORD),
            "group": current.get(CONF_USER_GROUP, USER_GROUP_USER),
        }
        schema = (
            _address_schema(current.get(CONF_BT_ADDRESS), **login)
            if transport == TRANSPORT_BLUETOOTH
            else _host_schema(
                current.get(CONF_HOST), current.get(CONF_PORT, SPEEDWIRE_PORT), **login
            )
        )
        errors: dict[str, str] = {}
        if user_input is not None:
            data, invalid = _link_input(transport, user_input)
            if invalid is not None:
                errors[invalid] = "invalid_address"
            else:
                try:
                    info = await async_probe_sunny_boy(LinkConfig.from_data(data))
                except SunnyBoyProbeError as err:
                    errors["base"] = err.reason
                else:
                    await self.async_set_unique_id(str(info.serial))
                    self._abort_if_unique_id_mismatch(reason="wrong_inverter")
                    return async_update_entry_and_abort(
                        self,
                        entry,
                        data_updates={**data, **_identity(info)},
                        reason="sunny_boy_reconfigured",
                    )
        return self.async_show_form(
            step_id="sunny_boy_reconfigure",
            data_schema=self.add_suggested_values_to_schema(schema, user_input),
            errors=errors,
        )


class SunnyBoyOptionsFlow(OptionsFlow):
    """How often to poll, and how many days of archive to import into statistics."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Options start here; the form has its own step id (and its own texts)."""
        return await self.async_step_sunny_boy_options()

    async def async_step_sunny_boy_options(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """One form: poll interval (10 s or more) and history days."""
        if user_input is not None:
            return self.async_create_entry(
                data={
                    CONF_POLL_INTERVAL: float(user_input[CONF_POLL_INTERVAL]),
                    CONF_HISTORY_DAYS: int(user_input[CONF_HISTORY_DAYS]),
                }
            )
        options = self.config_entry.options
        schema = vol.Schema(
            {
                vol.Required(
                    CONF_POLL_INTERVAL,
                    default=options.get(CONF_POLL_INTERVAL, DEFAULT_POLL_INTERVAL),
                ): selector.NumberSelector(
                    selector.NumberSelectorConfig(
                        min=10,
                        max=3600,
                        step=1,
                        unit_of_measurement="s",
                        mode=selector.NumberSelectorMode.BOX,
                    )
                ),
                vol.Required(
                    CONF_HISTORY_DAYS,
                    default=options.get(CONF_HISTORY_DAYS, DEFAULT_HISTORY_DAYS),
                ): selector.NumberSelector(
                    selector.NumberSelectorConfig(
                        min=1,
                        max=90,
                        step=1,
                        unit_of_measurement="d",
                        mode=selector.NumberSelectorMode.BOX,
                    )
                ),
            }
        )
        return self.async_show_form(step_id="sunny_boy_options", data_schema=schema)
