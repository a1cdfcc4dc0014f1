"""Sunny Island device kind: this entry is the lithium BMS the Sunny Island obeys.

Every second the runtime takes the latest battery snapshot from its source (another entry or HA
entities, with the Sunny Island's own battery measurement filling gaps), runs the charge state
machine, and updates the BMS frames that python-can's periodic tasks keep sending — in the kernel
on socketcan, in a thread elsewhere — so the frames flow even while the event loop stalls, the
source reloads or the settings change (settings apply live, the entry never reloads for them).
The Sunny Island's own broadcasts become sensors.

Fail safe, never frozen (DESIGN invariant 7): an error anywhere in a tick sends the safe version of
the last frames at once (CCL 0 A, SOC held, W947) instead of leaving the SI with limits nobody
re-decides, and the sender's dead-man guard does the same by itself when ticks stop coming (a
blocked event loop). Both are shown as a problem sensor and a repair issue. The charge state and
the last full charge are kept in a store, so a restart in float stays in float.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
import contextlib
from dataclasses import dataclass, field, replace
from datetime import timedelta
import logging
import time
from typing import Any

import can
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryNotReady, ServiceValidationError
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.event import async_track_time_interval
from homeassistant.helpers.storage import Store

from ...const import (
    CONF_BITRATE,
    CONF_CAN_CHANNEL,
    CONF_CAN_INTERFACE,
    CONF_CHARGE_MODE,
    CONF_SIMULATED,
    CONF_SOURCE,
    CONF_SOURCE_CURRENT,
    CONF_SOURCE_SOC,
    CONF_SOURCE_TEMPERATURE,
    CONF_SOURCE_VOLTAGE,
    DOMAIN,
    MANUFACTURER_SMA,
    SOURCE_ENTITIES,
)
from ...control.bank import BankLimiter, BankState
from ...control.charge import ChargeController, ChargeDecision, ChargeMode, MissingData
from ...control.chemistry import ChargeSettings, UnsafeSetting
from ...control.energy import EnergyIntegrator
from ...control.snapshot import BatterySnapshot
from ...protocols import ProtocolError
from ...protocols.can_link import DEFAULT_GUARD_TIME, CanConfig, CanLink, CanLinkError
from ...protocols.sma_can import (
    ID_BATTERY,
    SI_FRAME_IDS,
    AlarmItem as SmaAlarm,
    BmsFrameState,
    decode_si_frame,
    encode_alarm_bits,
    encode_bms_frames,
    safe_bms_frames,
)
from ...runtime import BridgeConfigEntry
from ...simulators.day_clock import CurrentFollower, demo_start_time_of_day
from ...simulators.sunny_island import SunnyIslandSimulator
from ..base import DeviceRuntime, PushCoordinator, async_shutdown_on_stop
from ..battery_bank.bank_entry import is_bank_entry
from ..battery_source import BatterySource, EntitiesBatterySource, EntityIds, EntryBatterySource
from ..charge_settings import settings_from_entry
from ..simulation import sun_time_scale
from .entities import BINARY_SENSORS, BUTTONS, NUMBERS, SELECTS, SENSORS

_LOGGER = logging.getLogger(__name__)

TICK = timedelta(seconds=1)
# Until the first frames are out, look for a fresh snapshot more often (invariant 6).
FIRST_FRAME_POLL = 0.1
MANUFACTURER_NAME = "SVBridge"
# Grid loss is latched only after this many 0x307 frames without a valid grid (one drop always
# shows during relay transfer).
GRID_LOSS_FRAMES = 2
# The Sunny Island sends about ten frames per second; entities are refreshed once per burst.
ENTITY_REFRESH_DELAY = 0.05
# A simulated Sunny Island living a short demo day: AC-coupled PV at noon and the mean load, W.
SIMULATED_PV_PEAK = 5000.0
SIMULATED_LOAD = 300.0
# The entry option holding the dead-man guard time, s (0 < t < 60); read with this default.
CONF_GUARD_TIME = "guard_time"
# Entry data: the HA current sensor counts discharging as positive.
CONF_SOURCE_INVERT_CURRENT = "source_invert_current"
# The SI's own 0x305 measurement stands in for the source (gaps, sign check) only this fresh, s:
# an SI that went quiet must not keep feeding a frozen current or temperature.
SI_MEASUREMENT_MAX_AGE = 5.0
# The charge state is saved at once on every charge event, otherwise at most this often (s).
STORE_SAVE_DELAY = 60.0
STORE_VERSION = 1
# Which SI battery value fills which snapshot field.
_SI_FILL = (
    ("voltage", "battery_voltage"),
    ("current", "battery_current"),
    ("temperature", "battery_temperature"),
)


def stale_issue_id(entry_id: str) -> str:
    """The repair issue raised when a Sunny Island's battery source goes stale."""
    return f"battery_source_stale_{entry_id}"


