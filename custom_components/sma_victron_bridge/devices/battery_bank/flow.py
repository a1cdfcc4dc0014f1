"""Config-, reconfigure- and options-flow steps of a battery bank.

A bank is made of battery entries that already exist: serial or Bluetooth BMSes and the packs of
a JK PB bus (each pack keeps its own entry, device and limits), and optionally a shunt (a
VE.Direct or Victron Bluetooth battery monitor) measuring the whole bank's current. The packs
must be of one chemistry and one cell count (the bank is one battery to an inverter, and a
Sunny Island fed by it must have that cell count too), and a pack belongs to one bank at most.
Packs, shunt and the bank rules' settings are options and apply while the bank runs;
reconfigure picks a new set of packs, which may be another battery altogether.
"""

from __future__ import annotations

import secrets
from typing import Any

from homeassistant.config_entries import ConfigFlow, ConfigFlowResult, OptionsFlow
from homeassistant.core import HomeAssistant
from homeassistant.helpers import selector

from ...const import (
    CONF_CELLS,
    CONF_CHEMISTRY,
    CONF_DEVICE,
    CONF_SOURCE,
    CONF_STALE_AFTER,
    DOMAIN,
    DeviceKind,
)
from ...control.bank import BankSettings
from ...flow_helpers import async_update_entry_and_abort
from ...schema import vol
from ..battery_source import MEMBER_SEPARATOR, battery_source_options
from ..charge_settings import settings_from_entry
from .bank_entry import (
    CONF_ALLOW_STALE_CHARGING,
    CONF_PACKS,
    CONF_SHARE_TOLERANCE,
    CONF_SHUNT,
    CONF_VOLTAGE_DISAGREEMENT,
    MIN_PACKS,
    NO_SHUNT,
    bank_cells,
    bank_chemistry,
    bank_packs,
    bank_settings_from_entry,
    bank_shunt,
    is_bank_entry,
    packs_in_other_banks,
)

CONF_NAME = "name"
DEFAULT_NAME = "Battery bank"
SIMULATED: tuple[str, ...] = ()
"""A bank is made of other entries (simulated packs included); it has no simulator of its own."""
PACK_KINDS = (DeviceKind.SERIAL_BMS, DeviceKind.BLE_BMS)


def _entry_of(hass: HomeAssistant, source_id: str) -> Any:
    return hass.config_entries.async_get_entry(source_id.partition(MEMBER_SEPARATOR)[0])


def _candidates(hass: HomeAssistant) -> tuple[list[selector.SelectOptionDict], ...]:
    """(packs, shunts): BMS entries and bus packs; battery monitors measuring a current."""
    packs: list[selector.SelectOptionDict] = []
    shunts: list[selector.SelectOptionDict] = []
    for option in battery_source_options(hass):
        entry = _entry_of(hass, option["value"])
        if entry is not None and entry.data.get(CONF_DEVICE) in PACK_KINDS:
            packs.append(option)
        else:
            shunts.append(option)
    return packs, shunts


def pack_cells(hass: HomeAssistant, source_id: str) -> int | None:
    """A pack's cells in series: as its BMS reports them now, else as its entry was set up."""
    entry = _entry_of(hass, source_id)
    if entry is None:
        return None
    runtime = getattr(entry, "runtime_data", None)
    _, _, member = source_id.partition(MEMBER_SEPARATOR)
    if runtime is not None:
        snapshot = runtime.member_snapshot(member) if member else runtime.snapshot
        if snapshot is not None and snapshot.cell_voltages:
            return len(snapshot.cell_voltages)
    cells = entry.data.get(CONF_CELLS)
    return int(cells) if cells else None


def pack_chemistry(hass: HomeAssistant, source_id: str) -> str | None:
    """The chemistry a pack's entry computes its limits for."""
    entry = _entry_of(hass, source_id)
    return None if entry is None else settings_from_entry(entry).chemistry


