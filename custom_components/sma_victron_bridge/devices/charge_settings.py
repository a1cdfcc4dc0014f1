"""Charge settings of an entry: the battery from its data, every tuned value from its options."""

from __future__ import annotations

from ..const import CONF_CHARGE_MODE
from ..control.chemistry import ChargeSettings
from ..runtime import BridgeConfigEntry

SETTINGS_KEYS = ("chemistry", "cells", "capacity_ah")


def settings_from_entry(entry: BridgeConfigEntry) -> ChargeSettings:
    """Charge settings: battery from the entry data, every tuned value from the options."""
    base = {key: entry.data[key] for key in SETTINGS_KEYS if entry.data.get(key) is not None}
    tuned = {k: v for k, v in entry.options.items() if k not in (CONF_CHARGE_MODE,)}
    return ChargeSettings.from_mapping({**base, **tuned})
