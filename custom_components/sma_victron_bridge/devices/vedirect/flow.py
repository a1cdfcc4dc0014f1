"""VE.Direct config-flow steps (serial port, USB discovery, reconfigure) and MPPT options.

Mixed into the integration's one ``ConfigFlow`` class. A device must answer before an entry
exists, so a wrong port or a silent device is reported in the form instead of producing a dead
entry. Entries are keyed by the device's serial number, so the same device cannot be added twice
and a device that moved to another port is updated in place (USB discovery and reconfigure both
rely on that).
"""

from __future__ import annotations

import secrets
from typing import Any, Literal

from homeassistant.components import usb
from homeassistant.config_entries import (
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlow,
)
from homeassistant.helpers import selector
from homeassistant.helpers.service_info.usb import UsbServiceInfo

from ...const import (
    CONF_DEVICE,
    CONF_FORWARD_SOURCE,
    CONF_FORWARD_TEMPERATURE_ENTITY,
    CONF_FORWARD_VOLTAGE_ENTITY,
    CONF_PORT,
    CONF_SERIAL_NUMBER,
    CONF_SIMULATED,
    CONF_STALE_AFTER,
    DEFAULT_STALE_AFTER,
    FORWARD_ENTITIES,
    FORWARD_NONE,
    DeviceKind,
)
from ...flow_helpers import (
    PORT_MANUAL,
    async_port_exists,
    async_port_options,
    async_update_entry_and_abort,
    port_selector,
)
from ...protocols.vedirect_fields import DeviceFamily
from ...schema import vol
from ...simulators.vedirect import VeDirectSimulator
from ..base import ProbeError
from ..battery_bank.bank_entry import bank_source_options
from ..battery_source import battery_source_options
from .runtime import ProbeResult, async_probe

CONF_FAMILY = "family"
SIMULATED: dict[str, Literal["mppt", "bmv"]] = {
    "vedirect_mppt": "mppt",
    "vedirect_bmv": "bmv",
}
"""The simulated-device menu's VE.Direct choices and the simulator model of each."""


def _port_schema(
    options: list[selector.SelectOptionDict], default: str | None = None
) -> vol.Schema:
    return vol.Schema(
        {vol.Required(CONF_PORT, default=default or vol.UNDEFINED): port_selector(options)}
    )


def _unique_id(result: ProbeResult, port: str) -> str:
    """The device's serial number; devices that never tell it are keyed by their port."""
    return result.serial_number or f"port:{port}"