def check_packs(
    hass: HomeAssistant,
    packs: list[str],
    bank_id: str | None,
    battery: tuple[str, int] | None = None,
) -> tuple[dict[str, str], dict[str, str], tuple[str, int] | None]:
    """(errors, placeholders, (chemistry, cells)) of a choice of packs for bank ``bank_id``.

    ``battery`` is the chemistry and cell count the packs must have (an existing bank's), else
    the first pack's sets them.
    """
    errors: dict[str, str] = {}
    placeholders = {"pack": "", "bank": "", "cells": "", "chemistry": ""}
    packs = list(dict.fromkeys(packs))
    if len(packs) < MIN_PACKS:
        return {CONF_PACKS: "too_few_packs"}, placeholders, None
    taken = packs_in_other_banks(hass, bank_id)
    for pack in packs:
        if pack in taken:
            placeholders.update(pack=_label(hass, pack), bank=taken[pack])
            return {CONF_PACKS: "pack_in_other_bank"}, placeholders, None
    wanted = battery
    for pack in packs:
        chemistry, cells = pack_chemistry(hass, pack), pack_cells(hass, pack)
        if chemistry is None or cells is None:
            placeholders.update(pack=_label(hass, pack))
            return {CONF_PACKS: "pack_unknown"}, placeholders, None
        if wanted is None:
            wanted = (chemistry, cells)
        elif (chemistry, cells) != wanted:
            placeholders.update(pack=_label(hass, pack), chemistry=wanted[0], cells=str(wanted[1]))
            return {CONF_PACKS: "pack_mismatch"}, placeholders, None
    return errors, placeholders, wanted


def _label(hass: HomeAssistant, source_id: str) -> str:
    for option in battery_source_options(hass):
        if option["value"] == source_id:
            return option["label"]
    return source_id


def sunny_islands_of(hass: HomeAssistant, bank_id: str) -> list[Any]:
    """The Sunny Island entries fed by the bank ``bank_id``."""
    return [
        entry
        for entry in hass.config_entries.async_entries(DOMAIN)
        if entry.data.get(CONF_DEVICE) == DeviceKind.SUNNY_ISLAND
        and entry.data.get(CONF_SOURCE) == bank_id
    ]


def _packs_schema(hass: HomeAssistant, packs: list[str], shunt: str | None) -> dict[Any, Any]:
    """The packs and shunt pickers, preset to ``packs`` and ``shunt``.

    A pack or shunt whose entry was deleted is not offered, so it is not preset either (the
    picker would refuse its own default): saving the form takes it out of the bank.
    """
    pack_options, shunt_options = _candidates(hass)
    offered = {option["value"] for option in (*pack_options, *shunt_options)}
    packs = [pack for pack in packs if pack in offered]
    if shunt not in offered:
        shunt = None
    return {
        vol.Required(CONF_PACKS, default=packs): selector.SelectSelector(
            selector.SelectSelectorConfig(
                options=pack_options, multiple=True, mode=selector.SelectSelectorMode.LIST
            )
        ),
        vol.Required(CONF_SHUNT, default=shunt or NO_SHUNT): selector.SelectSelector(
            selector.SelectSelectorConfig(
                options=[
                    selector.SelectOptionDict(value=NO_SHUNT, label="No shunt"),
                    *shunt_options,
                ]
            )
        ),
    }