def update_failed_issue_id(entry_id: str) -> str:
    """The repair issue raised while the BMS update fails (safe frames are on the wire)."""
    return f"bms_update_failed_{entry_id}"


def guard_issue_id(entry_id: str) -> str:
    """The repair issue raised while the sender's dead-man guard holds the frames safe."""
    return f"bms_guard_tripped_{entry_id}"


def missing_issue_id(entry_id: str, missing: str) -> str:
    """The repair issue raised while the source cannot give one protection (MissingData)."""
    return f"battery_data_missing_{missing}_{entry_id}"


def sign_issue_id(entry_id: str) -> str:
    """The repair issue raised while the source's current sign disagrees with the SI's."""
    return f"current_sign_mismatch_{entry_id}"


def store_key(entry_id: str) -> str:
    """Storage key of the charge state of one Sunny Island entry."""
    return f"{DOMAIN}.sunny_island.{entry_id}"


async def async_remove_store(hass: HomeAssistant, entry_id: str) -> None:
    """Delete the saved charge state of a removed entry (it would never be read again)."""
    await Store[dict[str, Any]](hass, STORE_VERSION, store_key(entry_id)).async_remove()


async def async_remove_entry(hass: HomeAssistant, entry: BridgeConfigEntry) -> None:
    """A removed Sunny Island entry leaves no charge history behind."""
    await async_remove_store(hass, entry.entry_id)


def guard_time_from_entry(entry: BridgeConfigEntry) -> float:
    """The dead-man guard time from the entry options; the default for anything unusable."""
    value = entry.options.get(CONF_GUARD_TIME, DEFAULT_GUARD_TIME)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return DEFAULT_GUARD_TIME
    return float(value) if 0.0 < value < 60.0 else DEFAULT_GUARD_TIME


def _sma_items(names: frozenset[str]) -> set[SmaAlarm]:
    items: set[SmaAlarm] = set()
    for name in names:
        try:
            items.add(SmaAlarm[name.upper()])
        except KeyError:
            items.add(SmaAlarm.GENERAL)
    return items


@dataclass(slots=True)
class SunnyIslandData:
    """What the Sunny Island reports and what this BMS decided, updated in place."""

    settings: ChargeSettings
    mode: ChargeMode
    si: dict[str, float | int | bool] = field(default_factory=dict)
    decision: ChargeDecision | None = None
    source_age: float | None = None
    grid_connected: bool | None = None
    bms_sending: bool = False
    update_failing: bool = False
    guard_tripped: bool = False
    first_frame_delay: float | None = None
    frames: dict[int, bytes] = field(default_factory=dict)
    rx_errors: int = 0
    energy: dict[str, EnergyIntegrator] = field(
        default_factory=lambda: {
            "grid": EnergyIntegrator(),
            "battery": EnergyIntegrator(),
            "load": EnergyIntegrator(),
        }
    )


def _create_simulator(bus: can.BusABC) -> SunnyIslandSimulator:
    """The built-in Sunny Island; with a short demo day its plant (sun, battery) runs faster.

    Only the plant: its BMS supervision (F952/W952) keeps real time. PV on its AC side follows
    the sun then, and the loads are kept light, so the night does not empty its battery.
    """
    scale = sun_time_scale()
    start = demo_start_time_of_day(scale)
    if start is None:
        return SunnyIslandSimulator(bus)
    simulator = SunnyIslandSimulator(
        bus, sun_time_scale=scale, start_time_of_day=start, pv_peak=SIMULATED_PV_PEAK
    )
    simulator.set_load(SIMULATED_LOAD)
    return simulator


def can_config_from_entry(entry: BridgeConfigEntry) -> CanConfig:
    """The CAN interface the entry was set up with (a private virtual bus when simulated)."""
    if entry.data.get(CONF_SIMULATED):
        return CanConfig(interface="virtual", channel=f"sma-victron-sim-{entry.entry_id}")
    return CanConfig(
        interface=entry.data[CONF_CAN_INTERFACE],
        channel=entry.data[CONF_CAN_CHANNEL],
        bitrate=int(entry.data.get(CONF_BITRATE, 500000)),
    )