class VeDirectFlow(ConfigFlow):
    """Steps for a VE.Direct device (MPPT charger or battery monitor) on a serial port."""

    _port: str | None = None
    _probe: ProbeResult | None = None

    async def async_step_vedirect(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Pick the serial port of a VE.Direct cable."""
        errors: dict[str, str] = {}
        if user_input is not None:
            port = user_input[CONF_PORT]
            if port == PORT_MANUAL:
                return await self.async_step_vedirect_manual()
            result = await self._async_try_probe(port, errors)
            if result is not None:
                return await self._async_finish(port, result)
        options = await async_port_options(self.hass)
        return self.async_show_form(
            step_id="vedirect", data_schema=_port_schema(options), errors=errors
        )

    async def async_step_vedirect_manual(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Type a port path (e.g. /dev/serial/by-id/… or a ser2net-style device)."""
        errors: dict[str, str] = {}
        if user_input is not None:
            port = user_input[CONF_PORT].strip()
            result = await self._async_try_probe(port, errors)
            if result is not None:
                return await self._async_finish(port, result)
        return self.async_show_form(
            step_id="vedirect_manual",
            data_schema=self.add_suggested_values_to_schema(
                vol.Schema({vol.Required(CONF_PORT): str}), user_input
            ),
            errors=errors,
        )

    async def _async_try_probe(self, port: str, errors: dict[str, str]) -> ProbeResult | None:
        if not await async_port_exists(self.hass, port):
            errors["base"] = "port_not_found"
            return None
        try:
            return await async_probe(port)
        except ProbeError as err:
            errors["base"] = err.reason
            return None

    async def _async_finish(self, port: str, result: ProbeResult) -> ConfigFlowResult:
        await self.async_set_unique_id(_unique_id(result, port))
        self._abort_if_unique_id_configured(updates={CONF_PORT: port})
        return self.async_create_entry(
            title=result.title,
            data={
                CONF_DEVICE: DeviceKind.VEDIRECT.value,
                CONF_PORT: port,
                CONF_SERIAL_NUMBER: result.serial_number,
                CONF_FAMILY: result.family.value,
            },
        )

    async def _async_start_simulated_vedirect(self, choice: str) -> ConfigFlowResult:
        """Start the built-in simulator on a PTY and test it like real hardware."""
        model = SIMULATED[choice]
        serial_number = f"HQSIM{secrets.randbelow(10**6):06d}"
        simulator = VeDirectSimulator(model, serial_number=serial_number)
        await simulator.start()
        try:
            result = await async_probe(simulator.port)
        finally:
            await simulator.stop()
        await self.async_set_unique_id(f"simulated_{serial_number}")
        self._abort_if_unique_id_configured()
        return self.async_create_entry(
            title=f"Simulated {result.title}",
            data={
                CONF_DEVICE: DeviceKind.VEDIRECT.value,
                CONF_PORT: "",
                CONF_SIMULATED: model,
                CONF_SERIAL_NUMBER: serial_number,
                CONF_FAMILY: result.family.value,
            },
        )

    async def async_step_usb(self, discovery_info: UsbServiceInfo) -> ConfigFlowResult:
        """A VE.Direct cable was plugged in: test it and offer to add the device."""
        port = await self.hass.async_add_executor_job(usb.get_serial_by_id, discovery_info.device)
        for entry in self._async_current_entries(include_ignore=False):
            if entry.data.get(CONF_PORT) in (port, discovery_info.device):
                return self.async_abort(reason="already_configured")
        try:
            result = await async_probe(port)
        except ProbeError as err:
            return self.async_abort(reason=err.reason)
        await self.async_set_unique_id(_unique_id(result, port))
        self._abort_if_unique_id_configured(updates={CONF_PORT: port})
        self._port, self._probe = port, result
        self.context["title_placeholders"] = {"name": result.title}
        return await self.async_step_usb_confirm()

    async def async_step_usb_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask before adding a discovered device."""
        assert self._port is not None
        assert self._probe is not None
        if user_input is not None:
            return await self._async_finish(self._port, self._probe)
        self._set_confirm_only()
        return self.async_show_form(
            step_id="usb_confirm",
            description_placeholders={"name": self._probe.title, "port": self._port},
        )

    async def async_step_vedirect_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Move an entry to another port; the device there must be the same device.

        Its form is the flow's "reconfigure" step itself, which hands the answer back here. A
        simulated device has no port to change.
        """
        entry = self._get_reconfigure_entry()
        if entry.data.get(CONF_SIMULATED):
            return self.async_abort(reason="simulated_fixed")
        errors: dict[str, str] = {}
        if user_input is not None:
            port = user_input[CONF_PORT]
            if port == PORT_MANUAL:
                return await self.async_step_reconfigure_manual()
            return await self._async_reconfigure_to(entry, port, errors, "reconfigure")
        options = await async_port_options(self.hass)
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=_port_schema(options, entry.data.get(CONF_PORT)),
            errors=errors,
        )

    async def async_step_reconfigure_manual(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Type the new port path."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            return await self._async_reconfigure_to(
                entry, user_input[CONF_PORT].strip(), errors, "reconfigure_manual"
            )
        return self.async_show_form(
            step_id="reconfigure_manual",
            data_schema=vol.Schema({vol.Required(CONF_PORT): str}),
            errors=errors,
        )

    async def _async_reconfigure_to(
        self, entry: ConfigEntry, port: str, errors: dict[str, str], step_id: str
    ) -> ConfigFlowResult:
        result = await self._async_try_probe(port, errors)
        if result is None:
            schema = (
                _port_schema(await async_port_options(self.hass), port)
                if step_id == "reconfigure"
                else vol.Schema({vol.Required(CONF_PORT, default=port): str})
            )
            return self.async_show_form(step_id=step_id, data_schema=schema, errors=errors)
        await self.async_set_unique_id(_unique_id(result, port))
        if result.serial_number is not None:
            self._abort_if_unique_id_mismatch(reason="wrong_device")
        return async_update_entry_and_abort(
            self, entry, unique_id=entry.unique_id, data_updates={CONF_PORT: port}
        )


