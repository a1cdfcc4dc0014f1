"""Battery bank device kind: several packs, each with its own BMS entry, as one battery.

The bank reads nothing itself. Its packs are other entries of this integration (a serial or
Bluetooth BMS, a pack of a JK PB bus), each polling its BMS and computing the limits that pack
allows with its own :class:`~...control.charge.ChargeController`. The bank combines their latest
readings and decisions (:func:`~...control.bank.combine`, whose rules ``docs/battery_banks.md``
explains) into one battery: the values of its device, the limits a Sunny Island must obey, and a
:class:`BatterySnapshot` that a Sunny Island or battery-sense forwarding follows like any other
battery source.

When the bank refreshes: once a second (a silent pack must turn stale without any update), and
shortly after a pack reports (:data:`REFRESH_DELAY`: the readings of one polling round arrive
within a fraction of a second and make one refresh, not one per pack). A Sunny Island fed by
the bank combines the packs at its own tick instead (:meth:`BatteryBankRuntime.state_at`), so
its limits are judged at the moment they are sent. Pack entries are looked up on every refresh:
a pack entry that reloads is followed without the bank reloading.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
import logging
import math
import time
from typing import Any, Final

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import Platform
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.event import async_track_time_interval

from ...const import DOMAIN
from ...control.bank import BankSettings, BankState, PackState, combine
from ...control.charge import ChargeController, ChargeDecision
from ...control.chemistry import CHEMISTRIES
from ...control.energy import EnergyIntegrator
from ...control.snapshot import BatterySnapshot
from ...runtime import BridgeConfigEntry
from ..base import DeviceRuntime, PushCoordinator
from ..battery_source import MEMBER_SEPARATOR, member_title
from ..serial_bms.data import SerialBmsData
from .bank_entry import (
    bank_chemistry,
    bank_packs,
    bank_settings_from_entry,
    bank_shunt,
)
from .entities import PROBLEM_BINARY_SENSORS, PROBLEM_SENSORS, SENSORS

_LOGGER = logging.getLogger(__name__)

TICK: Final = timedelta(seconds=1)
REFRESH_DELAY: Final = 0.2
"""Seconds between a pack's reading and the bank's refresh, so one polling round is one refresh."""
MANUFACTURER: Final = "SMA Victron Bridge"


def stale_pack_issue_id(entry_id: str) -> str:
    """The repair issue raised while a pack of the bank is stale."""
    return f"bank_pack_stale_{entry_id}"


@dataclass(slots=True)
class BankData:
    """The bank as its entities show it, updated in place on every refresh."""

    state: BankState | None = None
    energy: EnergyIntegrator = field(default_factory=EnergyIntegrator)
    names: dict[str, str] = field(default_factory=dict)
    """Pack id → name, of the packs in ``state``."""
    statuses: dict[str, str] = field(default_factory=dict)
    """Pack name → its status in ``state`` (online, stale, …)."""
    shunt: bool = False
    refreshes: int = 0


class BankProblemsRuntime(DeviceRuntime):
    """The bank's problem entities: the bank's device, a coordinator told only of changes.

    A refresh changes the bank's values every time the packs report; its problems (a stale
    pack, disagreeing voltages, a FET off) change rarely. Their entities follow this coordinator,
    so a refresh does not have to ask each of them whether it changed.
    """

    platforms = ()

    def __init__(self, bank: BatteryBankRuntime) -> None:
        """The problems of ``bank``, shown on its device."""
        super().__init__()
        self.bank = bank
        self._coordinator = PushCoordinator(
            bank.hass, name=f"{bank.entry.title} problems", initial=bank.data
        )
        self._shown: tuple[Any, ...] | None = None

    @property
    def coordinator(self) -> PushCoordinator[BankData]:
        """The coordinator of the problem entities."""
        return self._coordinator

    @property
    def device_info(self) -> DeviceInfo:
        """The bank's device."""
        return self.bank.device_info

    def descriptions(self, platform: Platform) -> Sequence[EntityDescription]:
        """The problem binary sensors and the sensors naming the packs concerned."""
        return {
            Platform.SENSOR: PROBLEM_SENSORS,
            Platform.BINARY_SENSOR: PROBLEM_BINARY_SENSORS,
        }.get(platform, ())

    async def async_start(self) -> None:
        """Nothing to start: the bank refreshes these entities."""

    async def async_shutdown(self) -> None:
        """Nothing to stop."""

    def diagnostics(self) -> Mapping[str, Any]:
        """Everything is in the bank's diagnostics."""
        return {}

    def show(self, state: BankState) -> None:
        """Tell the problem entities of ``state`` when a problem or the packs concerned changed."""
        shown = (
            state.problems,
            state.stale_packs,
            state.disagreeing_packs,
            state.cell_count_mismatch,
            tuple(state.charge.excluded.items()),
            tuple(state.discharge.excluded.items()),
            self.bank.data.shunt,
            tuple(self.bank.data.names.items()),
        )
        if shown != self._shown:
            self._shown = shown
            self._coordinator.async_set_updated_data(self.bank.data)


