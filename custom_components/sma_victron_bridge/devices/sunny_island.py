"""Sunny Island device kind: this entry is the lithium BMS the Sunny Island obeys.

Every second the runtime takes the latest battery snapshot from its source (another entry or HA
entities, with the Sunny Island's own battery measurement filling gaps), runs the charge state
machine, and updates the BMS frames that python-can's periodic tasks keep sending — in the kernel
on socketcan, in a thread elsewhere — so the frames flow even while the event loop stalls, the
source reloads or the settings change (settings apply live, the entry never reloads for them).
The Sunny Island's own broadcasts become sensors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
import contextlib
from dataclasses import dataclass, field, replace
from datetime import timedelta
import logging
import time
from typing import Any

import can
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryNotReady, ServiceValidationError
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.event import async_track_time_interval

from ..const import (
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
from ..control.charge import ChargeController, ChargeDecision, ChargeMode
from ..control.chemistry import ChargeSettings, UnsafeSetting
from ..control.energy import EnergyIntegrator
from ..control.snapshot import BatterySnapshot
from ..protocols import ProtocolError
from ..protocols.can_link import CanConfig, CanLink, CanLinkError
from ..protocols.sma_can import (
    SI_FRAME_IDS,
    AlarmItem as SmaAlarm,
    BmsFrameState,
    decode_si_frame,
    encode_alarm_bits,
    encode_bms_frames,
)
from ..runtime import BridgeConfigEntry
from ..simulators.day_clock import demo_start_time_of_day
from ..simulators.sunny_island import SunnyIslandSimulator
from .base import DeviceRuntime, PushCoordinator, async_shutdown_on_stop
from .battery_source import BatterySource, EntitiesBatterySource, EntityIds, EntryBatterySource
from .charge_settings import settings_from_entry
from .simulation import sun_time_scale
from .sunny_island_entities import BINARY_SENSORS, BUTTONS, NUMBERS, SELECTS, SENSORS

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


def stale_issue_id(entry_id: str) -> str:
    """The repair issue raised when a Sunny Island's battery source goes stale."""
    return f"battery_source_stale_{entry_id}"


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
        self._link: CanLink | None = None
        self._simulator: SunnyIslandSimulator | None = None
        self._sim_bus: can.BusABC | None = None
        self._started_at = 0.0
        self._unsubs: list[Callable[[], None]] = []
        self._first_frames = asyncio.Event()
        self._first_task: asyncio.Task[None] | None = None
        self._refresh_handle: asyncio.TimerHandle | None = None
        self._grid_missing = 0
        self._alarms: set[SmaAlarm] = set()
        self._warnings: set[SmaAlarm] = set()
        self._issue_raised = False
        self._own_options_write = False
        self._stopped = False

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
            )
        return EntryBatterySource(self.hass, str(data[CONF_SOURCE]))

    async def async_start(self) -> None:
        """Open the bus, start listening, and send frames as soon as a fresh snapshot exists."""
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
        self._unsubs.append(
            async_track_time_interval(self.hass, self._async_tick, TICK, name="sunny island bms")
        )
        self._first_task = self.entry.async_create_background_task(
            self.hass, self._async_first_frames(), "sunny island first frames"
        )
        async_shutdown_on_stop(self.hass, self.entry, self.async_shutdown)

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
        if self._stopped or self._link is None:
            return
        now = time.monotonic()
        snapshot = self._merged_snapshot()
        decision = self.controller.update(snapshot, now)
        self.data.decision = decision
        self.data.source_age = None if snapshot is None else snapshot.age(now)
        for event in decision.events:
            _LOGGER.info("%s: %s", self.entry.title, event.value.replace("_", " "))
        self._update_issue(decision)
        if decision.soc is not None:
            self.data.frames = self._frames(decision, snapshot)
            self._link.send_bms(self.data.frames)
            self.data.bms_sending = True
            if not self._first_frames.is_set():
                self._first_frames.set()
                self.data.first_frame_delay = round(now - self._started_at, 3)
                _LOGGER.info(
                    "%s: first BMS frames sent %.2f s after setup",
                    self.entry.title,
                    self.data.first_frame_delay,
                )
        self._coordinator.async_set_updated_data(self.data)

    def _merged_snapshot(self) -> BatterySnapshot | None:
        """The source's snapshot, with the Sunny Island's own measurement filling gaps."""
        snapshot = self._source.snapshot()
        if snapshot is None:
            return None
        si = self.data.si

        def si_value(key: str) -> float | None:
            value = si.get(key)
            return None if value is None else float(value)

        return replace(
            snapshot,
            voltage=snapshot.voltage
            if snapshot.voltage is not None
            else si_value("battery_voltage"),
            current=snapshot.current
            if snapshot.current is not None
            else si_value("battery_current"),
            temperature=snapshot.temperature
            if snapshot.temperature is not None
            else si_value("battery_temperature"),
        )

    def _frames(
        self, decision: ChargeDecision, snapshot: BatterySnapshot | None
    ) -> dict[int, bytes]:
        alarms = _sma_items(decision.alarms)
        warnings = _sma_items(decision.warnings)
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
            alarms=encode_alarm_bits(alarms, self._alarms),
            warnings=encode_alarm_bits(warnings, self._warnings),
            manufacturer=MANUFACTURER_NAME,
            capacity_ah=round(self.data.settings.capacity_ah),
        )
        self._alarms, self._warnings = alarms, warnings
        return encode_bms_frames(state)

    def _update_issue(self, decision: ChargeDecision) -> None:
        if decision.stale and not self._issue_raised:
            _LOGGER.warning(
                "%s: battery source %s is stale; charging is stopped until it reports again",
                self.entry.title,
                self._source.name,
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
                },
            )
            self._issue_raised = True
        elif not decision.stale and self._issue_raised:
            _LOGGER.info(
                "%s: battery source %s is fresh again", self.entry.title, self._source.name
            )
            ir.async_delete_issue(self.hass, DOMAIN, stale_issue_id(self.entry.entry_id))
            self._issue_raised = False

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
        elif arbitration_id == 0x305:
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
        self._coordinator.async_set_updated_data(self.data)

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
        self._apply_settings(settings)
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

    def _apply_settings(self, settings: ChargeSettings) -> None:
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
        settings = settings_from_entry(self.entry)
        self._apply_settings(settings)
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
            await self._link.send_final_and_stop(self.data.frames or None)
        self.data.bms_sending = False
        if self._simulator is not None:
            await self._simulator.stop()
        if self._sim_bus is not None:
            await self.hass.async_add_executor_job(self._sim_bus.shutdown)
        ir.async_delete_issue(self.hass, DOMAIN, stale_issue_id(self.entry.entry_id))

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
            "link": None
            if link is None
            else {
                "connected": link.connected,
                "rx_frames": link.rx_frames,
                "error_frames": link.error_frames,
                "bms_running": link.bms_running,
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
    from .vedirect import ProbeError

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
