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
from homeassistant.util import dt as dt_util
from homeassistant.util.unit_conversion import TemperatureConverter

from ..const import DOMAIN
from ..control.snapshot import BatterySnapshot


class BatterySource(ABC):
    """Something that can tell the latest battery state, or None when it has none."""

    @property
    @abstractmethod
    def name(self) -> str:
        """Human-readable name of the source, shown in sensors and repair issues."""

    @abstractmethod
    def snapshot(self) -> BatterySnapshot | None:
        """The latest reading (possibly old: consumers check its age)."""


class EntryBatterySource(BatterySource):
    """Readings published by another config entry of this integration."""

    def __init__(self, hass: HomeAssistant, entry_id: str) -> None:
        """Follow the entry with ``entry_id`` (looked up on every read)."""
        self._hass = hass
        self._entry_id = entry_id
        self._last: BatterySnapshot | None = None

    @property
    def name(self) -> str:
        """The source entry's title."""
        entry = self._hass.config_entries.async_get_entry(self._entry_id)
        return entry.title if entry else self._entry_id

    def snapshot(self) -> BatterySnapshot | None:
        """The entry's latest snapshot; the last one seen while it is unloaded or reloading."""
        entry = self._hass.config_entries.async_get_entry(self._entry_id)
        if entry is not None and entry.domain == DOMAIN and entry.state is ConfigEntryState.LOADED:
            current = entry.runtime_data.snapshot
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
