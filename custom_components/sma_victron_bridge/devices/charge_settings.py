"""Charge settings of an entry: the battery from its data, every tuned value from its options."""

from __future__ import annotations

from ..const import CONF_CHARGE_MODE, CONF_DEVICE, DeviceKind
from ..control.chemistry import ChargeSettings
from ..runtime import BridgeConfigEntry

SETTINGS_KEYS = ("chemistry", "cells", "capacity_ah")
RANGES_KEY = "sunny_island_ranges"
"""Decided by the kind of entry, never by a stored option (see :func:`settings_from_entry`)."""


def settings_from_entry(entry: BridgeConfigEntry) -> ChargeSettings:
    """Charge settings: battery from the entry data, every tuned value from the options.

    Only a Sunny Island sends the pack voltages to an inverter with fixed accepted ranges, so
    only its settings are held to them. A standalone serial BMS merely shows the limits it
    computes, for packs of any size (a 4s or 8s BMS must still set up). The flag follows the
    entry's kind and cannot be changed through the options, so no stored value can ever lift
    the Sunny Island's ranges.
    """
    base = {key: entry.data[key] for key in SETTINGS_KEYS if entry.data.get(key) is not None}
    tuned = {k: v for k, v in entry.options.items() if k not in (CONF_CHARGE_MODE, RANGES_KEY)}
    fit = entry.data.get(CONF_DEVICE) == DeviceKind.SUNNY_ISLAND
    return ChargeSettings.from_mapping({**base, **tuned, RANGES_KEY: fit})