class BatteryBankRuntime(DeviceRuntime):
    """One bank: its packs' entries combined into one battery, a device and a battery source."""

    platforms = (Platform.SENSOR, Platform.BINARY_SENSOR)

    def __init__(self, hass: HomeAssistant, entry: BridgeConfigEntry) -> None:
        """Read the packs and settings from the entry; nothing runs until :meth:`async_start`."""
        super().__init__()
        self.hass = hass
        self.entry = entry
        self.data = BankData()
        self._coordinator = PushCoordinator(hass, name=entry.title, initial=self.data)
        self._load_options()
        self._followed: dict[str, tuple[DeviceRuntime, CALLBACK_TYPE]] = {}
        self._unsubs: list[Callable[[], None]] = []
        self._refresh_handle: Any = None
        self._started_at = time.monotonic()
        self._issue_packs: tuple[str, ...] = ()
        self._names: dict[str, str] = {}
        """Pack (and shunt) id → its name when last looked up: a deleted entry keeps its name."""
        self._stopped = False
        self.problems = BankProblemsRuntime(self)

    def _load_options(self) -> None:
        self.settings: BankSettings = bank_settings_from_entry(self.entry)
        self.pack_ids: list[str] = bank_packs(self.entry)
        self.shunt_id: str | None = bank_shunt(self.entry)
        self.data.shunt = self.shunt_id is not None

    # --- DeviceRuntime ---

    @property
    def coordinator(self) -> PushCoordinator[BankData]:
        """The coordinator of the bank's entities."""
        return self._coordinator

    @property
    def device_info(self) -> DeviceInfo:
        """The bank as one device."""
        return DeviceInfo(
            identifiers={(DOMAIN, self.entry.unique_id or self.entry.entry_id)},
            manufacturer=MANUFACTURER,
            model=f"Battery bank, {self.settings.cells}S {self._chemistry_name()}",
            name=self.entry.title,
        )

    def _chemistry_name(self) -> str:
        key = bank_chemistry(self.entry)
        chemistry = CHEMISTRIES.get(key)
        return key if chemistry is None else chemistry.name

    def descriptions(self, platform: Platform) -> Sequence[EntityDescription]:
        """The bank's values (its problems are :class:`BankProblemsRuntime`'s)."""
        return SENSORS if platform is Platform.SENSOR else ()

    def device_runtimes(self) -> Sequence[DeviceRuntime]:
        """One device, with two coordinators: the values and the problems."""
        return (self, self.problems)

    @property
    def snapshot(self) -> BatterySnapshot | None:
        """The bank as one battery for a Sunny Island or forwarding; None before any reading."""
        state = self.data.state
        if state is None or not math.isfinite(state.snapshot.timestamp):
            return None
        return state.snapshot

    async def async_start(self) -> None:
        """Start refreshing; packs that are not set up yet count as stale until they are."""
        self._started_at = time.monotonic()
        self._unsubs.append(
            async_track_time_interval(self.hass, self._async_tick, TICK, name="battery bank")
        )
        self.refresh()

    async def async_apply_options(self) -> bool:
        """Packs, shunt and settings apply at once: the bank holds no connection of its own."""
        self._load_options()
        for pack_id in [p for p in self._followed if p not in self._wanted()]:
            self._followed.pop(pack_id)[1]()
        self.refresh()
        return True

    async def async_shutdown(self) -> None:
        """Stop refreshing and following the packs (safe to call twice)."""
        self._stopped = True
        for unsub in self._unsubs:
            unsub()
        self._unsubs.clear()
        for _runtime, unsub in self._followed.values():
            unsub()
        self._followed.clear()
        if self._refresh_handle is not None:
            self._refresh_handle.cancel()
            self._refresh_handle = None
        ir.async_delete_issue(self.hass, DOMAIN, stale_pack_issue_id(self.entry.entry_id))

    # --- the packs ---

    def _wanted(self) -> list[str]:
        return [*self.pack_ids, *([self.shunt_id] if self.shunt_id else [])]

    def _lookup(self, source_id: str) -> tuple[str, DeviceRuntime | None]:
        """A pack's (or the shunt's) name, and the runtime reading it while its entry is loaded.

        The name is its entry's title (a bus pack's as its device is named).
        """
        entry_id, _, member = source_id.partition(MEMBER_SEPARATOR)
        entry = self.hass.config_entries.async_get_entry(entry_id)
        if entry is None or entry.domain != DOMAIN:
            # A deleted entry: named as it was last seen (its id only if never seen running).
            known = self._names.get(source_id)
            return known or (member_title(entry_id, member) if member else entry_id), None
        name = member_title(entry.title, member) if member else entry.title
        self._names[source_id] = name
        if entry.state is not ConfigEntryState.LOADED:
            return name, None
        runtime: DeviceRuntime = entry.runtime_data
        if not member:
            return name, runtime
        for device in runtime.device_runtimes():
            if str(getattr(device, "address", None)) == member:
                return name, device
        return name, None

    def _follow(self, source_id: str, runtime: DeviceRuntime | None) -> None:
        """Be told of every reading of the runtime now reading ``source_id``."""
        followed = self._followed.get(source_id)
        if followed is not None and (runtime is None or followed[0] is not runtime):
            followed[1]()
            del self._followed[source_id]
            followed = None
        if runtime is not None and followed is None:
            self._followed[source_id] = (
                runtime,
                runtime.async_subscribe_snapshot(self._on_pack_reading),
            )

    @staticmethod
    def _pack_state(source_id: str, name: str, runtime: DeviceRuntime | None) -> PackState:
        if runtime is None:
            return PackState(
                pack_id=source_id, name=name, snapshot=None, decision=None, available=False
            )
        data = getattr(runtime, "data", None)
        controller = getattr(runtime, "controller", None)
        reading = data.reading if isinstance(data, SerialBmsData) else None
        decision = data.limits if isinstance(data, SerialBmsData) else None
        configured = (
            controller.settings.capacity_ah if isinstance(controller, ChargeController) else None
        )
        nominal = reading.nominal_capacity if reading is not None else None
        return PackState(
            pack_id=source_id,
            name=name,
            snapshot=runtime.snapshot,
            decision=decision if isinstance(decision, ChargeDecision) else None,
            # A BMS that does not tell its capacity weighs what its entry was set up with:
            # without one the bank would have to assume the pack takes the whole current.
            nominal_capacity=nominal if nominal else configured,
            remaining_capacity=None if reading is None else reading.remaining_capacity,
            charge_fet=None if reading is None else reading.charge_fet,
            discharge_fet=None if reading is None else reading.discharge_fet,
            available=runtime.coordinator.link_up,
        )

    @callback
    def _on_pack_reading(self, _snapshot: BatterySnapshot) -> None:
        if self._refresh_handle is None and not self._stopped:
            self._refresh_handle = self.hass.loop.call_later(REFRESH_DELAY, self._delayed_refresh)

    @callback
    def _delayed_refresh(self) -> None:
        self._refresh_handle = None
        self.refresh()

    async def _async_tick(self, _now: object = None) -> None:
        self.refresh()

    # --- combining ---

    def state_at(self, now: float) -> BankState:
        """The bank combined at ``now`` (monotonic s); the snapshot follows it.

        A Sunny Island fed by the bank calls this at its own tick, so the limits it sends are
        judged then; the bank's entities follow at its own refresh.
        """
        packs: list[PackState] = []
        for source_id in self.pack_ids:
            name, runtime = self._lookup(source_id)
            self._follow(source_id, runtime)
            packs.append(self._pack_state(source_id, name, runtime))
        shunt: BatterySnapshot | None = None
        if self.shunt_id is not None:
            _name, shunt_runtime = self._lookup(self.shunt_id)
            shunt = None if shunt_runtime is None else shunt_runtime.snapshot
        state = combine(packs, self.settings, now, shunt)
        data = self.data
        data.state = state
        data.names = {p.pack_id: p.name for p in state.packs}
        statuses = {p.name: p.status.value for p in state.packs}
        if statuses != data.statuses:
            data.statuses = statuses
        return state

    @callback
    def refresh(self) -> None:
        """Combine the packs now and show the result (entities, energy, repair issue)."""
        if self._stopped:
            return
        now = time.monotonic()
        state = self.state_at(now)
        self.data.refreshes += 1
        self.data.energy.add(now, state.power)
        self._update_issue(state, now)
        self._coordinator.async_set_updated_data(self.data)
        self.problems.show(state)

    def _update_issue(self, state: BankState, now: float) -> None:
        """A repair issue naming the stale packs (not before the packs had time to report)."""
        stale = state.stale_packs
        if stale and now - self._started_at < self.settings.stale_after:
            stale = ()  # just set up: the packs' entries may still be starting
        if stale == self._issue_packs:
            return
        issue_id = stale_pack_issue_id(self.entry.entry_id)
        if stale:
            names = ", ".join(self.data.names.get(pack, pack) for pack in stale)
            _LOGGER.warning(
                "%s: no current reading from %s; %s",
                self.entry.title,
                names,
                "charging continues within the other packs' share"
                if self.settings.allow_charging_with_stale_pack
                else "charging is stopped until it reports again",
            )
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                issue_id,
                is_fixable=False,
                severity=ir.IssueSeverity.ERROR,
                translation_key="bank_pack_stale",
                translation_placeholders={
                    "name": self.entry.title,
                    "packs": names,
                    "seconds": f"{self.settings.stale_after:g}",
                },
            )
        else:
            _LOGGER.info("%s: every pack reports again", self.entry.title)
            ir.async_delete_issue(self.hass, DOMAIN, issue_id)
        self._issue_packs = stale

    def diagnostics(self) -> Mapping[str, Any]:
        """The packs, the settings and the last combined state."""
        state = self.data.state
        return {
            "packs": list(self.pack_ids),
            "shunt": self.shunt_id,
            "settings": {
                "cells": self.settings.cells,
                "stale_after": self.settings.stale_after,
                "voltage_disagreement": self.settings.voltage_disagreement,
                "allow_charging_with_stale_pack": self.settings.allow_charging_with_stale_pack,
                "share_tolerance": self.settings.share_tolerance,
            },
            "refreshes": self.data.refreshes,
            "state": None if state is None else repr(state),
            "energy": {
                "charged_kwh": self.data.energy.charged_kwh,
                "discharged_kwh": self.data.energy.discharged_kwh,
            },
        }


__all__ = ["BankData", "BankProblemsRuntime", "BatteryBankRuntime", "stale_pack_issue_id"]