class BatteryBankFlow(ConfigFlow):
    """Steps for a battery bank: its name, its packs and an optional shunt."""

    async def async_step_battery_bank(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Pick two or more packs (and a shunt); they must make one battery."""
        errors: dict[str, str] = {}
        placeholders = {"pack": "", "bank": "", "cells": "", "chemistry": ""}
        if user_input is not None:
            packs = list(dict.fromkeys(str(p) for p in user_input[CONF_PACKS]))
            errors, placeholders, battery = check_packs(self.hass, packs, None)
            if not errors and battery is not None:
                await self.async_set_unique_id(f"battery_bank:{secrets.token_hex(4)}")
                chemistry, cells = battery
                return self.async_create_entry(
                    title=str(user_input.get(CONF_NAME) or DEFAULT_NAME),
                    data={
                        CONF_DEVICE: DeviceKind.BATTERY_BANK.value,
                        CONF_CHEMISTRY: chemistry,
                        CONF_CELLS: cells,
                    },
                    options={CONF_PACKS: packs, CONF_SHUNT: user_input[CONF_SHUNT]},
                )
        schema = vol.Schema(
            {
                vol.Required(CONF_NAME, default=DEFAULT_NAME): str,
                **_packs_schema(self.hass, [], None),
            }
        )
        return self.async_show_form(
            step_id="battery_bank",
            data_schema=self.add_suggested_values_to_schema(schema, user_input),
            errors=errors,
            description_placeholders=placeholders,
        )

    async def async_step_battery_bank_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Pick the bank's packs anew (another battery, another cell count if nothing relies on it).

        A Sunny Island fed by the bank was set up for the bank's cell count: while one is, the
        new packs must have it too.
        """
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        placeholders = {"pack": "", "bank": "", "cells": "", "chemistry": ""}
        if user_input is not None:
            packs = list(dict.fromkeys(str(p) for p in user_input[CONF_PACKS]))
            fixed = (
                (bank_chemistry(entry), bank_cells(entry))
                if sunny_islands_of(self.hass, entry.entry_id)
                else None
            )
            errors, placeholders, battery = check_packs(self.hass, packs, entry.entry_id, fixed)
            if not errors and battery is not None:
                chemistry, cells = battery
                return async_update_entry_and_abort(
                    self,
                    entry,
                    data_updates={CONF_CHEMISTRY: chemistry, CONF_CELLS: cells},
                    options={
                        **entry.options,
                        CONF_PACKS: packs,
                        CONF_SHUNT: user_input[CONF_SHUNT],
                    },
                    reason="battery_bank_reconfigured",
                )
        return self.async_show_form(
            step_id="battery_bank_reconfigure",
            data_schema=vol.Schema(_packs_schema(self.hass, bank_packs(entry), bank_shunt(entry))),
            errors=errors,
            description_placeholders=placeholders,
        )


class BatteryBankOptionsFlow(OptionsFlow):
    """Packs, shunt and the bank rules' settings; applied while the bank runs."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Options start here; the form has its own step id (and its own texts)."""
        return await self.async_step_bank_options()

    async def async_step_bank_options(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """One form: the packs (same chemistry and cells as the bank) and the settings."""
        entry = self.config_entry
        errors: dict[str, str] = {}
        placeholders = {"pack": "", "bank": "", "cells": "", "chemistry": ""}
        if user_input is not None:
            packs = list(dict.fromkeys(str(p) for p in user_input[CONF_PACKS]))
            errors, placeholders, _battery = check_packs(
                self.hass, packs, entry.entry_id, (bank_chemistry(entry), bank_cells(entry))
            )
            if not errors:
                return self.async_create_entry(
                    data={
                        **entry.options,
                        **user_input,
                        CONF_PACKS: packs,
                        CONF_SHARE_TOLERANCE: float(user_input[CONF_SHARE_TOLERANCE]) / 100.0,
                    }
                )
        settings = bank_settings_from_entry(entry)
        schema = vol.Schema(
            {
                **_packs_schema(self.hass, bank_packs(entry), bank_shunt(entry)),
                **_settings_schema(settings),
            }
        )
        return self.async_show_form(
            step_id="bank_options",
            data_schema=self.add_suggested_values_to_schema(schema, user_input),
            errors=errors,
            description_placeholders=placeholders,
        )


def _number(low: float, high: float, step: float, unit: str) -> selector.NumberSelector:
    return selector.NumberSelector(
        selector.NumberSelectorConfig(
            min=low,
            max=high,
            step=step,
            unit_of_measurement=unit,
            mode=selector.NumberSelectorMode.BOX,
        )
    )


def _settings_schema(settings: BankSettings) -> dict[Any, Any]:
    stale = BankSettings.bounds("stale_after")
    disagreement = BankSettings.bounds("voltage_disagreement")
    tolerance = BankSettings.bounds("share_tolerance")
    return {
        vol.Required(CONF_STALE_AFTER, default=settings.stale_after): _number(*stale, 1, "s"),
        vol.Required(CONF_VOLTAGE_DISAGREEMENT, default=settings.voltage_disagreement): _number(
            *disagreement, 0.05, "V"
        ),
        vol.Required(
            CONF_SHARE_TOLERANCE, default=round(settings.share_tolerance * 100.0, 1)
        ): _number(tolerance[0] * 100.0, tolerance[1] * 100.0, 1, "%"),
        vol.Required(
            CONF_ALLOW_STALE_CHARGING, default=settings.allow_charging_with_stale_pack
        ): selector.BooleanSelector(),
    }


__all__ = [
    "BatteryBankFlow",
    "BatteryBankOptionsFlow",
    "check_packs",
    "is_bank_entry",
    "sunny_islands_of",
]
