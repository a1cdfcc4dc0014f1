"""Where a consumer (battery-sense forwarding, the Sunny Island BMS) gets its battery readings.

Two kinds of source: another entry of this integration that measures a battery (its runtime
publishes :class:`BatterySnapshot`), or Home Assistant entities the user picked. Both are read on
demand, so a source entry that reloads, or an entity that disappears and returns, is picked up
again without re-subscribing. The age of an entity reading comes from ``last_reported``: a battery
voltage that stays the same is still fresh as long as its sensor keeps reporting it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
import math
import time

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE, STATE_UNKNOWN, UnitOfTemperature
from homeassistant.core import HomeAssistant, State
from homeassistant.helpers import selector
from homeassistant.util import dt as dt_util
from homeassistant.util.unit_conversion import TemperatureConverter

from ..const import CONF_DEVICE, DOMAIN, DeviceKind
from ..control.snapshot import BatterySnapshot
from .serial_bms.bus_entry import bus_addresses, is_bus_entry


class BatterySource(ABC):
    """Something that can tell the latest battery state, or None when it has none."""

    @property
    @abstractmethod
    def name(self) -> str:
        """Human-readable name of the source, shown in sensors and repair issues."""

    @abstractmethod
    def snapshot(self) -> BatterySnapshot | None:
        """The latest reading (possibly old: consumers check its age)."""


MEMBER_SEPARATOR = ":"
"""Splits a source id ``<entry_id>:<member>``: one battery among several an entry reads."""


def member_source_id(entry_id: str, member: str) -> str:
    """The battery-source id of one battery (a pack on a bus) read by entry ``entry_id``."""
    return f"{entry_id}{MEMBER_SEPARATOR}{member}"


def member_title(entry_title: str, member: str) -> str:
    """How one pack of a bus entry is named: in its device, in source pickers, in issues."""
    return f"{entry_title} pack {member}"


# Entry data that marks a battery monitor among VE.Direct and Victron Bluetooth entries (their
# flows' own constants; importing those would import the kinds' flows here).
_FAMILY = "family"
_BATTERY_MONITOR = "battery_monitor"
_RECORD_TYPE = "record_type"
_BATTERY_MONITOR_RECORD = 2


def battery_source_options(hass: HomeAssistant) -> list[selector.SelectOptionDict]:
    """Every battery another entry of this integration measures, for a source picker.

    A serial BMS or a Bluetooth BMS entry is its own battery; a JK PB bus entry offers each pack
    it reads as ``<entry_id>:<address>``; Victron battery monitors (VE.Direct, Bluetooth) too.
    """
    options: list[selector.SelectOptionDict] = []
    for entry in hass.config_entries.async_entries(DOMAIN):
        device = entry.data.get(CONF_DEVICE)
        if device == DeviceKind.SERIAL_BMS and is_bus_entry(entry):
            options.extend(
                selector.SelectOptionDict(
                    value=member_source_id(entry.entry_id, str(address)),
                    label=member_title(entry.title, str(address)),
                )
                for address in bus_addresses(entry)
            )
        elif (
            device in (DeviceKind.SERIAL_BMS, DeviceKind.BLE_BMS)
            or entry.data.get(_FAMILY) == _BATTERY_MONITOR
            or (
                device == DeviceKind.VICTRON_BLE
                and entry.data.get(_RECORD_TYPE) == _BATTERY_MONITOR_RECORD
            )
        ):
            options.append(selector.SelectOptionDict(value=entry.entry_id, label=entry.title))
    return options


class EntryBatterySource(BatterySource):
    """Readings published by another config entry of this integration.

    ``source_id`` is a plain entry id (the entry's own battery, as every stored source was before
    buses existed) or ``<entry_id>:<member>`` for one pack of a bus entry. Entry ids never hold the
    separator, so both forms are told apart without a stored marker.
    """

    def __init__(self, hass: HomeAssistant, source_id: str) -> None:
        """Follow the entry (and member) named by ``source_id`` (looked up on every read)."""
        self._hass = hass
        entry_id, _, member = source_id.partition(MEMBER_SEPARATOR)
        self._entry_id = entry_id
        self._member = member or None
        self._last: BatterySnapshot | None = None

    @property
    def name(self) -> str:
        """The source entry's title; a pack's as its device is named."""
        entry = self._hass.config_entries.async_get_entry(self._entry_id)
        title = entry.title if entry else self._entry_id
        return title if self._member is None else member_title(title, self._member)

    def snapshot(self) -> BatterySnapshot | None:
        """The entry's latest snapshot; the last one seen while it is unloaded or reloading."""
        entry = self._hass.config_entries.async_get_entry(self._entry_id)
        if entry is not None and entry.domain == DOMAIN and entry.state is ConfigEntryState.LOADED:
            runtime = entry.runtime_data
            current = (
                runtime.snapshot if self._member is None else runtime.member_snapshot(self._member)
            )
            if current is not None:
                self._last = current
        return self._last