class VeDirectOptionsFlow(OptionsFlow):
    """Battery-sense forwarding for an MPPT: from a battery another entry reads, or HA sensors."""

    def __init__(self) -> None:
        """Nothing chosen yet."""
        self._options: dict[str, Any] = {}

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Choose the forwarding source and when it counts as stale."""
        if user_input is not None:
            self._options = {
                CONF_FORWARD_SOURCE: user_input[CONF_FORWARD_SOURCE],
                CONF_STALE_AFTER: float(user_input[CONF_STALE_AFTER]),
            }
            if user_input[CONF_FORWARD_SOURCE] == FORWARD_ENTITIES:
                return await self.async_step_entities()
            return self.async_create_entry(data=self._options)
        current = self.config_entry.options
        sources = [
            selector.SelectOptionDict(value=FORWARD_NONE, label="Off"),
            *battery_source_options(self.hass),
            *bank_source_options(self.hass),
            selector.SelectOptionDict(value=FORWARD_ENTITIES, label="Home Assistant sensors"),
        ]
        chosen = current.get(CONF_FORWARD_SOURCE, FORWARD_NONE)
        if chosen not in {source["value"] for source in sources}:
            chosen = FORWARD_NONE  # its entry was deleted: the picker would refuse it as preset
        schema = vol.Schema(
            {
                vol.Required(CONF_FORWARD_SOURCE, default=chosen): selector.SelectSelector(
                    selector.SelectSelectorConfig(options=sources)
                ),
                vol.Required(
                    CONF_STALE_AFTER, default=current.get(CONF_STALE_AFTER, DEFAULT_STALE_AFTER)
                ): selector.NumberSelector(
                    selector.NumberSelectorConfig(
                        min=3,
                        max=600,
                        step=1,
                        unit_of_measurement="s",
                        mode=selector.NumberSelectorMode.BOX,
                    )
                ),
            }
        )
        return self.async_show_form(step_id="init", data_schema=schema)

    async def async_step_entities(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Pick the voltage and/or temperature sensors to forward."""
        errors: dict[str, str] = {}
        if user_input is not None:
            if not user_input.get(CONF_FORWARD_VOLTAGE_ENTITY) and not user_input.get(
                CONF_FORWARD_TEMPERATURE_ENTITY
            ):
                errors["base"] = "no_entity"
            else:
                return self.async_create_entry(data={**self._options, **user_input})
        current = self.config_entry.options
        schema = vol.Schema(
            {
                vol.Optional(
                    CONF_FORWARD_VOLTAGE_ENTITY,
                    description={"suggested_value": current.get(CONF_FORWARD_VOLTAGE_ENTITY)},
                ): selector.EntitySelector(
                    selector.EntitySelectorConfig(domain="sensor", device_class="voltage")
                ),
                vol.Optional(
                    CONF_FORWARD_TEMPERATURE_ENTITY,
                    description={"suggested_value": current.get(CONF_FORWARD_TEMPERATURE_ENTITY)},
                ): selector.EntitySelector(
                    selector.EntitySelectorConfig(domain="sensor", device_class="temperature")
                ),
            }
        )
        return self.async_show_form(step_id="entities", data_schema=schema, errors=errors)


def vedirect_supports_options(entry: ConfigEntry) -> bool:
    """MPPTs have options (battery-sense forwarding); battery monitors do not."""
    return entry.data.get(CONF_FAMILY) == DeviceFamily.MPPT.value
