"""What a battery bank entry stores, readable without its runtime (source pickers, flows).

A bank entry's data holds the battery the packs make up (chemistry and cells in series: every
pack has to match, and a Sunny Island fed by the bank has to match too). Its options hold what
can change while the bank runs: the packs (battery-source ids of other entries, see
:mod:`..battery_source`), an optional shunt measuring the whole bank's current, and the bank
rules' settings (:class:`~...control.bank.BankSettings`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.helpers import selector

from ...const import CONF_CELLS, CONF_CHEMISTRY, CONF_DEVICE, CONF_STALE_AFTER, DOMAIN, DeviceKind
from ...control.bank import BankSettings
from ...control.chemistry import UnsafeSetting

CONF_PACKS: Final = "packs"
"""Entry option: the battery-source ids of the bank's packs (``<entry_id>`` or ``…:<member>``)."""
CONF_SHUNT: Final = "shunt"
"""Entry option: the battery-source id of a shunt measuring the whole bank, or :data:`NO_SHUNT`."""
NO_SHUNT: Final = "none"
CONF_VOLTAGE_DISAGREEMENT: Final = "voltage_disagreement"
CONF_ALLOW_STALE_CHARGING: Final = "allow_charging_with_stale_pack"
CONF_SHARE_TOLERANCE: Final = "share_tolerance"
MIN_PACKS: Final = 2
DEFAULT_CHEMISTRY: Final = "lifepo4"


def is_bank_entry(entry: ConfigEntry[Any] | None) -> bool:
    """Whether ``entry`` is a battery bank of this integration."""
    return (
        entry is not None
        and entry.domain == DOMAIN
        and entry.data.get(CONF_DEVICE) == DeviceKind.BATTERY_BANK
    )


def bank_packs(entry: ConfigEntry[Any]) -> list[str]:
    """The source ids of the bank's packs, in the order the user chose them."""
    return [str(pack) for pack in entry.options.get(CONF_PACKS) or ()]


def bank_shunt(entry: ConfigEntry[Any]) -> str | None:
    """The source id of the bank's shunt, or None."""
    shunt = entry.options.get(CONF_SHUNT)
    return None if shunt in (None, "", NO_SHUNT) else str(shunt)


def bank_cells(entry: ConfigEntry[Any]) -> int:
    """Cells in series of every pack of the bank."""
    return int(entry.data.get(CONF_CELLS, 16))


def bank_chemistry(entry: ConfigEntry[Any]) -> str:
    """The chemistry of every pack of the bank."""
    return str(entry.data.get(CONF_CHEMISTRY, DEFAULT_CHEMISTRY))


def bank_settings_from_entry(entry: ConfigEntry[Any]) -> BankSettings:
    """The bank rules' settings; a stored value that is no longer valid takes its default."""
    options: Mapping[str, Any] = entry.options
    values: dict[str, Any] = {"cells": bank_cells(entry), "shunt": bank_shunt(entry) is not None}
    for key in (CONF_STALE_AFTER, CONF_VOLTAGE_DISAGREEMENT, CONF_SHARE_TOLERANCE):
        if key in options:
            values[key] = float(options[key])
    if CONF_ALLOW_STALE_CHARGING in options:
        values[CONF_ALLOW_STALE_CHARGING] = bool(options[CONF_ALLOW_STALE_CHARGING])
    try:
        return BankSettings(**values)
    except UnsafeSetting:
        return BankSettings(cells=values["cells"], shunt=values["shunt"])


def packs_in_other_banks(hass: HomeAssistant, entry_id: str | None) -> dict[str, str]:
    """Every pack some bank other than ``entry_id`` holds: source id → that bank's title."""
    taken: dict[str, str] = {}
    for entry in hass.config_entries.async_entries(DOMAIN):
        if entry.entry_id != entry_id and is_bank_entry(entry):
            for pack in bank_packs(entry):
                taken.setdefault(pack, entry.title)
    return taken


def bank_source_options(hass: HomeAssistant) -> list[selector.SelectOptionDict]:
    """Every battery bank, for the battery-source pickers of a Sunny Island and forwarding."""
    return [
        selector.SelectOptionDict(value=entry.entry_id, label=entry.title)
        for entry in hass.config_entries.async_entries(DOMAIN)
        if is_bank_entry(entry)
    ]