@dataclass(frozen=True, slots=True)
class EntityIds:
    """The Home Assistant entities a user picked as a battery source."""

    voltage: str | None = None
    temperature: str | None = None
    soc: str | None = None
    current: str | None = None


class EntitiesBatterySource(BatterySource):
    """Readings taken from arbitrary Home Assistant sensors.

    ``required`` names the quantity whose freshness dates the snapshot (voltage for battery-sense
    forwarding, SOC for a BMS): the snapshot's timestamp is when that entity last reported.
    """

    def __init__(
        self,
        hass: HomeAssistant,
        entities: EntityIds,
        required: str,
        *,
        invert_current: bool = False,
    ) -> None:
        """Read ``entities``; ``required`` is one of voltage/temperature/soc/current.

        ``invert_current``: the current sensor counts discharging as positive (this integration
        and the Sunny Island count charging as positive).
        """
        self._hass = hass
        self._entities = entities
        self._required = required
        self._invert_current = invert_current

    @property
    def name(self) -> str:
        """The entity ids, as the user picked them."""
        ids = (self._entities.soc, self._entities.voltage, self._entities.temperature)
        return ", ".join(e for e in ids if e)

    def _value(self, entity_id: str | None) -> tuple[float | None, State | None]:
        if entity_id is None:
            return None, None
        state = self._hass.states.get(entity_id)
        if state is None or state.state in (STATE_UNKNOWN, STATE_UNAVAILABLE):
            return None, None
        try:
            value = float(state.state)
        except ValueError:
            return None, None
        # "nan"/"inf" parse as floats: a sensor that reports them has no reading.
        return (value, state) if math.isfinite(value) else (None, None)

    def snapshot(self) -> BatterySnapshot | None:
        """A snapshot dated by the required entity's last report; None while it has no value."""
        voltage, voltage_state = self._value(self._entities.voltage)
        temperature, temperature_state = self._value(self._entities.temperature)
        soc, soc_state = self._value(self._entities.soc)
        current, current_state = self._value(self._entities.current)
        if temperature is not None and temperature_state is not None:
            unit = temperature_state.attributes.get("unit_of_measurement")
            if unit in (UnitOfTemperature.FAHRENHEIT, UnitOfTemperature.KELVIN):
                temperature = TemperatureConverter.convert(
                    temperature, unit, UnitOfTemperature.CELSIUS
                )
        dating = {
            "voltage": voltage_state,
            "temperature": temperature_state,
            "soc": soc_state,
            "current": current_state,
        }[self._required]
        if dating is None:
            return None
        now_wall, now = dt_util.utcnow(), time.monotonic()

        def measured(state: State | None) -> float:
            """When an entity last reported, on the monotonic clock the snapshot uses."""
            assert state is not None
            return now - max(0.0, (now_wall - state.last_reported).total_seconds())

        # Each quantity is dated by its own entity, so a frozen voltage or temperature sensor
        # goes stale even while the state of charge keeps reporting.
        field_times = {
            name: measured(state)
            for name, state in (
                ("voltage", voltage_state),
                ("temperature", temperature_state),
                ("soc", soc_state),
                ("current", current_state),
            )
            if state is not None
        }
        if current is not None and self._invert_current:
            current = -current
        return BatterySnapshot(
            timestamp=measured(dating),
            voltage=voltage,
            temperature=temperature,
            soc=soc,
            current=current,
            field_times=field_times,
        )
