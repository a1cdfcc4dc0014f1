"""What a JK PB bus entry stores, readable without the runtime (source pickers, flows).

A bus entry is a Serial BMS entry whose protocol is :data:`PROTOCOL_JK_PB`. Its data holds the
packs the last scan found (``packs``: address → serial number and model), which is what makes
the bus recognisable on another port; its options hold the addresses the user wants read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from homeassistant.config_entries import ConfigEntry

from ...const import CONF_PROTOCOL

PROTOCOL_JK_PB: Final = "jk_pb"
"""Stored protocol of a bus entry (the packs speak Modbus RTU, several on one RS485 line)."""
CONF_PACKS: Final = "packs"
"""Entry data: ``{"<address>": {"serial_number": …, "model": …}}`` of each pack the last scan
found."""
CONF_ADDRESSES: Final = "addresses"
"""Entry option: the pack addresses to read (all packs found when the option is absent)."""
PACK_SERIAL: Final = "serial_number"
"""Key of a pack's serial number (the key diagnostics redact)."""
PACK_MODEL: Final = "model"


def is_bus_entry(entry: ConfigEntry[Any]) -> bool:
    """Whether ``entry`` reads a JK PB bus rather than one BMS."""
    return entry.data.get(CONF_PROTOCOL) == PROTOCOL_JK_PB


def known_packs(entry: ConfigEntry[Any]) -> dict[int, Mapping[str, Any]]:
    """The packs the last scan found, by address."""
    packs: Mapping[str, Mapping[str, Any]] = entry.data.get(CONF_PACKS) or {}
    return {int(address): pack for address, pack in packs.items()}


def bus_addresses(entry: ConfigEntry[Any]) -> list[int]:
    """The addresses the entry reads, in bus order."""
    chosen = entry.options.get(CONF_ADDRESSES)
    if chosen is None:
        return sorted(known_packs(entry))
    return sorted(int(address) for address in chosen)