class SunnyIslandRuntime(DeviceRuntime):
    """The BMS emulation for one Sunny Island system on one CAN bus."""

    platforms = (
        Platform.SENSOR,
        Platform.BINARY_SENSOR,
        Platform.NUMBER,
        Platform.SELECT,
        Platform.BUTTON,
    )

    def __init__(self, hass: HomeAssistant, entry: BridgeConfigEntry) -> None:
        """Prepare the controller from the entry; the bus opens in :meth:`async_start`."""
        super().__init__()
        self.hass = hass
        self.entry = entry
        settings = settings_from_entry(entry)
        mode = ChargeMode(entry.options.get(CONF_CHARGE_MODE, ChargeMode.AUTO))
        self.data = SunnyIslandData(settings=settings, mode=mode)
        self.controller = ChargeController(settings, mode=mode)
        self._coordinator = PushCoordinator(hass, name=entry.title, initial=self.data)
        self._source = self._build_source()
        self._store: Store[dict[str, Any]] = Store(hass, STORE_VERSION, store_key(entry.entry_id))
        self._saved_at = time.monotonic()
        self._link: CanLink | None = None
        self._simulator: SunnyIslandSimulator | None = None
        self._sim_bus: can.BusABC | None = None
        self._started_at = 0.0
        self._unsubs: list[Callable[[], None]] = []
        self._first_frames = asyncio.Event()
        self._first_task: asyncio.Task[None] | None = None
        self._refresh_handle: asyncio.TimerHandle | None = None
        self._grid_missing = 0
        self._si_battery_at: float | None = None
        self._stale_fields: frozenset[str] | None = None
        self._missing_raised: frozenset[str] = frozenset()
        self._sign_raised = False
        self._own_options_write = False
        self._stopped = False
        # A battery bank as the source: its limits cap every decision (one limiter per SI).
        self._bank_limiter = BankLimiter()
        self._bank: BankState | None = None

    # --- DeviceRuntime ---

    @property
    def coordinator(self) -> PushCoordinator[SunnyIslandData]:
        """The coordinator all entities listen to."""
        return self._coordinator

    @property
    def simulator(self) -> SunnyIslandSimulator | None:
        """The simulated Sunny Island of a simulated entry."""
        return self._simulator

    @property
    def link(self) -> CanLink | None:
        """The CAN link (None before start)."""
        return self._link

    @property
    def device_info(self) -> DeviceInfo:
        """The Sunny Island system as one device."""
        return DeviceInfo(
            identifiers={(DOMAIN, self.entry.unique_id or self.entry.entry_id)},
            manufacturer=MANUFACTURER_SMA,
            model="Sunny Island (external lithium BMS)",
            name=self.entry.title,
        )

    def descriptions(self, platform: Platform) -> Sequence[EntityDescription]:
        """Sunny Island entity descriptions for ``platform``."""
        return {
            Platform.SENSOR: SENSORS,
            Platform.BINARY_SENSOR: BINARY_SENSORS,
            Platform.NUMBER: NUMBERS,
            Platform.SELECT: SELECTS,
            Platform.BUTTON: BUTTONS,
        }.get(platform, ())

    def _build_source(self) -> BatterySource:
        data = self.entry.data
        if data.get(CONF_SOURCE) == SOURCE_ENTITIES:
            return EntitiesBatterySource(
                self.hass,
                EntityIds(
                    soc=data.get(CONF_SOURCE_SOC),
                    voltage=data.get(CONF_SOURCE_VOLTAGE),
                    current=data.get(CONF_SOURCE_CURRENT),
                    temperature=data.get(CONF_SOURCE_TEMPERATURE),
                ),
                required="soc",
                invert_current=bool(data.get(CONF_SOURCE_INVERT_CURRENT, False)),
            )
        return EntryBatterySource(self.hass, str(data[CONF_SOURCE]))

    async def async_start(self) -> None:
        """Restore the charge state, open the bus, and send frames once a snapshot exists."""
        await self._async_restore_state()
        config = can_config_from_entry(self.entry)
        if self.entry.data.get(CONF_SIMULATED):
            self._sim_bus = await self.hass.async_add_executor_job(
                lambda: can.Bus(interface="virtual", channel=config.channel)
            )
            self._simulator = _create_simulator(self._sim_bus)
            await self._simulator.start()
        self._link = CanLink(
            config,
            loop=self.hass.loop,
            on_frame=self._on_frame,
            on_state=self._on_link_state,
            guard_time=guard_time_from_entry(self.entry),
            on_guard=self._on_guard,
        )
        self._started_at = time.monotonic()
        try:
            await self._link.start()
        except CanLinkError as err:
            await self.async_shutdown()
            raise ConfigEntryNotReady(
                translation_domain=DOMAIN,
                translation_key="can_open_failed",
                translation_placeholders={"channel": config.channel, "error": str(err)},
            ) from err
        # The link is up once open; from here only the link says when it fails and returns
        # (the tick's own updates never claim the adapter works: see async_show_own_change).
        self._coordinator.async_set_link(True)
        self._unsubs.append(
            async_track_time_interval(self.hass, self._async_tick, TICK, name="sunny island bms")
        )
        self._first_task = self.entry.async_create_background_task(
            self.hass, self._async_first_frames(), "sunny island first frames"
        )
        async_shutdown_on_stop(self.hass, self.entry, self.async_shutdown)

    async def _async_restore_state(self) -> None:
        """Charge state and last full charge from the store: a restart in float stays in float.

        A store that cannot be read (damaged file, another version) starts from the defaults
        (bulk), which is the conservative side: a full battery then finishes absorption soon.
        """
        try:
            stored = await self._store.async_load()
        except Exception:  # a damaged store must not keep the BMS from starting
            _LOGGER.warning("%s: saved charge state unreadable, starting in bulk", self.entry.title)
            return
        if stored is None:
            return
        if not self.controller.restore_state(stored, time.monotonic(), time.time()):
            _LOGGER.warning("%s: saved charge state unusable, starting in bulk", self.entry.title)

    def _export_state(self) -> dict[str, Any]:
        return self.controller.export_state(time.monotonic(), time.time())

    async def _async_first_frames(self) -> None:
        """Tick quickly until the first frames are out, then leave it to the 1 s tick."""
        while not self._first_frames.is_set():
            self._tick()
            if self._first_frames.is_set():
                return
            await asyncio.sleep(FIRST_FRAME_POLL)

    async def _async_tick(self, _now: object = None) -> None:
        self._tick()

    @callback
    def _tick(self) -> None:
        """One BMS update; any error in it puts safe frames on the wire (invariant 7)."""
        if self._stopped or self._link is None:
            return
        try:
            self._update(self._link)
        except Exception as err:  # whatever failed, the SI must not keep old limits
            self._on_update_error(err)
        else:
            if self.data.update_failing:
                self._on_update_recovered()
        if self._simulator is not None:
            self._share_simulated_battery(self._simulator)

    def _share_simulated_battery(self, simulator: SunnyIslandSimulator) -> None:
        """A simulated SI fed by a simulated BMS: both measure the one battery the SI drives.

        The simulated Sunny Island decides what flows (PV, load, the limits it accepted); the
        simulated BMS is handed that current, so the two report the same battery, as real ones
        do. Two unrelated simulated days would disagree and raise the sign-mismatch warning.
        """
        source_id = self.entry.data.get(CONF_SOURCE)
        if source_id is None or source_id == SOURCE_ENTITIES:
            return
        entry = self.hass.config_entries.async_get_entry(str(source_id))
        if (
            entry is None
            or entry.domain != DOMAIN
            or not entry.data.get(CONF_SIMULATED)
            or entry.state is not ConfigEntryState.LOADED
        ):
            return
        follower = getattr(entry.runtime_data, "simulator", None)
        if isinstance(follower, CurrentFollower):
            follower.follow_current(simulator.battery.current)

    def _update(self, link: CanLink) -> None:
        now = time.monotonic()
        bank = self._bank_state(now)
        snapshot = self._merged_snapshot(now)
        decision = self.controller.update(
            snapshot,
            now,
            grid_connected=self.data.grid_connected,
            si_current=self._si_value("battery_current", now),
        )
        if bank is not None:
            decision = self._bank_limiter.apply(decision, bank, now, self.data.settings)
        self.data.decision = decision
        self.data.source_age = None if snapshot is None else snapshot.age(now)
        for event in decision.events:
            _LOGGER.info("%s: %s", self.entry.title, event.value.replace("_", " "))
        self._update_issues(decision)
        if decision.soc is not None:
            frames = self._frames(decision, snapshot)
            link.send_bms(frames)
            self.data.frames = frames
            self.data.bms_sending = True
            if not self._first_frames.is_set():
                self._first_frames.set()
                self.data.first_frame_delay = round(now - self._started_at, 3)
                _LOGGER.info(
                    "%s: first BMS frames sent %.2f s after setup",
                    self.entry.title,
                    self.data.first_frame_delay,
                )
        # At once on a charge event (float reached, absorption done), else once a minute. (Asking
        # the store for a delayed save every tick would push that save back forever.)
        if decision.events or now - self._saved_at >= STORE_SAVE_DELAY:
            self._saved_at = now
            self._store.async_delay_save(self._export_state)
        self._coordinator.async_show_own_change()

    def _bank_state(self, now: float) -> BankState | None:
        """The battery bank feeding this Sunny Island, combined now; None for other sources.

        The bank's snapshot (what the controller runs on) follows this state. While the bank
        entry reloads, its last state keeps capping what is sent.
        """
        source_id = self.entry.data.get(CONF_SOURCE)
        if source_id is None or source_id == SOURCE_ENTITIES:
            return None
        entry = self.hass.config_entries.async_get_entry(str(source_id))
        if entry is None or not is_bank_entry(entry):
            return None
        if entry.state is ConfigEntryState.LOADED:
            state_at = getattr(entry.runtime_data, "state_at", None)
            if state_at is not None:
                self._bank = state_at(now)
        return self._bank

    def _on_update_error(self, err: Exception) -> None:
        """Safe frames now (from the bytes last sent, not re-encoded); reported once per streak."""
        sent_safe = False
        if self.data.frames and self._link is not None:
            try:
                safe = safe_bms_frames(self.data.frames)
                self._link.send_bms(safe)
            except Exception:  # the dead-man guard still takes over
                _LOGGER.debug("%s: safe frames not accepted", self.entry.title, exc_info=True)
            else:
                self.data.frames = safe
                sent_safe = True
        if not self.data.update_failing:
            self.data.update_failing = True
            _LOGGER.error(
                "%s: BMS update failed (%s: %s); %s",
                self.entry.title,
                type(err).__name__,
                err,
                "safe frames sent (no charging, SOC held)"
                if sent_safe
                else "no frames were sent yet",
            )
            _LOGGER.debug("%s: BMS update failure", self.entry.title, exc_info=err)
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                update_failed_issue_id(self.entry.entry_id),
                is_fixable=False,
                severity=ir.IssueSeverity.ERROR,
                translation_key="bms_update_failed",
                translation_placeholders={
                    "name": self.entry.title,
                    "error": f"{type(err).__name__}: {err}",
                },
            )
        with contextlib.suppress(Exception):
            self._coordinator.async_show_own_change()

    def _on_update_recovered(self) -> None:
        self.data.update_failing = False
        _LOGGER.info("%s: BMS update works again", self.entry.title)
        ir.async_delete_issue(self.hass, DOMAIN, update_failed_issue_id(self.entry.entry_id))
        self._coordinator.async_show_own_change()

    @callback
    def _on_guard(self, tripped: bool) -> None:
        """The sender's dead-man guard switched the frames to safe ones (or fresh ones back)."""
        if self._stopped:
            return
        self.data.guard_tripped = tripped
        issue_id = guard_issue_id(self.entry.entry_id)
        if tripped:
            guard_time = self._link.guard_time if self._link is not None else DEFAULT_GUARD_TIME
            _LOGGER.warning(
                "%s: no BMS update for %g s (event loop blocked or update stuck); the frames "
                "were switched to safe ones (no charging, SOC held)",
                self.entry.title,
                guard_time,
            )
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                issue_id,
                is_fixable=False,
                severity=ir.IssueSeverity.ERROR,
                translation_key="bms_guard_tripped",
                translation_placeholders={"name": self.entry.title, "seconds": f"{guard_time:g}"},
            )
        else:
            _LOGGER.info("%s: BMS updates reach the frames again", self.entry.title)
            ir.async_delete_issue(self.hass, DOMAIN, issue_id)
        self._coordinator.async_show_own_change()

    def _si_value(self, key: str, now: float) -> float | None:
        """One of the SI's 0x305 battery values, None when 0x305 is older than a few seconds."""
        at = self._si_battery_at
        value = self.data.si.get(key)
        if at is None or value is None or now - at > SI_MEASUREMENT_MAX_AGE:
            return None
        return float(value)

    def _merged_snapshot(self, now: float) -> BatterySnapshot | None:
        """The source's snapshot (sanitised), with the SI's fresh measurement filling gaps.

        A filled field is dated by the SI's frame, so it goes stale with the SI, not the source.
        A source sensor that reads nonsense (an open NTC at -273 °C) counts as a gap.
        """
        raw = self._source.snapshot()
        if raw is None:
            return None
        snapshot = raw.sanitized(cells=self.data.settings.cells)
        at = self._si_battery_at
        fills: dict[str, Any] = {}
        times = dict(snapshot.field_times)
        for name, key in _SI_FILL:
            present = (
                snapshot.all_temperatures if name == "temperature" else getattr(snapshot, name)
            )
            if present is not None and present != ():
                continue
            value = self._si_value(key, now)
            if value is None or at is None:
                continue
            fills[name] = value
            times[name] = at
        if not fills:
            return snapshot
        return replace(snapshot, **fills, field_times=times).sanitized(
            cells=self.data.settings.cells
        )

    def _frames(
        self, decision: ChargeDecision, snapshot: BatterySnapshot | None
    ) -> dict[int, bytes]:
        # Every evaluated item goes out as "arrives" or "leaves" in every frame (invariant 8).
        state = BmsFrameState(
            charge_voltage=decision.charge_voltage,
            charge_current_limit=decision.charge_current_limit,
            discharge_current_limit=decision.discharge_current_limit,
            discharge_voltage=decision.discharge_voltage,
            soc=decision.soc if decision.soc is not None else 0.0,
            soh=snapshot.soh if snapshot is not None and snapshot.soh is not None else 100.0,
            voltage=None if snapshot is None else snapshot.voltage,
            current=None if snapshot is None else snapshot.current,
            temperature=None if snapshot is None else snapshot.temperature,
            alarms=encode_alarm_bits(_sma_items(decision.alarms)),
            warnings=encode_alarm_bits(_sma_items(decision.warnings)),
            manufacturer=MANUFACTURER_NAME,
            capacity_ah=round(self.data.settings.capacity_ah),
        )
        return encode_bms_frames(state)

    def _update_issues(self, decision: ChargeDecision) -> None:
        self._update_stale_issue(decision)
        # Before the first reading everything counts as missing: nothing to tell yet.
        if self._first_frames.is_set() or decision.soc is not None:
            self._update_missing_issues(decision.missing)
        self._update_sign_issue(decision.current_sign_mismatch)

    def _update_stale_issue(self, decision: ChargeDecision) -> None:
        fields = decision.stale_fields if decision.stale else None
        if fields == self._stale_fields:
            return
        if fields is not None:
            if self._stale_fields is None:
                _LOGGER.warning(
                    "%s: battery source %s is stale%s; charging is stopped until it reports again",
                    self.entry.title,
                    self._source.name,
                    f" ({', '.join(sorted(fields))})" if fields else "",
                )
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                stale_issue_id(self.entry.entry_id),
                is_fixable=False,
                severity=ir.IssueSeverity.ERROR,
                translation_key="battery_source_stale",
                translation_placeholders={
                    "name": self.entry.title,
                    "source": self._source.name,
                    "seconds": f"{self.data.settings.stale_after:g}",
                    "fields": ", ".join(sorted(fields)) if fields else "any reading",
                },
            )
        else:
            _LOGGER.info(
                "%s: battery source %s is fresh again", self.entry.title, self._source.name
            )
            ir.async_delete_issue(self.hass, DOMAIN, stale_issue_id(self.entry.entry_id))
        self._stale_fields = fields

    def _update_missing_issues(self, missing: frozenset[str]) -> None:
        """One issue per protection the source cannot give (invariant 9: nothing unnoticed)."""
        if missing == self._missing_raised:
            return
        settings = self.data.settings
        for item in sorted(missing - self._missing_raised):
            _LOGGER.warning(
                "%s: battery source %s gives no %s", self.entry.title, self._source.name, item
            )
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                missing_issue_id(self.entry.entry_id, item),
                is_fixable=False,
                severity=ir.IssueSeverity.WARNING,
                translation_key=f"battery_data_missing_{item}",
                translation_placeholders={
                    "name": self.entry.title,
                    "source": self._source.name,
                    "cell_voltage": f"{settings.cell_absorption_voltage_without_cells:g}",
                    "pack_voltage": f"{settings.absorption_voltage_without_cells:.2f}",
                    "seconds": f"{settings.stale_after:g}",
                },
            )
        for item in self._missing_raised - missing:
            _LOGGER.info(
                "%s: battery source %s gives %s again", self.entry.title, self._source.name, item
            )
            ir.async_delete_issue(self.hass, DOMAIN, missing_issue_id(self.entry.entry_id, item))
        self._missing_raised = missing

    def _update_sign_issue(self, mismatch: bool) -> None:
        if mismatch == self._sign_raised:
            return
        self._sign_raised = mismatch
        issue_id = sign_issue_id(self.entry.entry_id)
        if not mismatch:
            ir.async_delete_issue(self.hass, DOMAIN, issue_id)
            return
        _LOGGER.warning(
            "%s: the current of %s has the opposite sign of the Sunny Island's own measurement",
            self.entry.title,
            self._source.name,
        )
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            issue_id,
            is_fixable=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key="current_sign_mismatch",
            translation_placeholders={"name": self.entry.title, "source": self._source.name},
        )

    def _clear_issues(self, missing: Iterable[str] = tuple(MissingData)) -> None:
        entry_id = self.entry.entry_id
        for issue_id in (
            stale_issue_id(entry_id),
            update_failed_issue_id(entry_id),
            guard_issue_id(entry_id),
            sign_issue_id(entry_id),
            *(missing_issue_id(entry_id, item) for item in missing),
        ):
            ir.async_delete_issue(self.hass, DOMAIN, issue_id)

    # --- Sunny Island traffic ---

    @callback
    def _on_frame(self, arbitration_id: int, payload: bytes, _timestamp: float) -> None:
        try:
            values = decode_si_frame(arbitration_id, payload)
        except ProtocolError as err:
            self.data.rx_errors += 1
            _LOGGER.debug("Undecodable frame 0x%03X: %s", arbitration_id, err)
            return
        if not values:
            return
        self.data.si.update(values)
        now = time.monotonic()
        if arbitration_id == 0x300:
            total = sum(float(values.get(f"external_power_l{n}", 0.0)) for n in (1, 2, 3))
            self.data.energy["grid"].add(now, total)
        elif arbitration_id == ID_BATTERY:
            self._si_battery_at = now
            voltage, current = values.get("battery_voltage"), values.get("battery_current")
            if voltage is not None and current is not None:
                self.data.energy["battery"].add(now, float(voltage) * float(current))
        elif arbitration_id == 0x308:
            self.data.energy["load"].add(now, max(0.0, float(values.get("load_power", 0.0))))
        elif arbitration_id == 0x307:
            self._debounce_grid(bool(values.get("grid_connected")))
        self._schedule_refresh()

    def _debounce_grid(self, connected: bool) -> None:
        if connected:
            self._grid_missing = 0
            self.data.grid_connected = True
            return
        self._grid_missing += 1
        if self._grid_missing >= GRID_LOSS_FRAMES or self.data.grid_connected is None:
            self.data.grid_connected = False

    def _schedule_refresh(self) -> None:
        if self._refresh_handle is None and not self._stopped:
            self._refresh_handle = self.hass.loop.call_later(
                ENTITY_REFRESH_DELAY, self._refresh_entities
            )

    @callback
    def _refresh_entities(self) -> None:
        self._refresh_handle = None
        self._coordinator.async_show_own_change()

    @callback
    def _on_link_state(self, up: bool, reason: str | None) -> None:
        if self._stopped:
            return
        self._coordinator.async_set_link(up, reason)

    # --- settings, live ---

    async def async_set_setting(self, name: str, value: float) -> None:
        """Change one charge setting at once (validated against the chemistry's bounds)."""
        current = getattr(self.data.settings, name)
        typed: float | int = int(value) if isinstance(current, int) else float(value)
        try:
            settings = self.data.settings.replace(**{name: typed})
        except UnsafeSetting as err:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="unsafe_setting",
                translation_placeholders={"setting": err.field, "error": str(err)},
            ) from err
        self.apply_settings(settings)
        self._persist({name: typed})

    async def async_set_mode(self, mode: ChargeMode) -> None:
        """Switch between automatic charging and the manual modes."""
        self.controller.set_mode(mode)
        self.data.mode = mode
        self._persist({CONF_CHARGE_MODE: mode.value})
        self._tick()

    def request_full_charge(self) -> None:
        """Start a full charge (absorption) now, for balancing."""
        self.controller.request_full_charge()
        self._tick()

    def apply_settings(self, settings: ChargeSettings) -> None:
        """Use these (already validated) settings from the next update on, which runs now."""
        self.controller.settings = settings
        self.data.settings = settings
        self._tick()

    def _persist(self, changes: Mapping[str, Any]) -> None:
        self._own_options_write = True
        try:
            self.hass.config_entries.async_update_entry(
                self.entry, options={**self.entry.options, **changes}
            )
        finally:
            self._own_options_write = False

    async def async_apply_options(self) -> bool:
        """Options changed (options flow or our own write): apply live, never reload."""
        if self._own_options_write:
            return True
        if self._link is not None:
            self._link.guard_time = guard_time_from_entry(self.entry)
        settings = settings_from_entry(self.entry)
        self.apply_settings(settings)
        mode = ChargeMode(self.entry.options.get(CONF_CHARGE_MODE, ChargeMode.AUTO))
        if mode is not self.data.mode:
            self.controller.set_mode(mode)
            self.data.mode = mode
        return True

    # --- shutdown ---

    async def async_shutdown(self) -> None:
        """Send the last state, then stop the frames, the bus and the simulator."""
        if self._stopped:
            return
        self._stopped = True
        for unsub in self._unsubs:
            unsub()
        self._unsubs.clear()
        if self._refresh_handle is not None:
            self._refresh_handle.cancel()
            self._refresh_handle = None
        if self._first_task is not None and not self._first_task.done():
            self._first_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._first_task
        if self._link is not None:
            # CCL through 1 A to 0 A with SOC held, confirmed on the wire, then silence: the SI
            # keeps the last accepted values, so they must be ones that do not charge.
            await self._link.send_final_and_stop()
        self.data.bms_sending = False
        try:
            await self._store.async_save(self._export_state())
        except Exception:  # a full disk must not keep the bus open
            _LOGGER.warning("%s: charge state not saved", self.entry.title, exc_info=True)
        if self._simulator is not None:
            await self._simulator.stop()
        if self._sim_bus is not None:
            await self.hass.async_add_executor_job(self._sim_bus.shutdown)
        self._clear_issues()

    def diagnostics(self) -> Mapping[str, Any]:
        """Decisions, frames, link statistics and settings."""
        decision = self.data.decision
        link = self._link
        return {
            "settings": self.data.settings.to_dict(),
            "mode": self.data.mode.value,
            "source": self._source.name,
            "source_age": self.data.source_age,
            "decision": None if decision is None else repr(decision),
            "frames": {f"0x{key:03X}": value.hex() for key, value in self.data.frames.items()},
            "si": dict(self.data.si),
            "first_frame_delay": self.data.first_frame_delay,
            "rx_errors": self.data.rx_errors,
            "update_failing": self.data.update_failing,
            "charge_state_saved": self.controller.export_state(time.monotonic(), time.time()),
            "link": None
            if link is None
            else {
                "connected": link.connected,
                "rx_frames": link.rx_frames,
                "error_frames": link.error_frames,
                "bms_running": link.bms_running,
                "guard_time": link.guard_time,
                "guard_tripped": link.guard_tripped,
                "guard_trips": link.guard_trips,
            },
            "simulated": self._simulator is not None,
            # Per BMS id, what the simulated SI received (bus timestamps, s): a soak run proves
            # from this that no frame came late (invariant 1) or too fast (invariant 2).
            "simulator_received": None
            if self._simulator is None
            else {
                f"0x{frame_id:03X}": {
                    "count": len(stamps),
                    "max_gap": max(gaps, default=None),
                    "min_gap": min(gaps, default=None),
                    "since_last": time.time() - stamps[-1] if stamps else None,
                }
                for frame_id, stamps in self._simulator.received.items()
                for gaps in (self._simulator.periods(frame_id),)
            },
        }


async def async_probe_si(hass: HomeAssistant, config: CanConfig, wait: float = 5.0) -> None:
    """Open the bus and wait for the Sunny Island's own broadcasts; raise ProbeError."""
    from ..base import ProbeError

    heard = asyncio.Event()

    def on_frame(arbitration_id: int, _payload: bytes, _timestamp: float) -> None:
        if arbitration_id in SI_FRAME_IDS:
            heard.set()

    link = CanLink(config, loop=hass.loop, on_frame=on_frame, on_state=lambda _up, _why: None)
    try:
        await link.start()
    except CanLinkError as err:
        raise ProbeError("cannot_open") from err
    try:
        async with asyncio.timeout(wait):
            await heard.wait()
    except TimeoutError as err:
        raise ProbeError("no_si_traffic") from err
    finally:
        await link.close()


__all__ = ["CanConfig", "SunnyIslandRuntime", "async_probe_si"]
