"""The review's failure scenarios, each judged where it matters: at the simulated Sunny Island.

What counts is what the SI accepted (its working CCL, CVL, SOC) and whether it is in fault, not
what our own sensors say. The parts are real: the simulated SI on a python-can virtual bus, the
simulated JBD BMS on a PTY set up as its own entry, or Home Assistant sensors written with
``hass.states.async_set`` (a feeder keeps them reporting like a live sensor does). The only
stand-in is the exception injected into the controller in the fail-safe test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
import contextlib
import time
from typing import Any

import can
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.sma_victron_bridge.const import DOMAIN
from custom_components.sma_victron_bridge.control.charge import ChargeState
from custom_components.sma_victron_bridge.devices.sunny_island import runtime as sunny_island_device
from custom_components.sma_victron_bridge.devices.sunny_island.runtime import (
    guard_issue_id,
    missing_issue_id,
    sign_issue_id,
    store_key,
    update_failed_issue_id,
)
from custom_components.sma_victron_bridge.protocols.sma_can import MIN_PERIOD, AlarmItem
from custom_components.sma_victron_bridge.simulators.bms import JbdSimulator
from custom_components.sma_victron_bridge.simulators.sunny_island import SunnyIslandSimulator

from .test_serial_bms import CELLS
from .test_sunny_island import LIMITS, SOC, si_entry, start_si
from .test_vedirect import state_value

SI = "sensor.sunny_island"
SOC_ENTITY = "sensor.house_battery_soc"
VOLTAGE_ENTITY = "sensor.house_battery_voltage"
TEMPERATURE_ENTITY = "sensor.house_battery_temperature"
CURRENT_ENTITY = "sensor.house_battery_current"
ENTITY_SOURCE = {
    "source_soc_entity": SOC_ENTITY,
    "source_voltage_entity": VOLTAGE_ENTITY,
    "source_temperature_entity": TEMPERATURE_ENTITY,
    "source_current_entity": CURRENT_ENTITY,
}
UNITS = {SOC_ENTITY: "%", VOLTAGE_ENTITY: "V", TEMPERATURE_ENTITY: "°C", CURRENT_ENTITY: "A"}
# Generous limits: the suite shares two cores with other work.
SETTLE = 15.0


class Feeder:
    """Keeps Home Assistant sensors reporting every half second, as live sensors do.

    A value of None leaves that sensor alone (frozen: its last report ages); a string is written
    as is ("nan", "unknown").
    """

    def __init__(self, hass: HomeAssistant, values: dict[str, float | str | None]) -> None:
        self.hass = hass
        self.values = values
        self._task: asyncio.Task[None] | None = None

    def write(self) -> None:
        for entity_id, value in self.values.items():
            if value is not None:
                self.hass.states.async_set(
                    entity_id, str(value), {"unit_of_measurement": UNITS.get(entity_id, "")}
                )

    async def _run(self) -> None:
        while True:
            self.write()
            await asyncio.sleep(0.5)

    def start(self) -> None:
        self.write()
        self._task = self.hass.loop.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@pytest.fixture
async def feeder(hass: HomeAssistant) -> AsyncGenerator[Feeder]:
    """A healthy battery on HA sensors: 60 %, 53.0 V, 20 °C, charging at 5 A."""
    feed = Feeder(
        hass,
        {SOC_ENTITY: 60.0, VOLTAGE_ENTITY: 53.0, TEMPERATURE_ENTITY: 20.0, CURRENT_ENTITY: 5.0},
    )
    feed.start()
    yield feed
    await feed.stop()


@pytest.fixture
async def jbd_sim() -> AsyncGenerator[JbdSimulator]:
    """A frozen 16s JBD pack at 64 % with two healthy temperature sensors."""
    sim = JbdSimulator(cells=16, capacity_ah=280.0, frozen=True, seed=5)
    sim.cell_voltages = list(CELLS)
    sim.current = 10.0
    sim.soc = 64.0
    sim.temperatures = [25.0, 24.0]
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def bms(hass: HomeAssistant, jbd_sim: JbdSimulator) -> AsyncGenerator[MockConfigEntry]:
    """The JBD pack as its own entry (polled fast), the Sunny Island's battery source."""
    from .test_serial_bms import bms_entry

    entry = bms_entry(jbd_sim, "jbd")
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    yield entry
    if entry.state is ConfigEntryState.LOADED:
        assert await hass.config_entries.async_unload(entry.entry_id)


def issue(hass: HomeAssistant, issue_id: str) -> ir.IssueEntry | None:
    return ir.async_get(hass).async_get_issue(DOMAIN, issue_id)


def runtime_of(entry: MockConfigEntry) -> Any:
    return entry.runtime_data


async def until(predicate: Callable[[], bool], limit: float = SETTLE) -> None:
    """Poll ``predicate`` (10 ms steps) until it holds; fail after ``limit`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def sent_ccl(sim: SunnyIslandSimulator, since: float = 0.0) -> list[tuple[float, float]]:
    """(bus time, CCL) of every 0x351 the SI received after ``since`` (wall time)."""
    return [
        (stamp, float(value))
        for stamp, value in sim.sent_values(LIMITS, "charge_current_limit")
        if stamp >= since and isinstance(value, int | float)
    ]


async def unload(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    if entry.state is ConfigEntryState.LOADED:
        assert await hass.config_entries.async_unload(entry.entry_id)


@contextlib.asynccontextmanager
async def watcher(channel: str) -> AsyncGenerator[SunnyIslandSimulator]:
    """A simulated SI of its own on ``channel``: it outlives the entries that talk to it."""
    bus = can.Bus(interface="virtual", channel=channel)
    sim = SunnyIslandSimulator(bus)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()
        bus.shutdown()


def bus_entry(
    source: str, channel: str, unique: str, options: dict[str, Any] | None = None
) -> MockConfigEntry:
    """A Sunny Island entry on a named virtual channel (so an outside SI hears every entry)."""
    entry = si_entry(source, options)
    return MockConfigEntry(
        domain=DOMAIN,
        title="Sunny Island",
        unique_id=f"sunny_island:{unique}",
        data={**entry.data, "simulated": False, "can_channel": channel},
        options=options or {},
    )


# --- 1. fail safe, never frozen ---------------------------------------------------------------


async def test_nan_voltage_and_a_stale_cold_battery_keep_ccl_zero(
    hass: HomeAssistant, feeder: Feeder
) -> None:
    entry = si_entry("entities", {"stale_after": 5, "ramp_rate": 100}, **ENTITY_SOURCE)
    sim = await start_si(hass, entry)
    await until(lambda: sim.accepted_ccl > 5)
    feeder.values[TEMPERATURE_ENTITY] = -5.0
    await until(lambda: sim.accepted_ccl == 0.0)
    cut = time.time()
    # The voltage sensor breaks, the temperature sensor stops reporting (last value -5 °C).
    feeder.values[VOLTAGE_ENTITY] = "nan"
    feeder.values[TEMPERATURE_ENTITY] = None
    await asyncio.sleep(9)
    assert sent_ccl(sim, cut), "frames stopped"
    assert all(ccl == 0.0 for _, ccl in sent_ccl(sim, cut))
    assert sim.accepted_ccl == 0.0
    assert not sim.in_fault
    assert state_value(hass, "binary_sensor.sunny_island_bms_frames_in_safe_mode") == "off"
    await unload(hass, entry)


async def test_error_in_the_update_sends_safe_frames_at_once(
    hass: HomeAssistant, bms: MockConfigEntry, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = si_entry(bms.entry_id, {"ramp_rate": 100})
    sim = await start_si(hass, entry)
    await until(lambda: sim.accepted_ccl > 5)
    soc = sim.accepted_soc
    controller = runtime_of(entry).controller

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("injected")

    broken_at = time.time()
    monkeypatch.setattr(controller, "update", broken)
    await until(lambda: sim.accepted_ccl == 0.0)
    first_zero = next(stamp for stamp, ccl in sent_ccl(sim, broken_at) if ccl == 0.0)
    # One tick (1 s) to notice, one frame period (1 s) to reach the wire.
    assert first_zero - broken_at <= 2.3
    assert sim.accepted_soc == soc  # held
    await until(lambda: AlarmItem.BMS_INTERNAL in sim.active_warnings)
    assert not sim.in_fault
    await until(lambda: issue(hass, update_failed_issue_id(entry.entry_id)) is not None)
    safe_mode = "binary_sensor.sunny_island_bms_frames_in_safe_mode"
    assert state_value(hass, safe_mode) == "on"
    # It stays safe while the error lasts: no frame brings the old limit back.
    await asyncio.sleep(3)
    assert all(ccl == 0.0 for stamp, ccl in sent_ccl(sim, first_zero))
    monkeypatch.undo()
    await until(lambda: issue(hass, update_failed_issue_id(entry.entry_id)) is None)
    await until(lambda: state_value(hass, safe_mode) == "off")
    await until(lambda: AlarmItem.BMS_INTERNAL not in sim.active_warnings)
    await unload(hass, entry)


async def test_blocked_event_loop_turns_the_frames_safe_by_themselves(
    hass: HomeAssistant, bms: MockConfigEntry
) -> None:
    entry = si_entry(bms.entry_id, {"ramp_rate": 100, "guard_time": 3})
    sim = await start_si(hass, entry)
    await until(lambda: sim.accepted_ccl > 5)
    await asyncio.sleep(1.2)
    blocked = time.time()
    time.sleep(6.0)  # noqa: ASYNC251 - the point: the event loop stalls
    resumed = time.time()
    await asyncio.sleep(0.5)  # the simulator judges the queued frames on the loop
    during = sent_ccl(sim, blocked)
    zeros = [stamp for stamp, ccl in during if ccl == 0.0 and stamp < resumed]
    assert zeros, during
    # Guard time, plus a frame period to reach the wire.
    assert zeros[0] - blocked <= 3.0 + 1.5
    runtime = runtime_of(entry)
    assert runtime.link.guard_trips >= 1
    # Normal frames come back with the loop.
    await until(lambda: sim.accepted_ccl > 5)
    assert issue(hass, guard_issue_id(entry.entry_id)) is None
    await unload(hass, entry)


# --- 2. every temperature sensor counts ----------------------------------------------------


async def test_coldest_jbd_sensor_stops_charging_and_an_open_one_is_ignored(
    hass: HomeAssistant, bms: MockConfigEntry, jbd_sim: JbdSimulator
) -> None:
    entry = si_entry(bms.entry_id, {"ramp_rate": 100, "recovery_hold": 1})
    sim = await start_si(hass, entry)
    await until(lambda: sim.accepted_ccl > 5)
    jbd_sim.temperatures = [-6.0, 3.0]
    await until(lambda: sim.accepted_ccl == 0.0)
    assert state_value(hass, f"{SI}_charge_limited_by") == "temperature"
    # An open NTC (-273 °C) next to valid sensors is no reading: charging comes back, no fault.
    jbd_sim.temperatures = [-273.0, 25.0]
    await until(lambda: sim.accepted_ccl > 5)
    assert not sim.in_fault
    assert sim.active_alarms == set()
    await unload(hass, entry)


# --- 3. alarms clear -------------------------------------------------------------------------


async def test_overvoltage_alarm_clears_at_the_si_and_across_a_reload(
    hass: HomeAssistant, bms: MockConfigEntry, jbd_sim: JbdSimulator
) -> None:
    channel = "sma-victron-alarm-reload"
    async with watcher(channel) as sim:
        entry = bus_entry(bms.entry_id, channel, "alarm", {"recovery_hold": 1, "alarm_delay": 1})
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        await until(lambda: SOC in sim.received)
        high = list(CELLS)
        high[5] = 3.70
        jbd_sim.cell_voltages = high
        await until(lambda: sim.in_fault)
        assert AlarmItem.HIGH_VOLTAGE in sim.active_alarms
        jbd_sim.cell_voltages = list(CELLS)
        await until(lambda: not runtime_of(entry).data.decision.alarms)
        cleared = time.monotonic()
        await until(lambda: not sim.in_fault, 5.0)
        assert time.monotonic() - cleared <= 5.0

        # Reload while the alarm is active; the cell recovers under the new runtime.
        jbd_sim.cell_voltages = high
        await until(lambda: sim.in_fault)
        assert await hass.config_entries.async_reload(entry.entry_id)
        await hass.async_block_till_done()
        jbd_sim.cell_voltages = list(CELLS)
        await until(lambda: not sim.in_fault)

        # Home Assistant restart: the entry goes, a new one (new runtime, same bus) comes.
        jbd_sim.cell_voltages = high
        await until(lambda: sim.in_fault)
        await unload(hass, entry)
        assert sim.in_fault  # the alarm was true when the BMS stopped
        jbd_sim.cell_voltages = list(CELLS)
        restarted = bus_entry(bms.entry_id, channel, "alarm-2", {"recovery_hold": 1})
        restarted.add_to_hass(hass)
        assert await hass.config_entries.async_setup(restarted.entry_id)
        await hass.async_block_till_done()
        await until(lambda: not sim.in_fault)
        await unload(hass, restarted)


# --- 4. off-grid under-voltage -------------------------------------------------------------


async def test_off_grid_low_cell_stops_the_si_and_it_recovers(
    hass: HomeAssistant, bms: MockConfigEntry, jbd_sim: JbdSimulator
) -> None:
    entry = si_entry(bms.entry_id, {"recovery_hold": 1, "alarm_delay": 1})
    sim = await start_si(hass, entry)
    sim.set_grid(False)
    cells = [3.2] * 15 + [2.90]
    jbd_sim.cell_voltages = cells
    await until(lambda: sim.accepted_soc > 0 and not sim.grid_connected)
    await until(lambda: runtime_of(entry).data.grid_connected is False)
    assert sim.can_discharge
    cells[-1] = 2.51  # pack 50.5 V: far above any discharge voltage limit the SI accepts
    jbd_sim.cell_voltages = list(cells)
    await until(lambda: sim.in_fault)
    assert AlarmItem.LOW_VOLTAGE in sim.active_alarms
    await until(lambda: not sim.can_discharge, 1)
    cells[-1] = 3.20
    jbd_sim.cell_voltages = list(cells)
    await until(lambda: not sim.in_fault)
    assert sim.can_discharge
    await unload(hass, entry)


# --- 5. nothing missing goes unnoticed -----------------------------------------------------


async def test_source_without_cells_is_shown_and_absorbs_lower(
    hass: HomeAssistant, feeder: Feeder
) -> None:
    entry = si_entry("entities", {}, **ENTITY_SOURCE)
    sim = await start_si(hass, entry)
    # 16 x 3.40 V instead of 16 x 3.45 V: nothing would see one cell running away.
    await until(lambda: sim.accepted_cvl == pytest.approx(54.4))
    missing = f"{SI}_missing_battery_data"
    await until(lambda: state_value(hass, missing) == "cell_voltages")
    state = hass.states.get(missing)
    assert state is not None
    assert state.attributes["missing"] == ["cell_voltages"]
    found = issue(hass, missing_issue_id(entry.entry_id, "cell_voltages"))
    assert found is not None
    assert found.translation_placeholders is not None
    assert found.translation_placeholders["cell_voltage"] == "3.4"
    await unload(hass, entry)


async def test_soc_that_stops_is_missing_after_the_stale_time(
    hass: HomeAssistant, feeder: Feeder
) -> None:
    entry = si_entry("entities", {"stale_after": 5}, **ENTITY_SOURCE)
    sim = await start_si(hass, entry)
    await until(lambda: sim.accepted_soc == 60.0)
    feeder.values[SOC_ENTITY] = None  # voltage, current, temperature keep reporting
    missing = f"{SI}_missing_battery_data"
    await until(lambda: "soc" in (state_value(hass, missing) or ""), 20)
    assert issue(hass, missing_issue_id(entry.entry_id, "soc")) is not None
    # At the SI: the held SOC comes with the BMS-internal warning, and charging stops.
    await until(lambda: AlarmItem.BMS_INTERNAL in sim.active_warnings)
    await until(lambda: sim.accepted_ccl == 0.0)
    assert sim.accepted_soc == 60.0
    feeder.values[SOC_ENTITY] = 61.0
    await until(lambda: issue(hass, missing_issue_id(entry.entry_id, "soc")) is None, 20)
    await until(lambda: sim.accepted_soc == 61.0)
    await unload(hass, entry)


async def test_frozen_voltage_sensor_stops_charging(hass: HomeAssistant, feeder: Feeder) -> None:
    entry = si_entry("entities", {"stale_after": 5, "ramp_rate": 100}, **ENTITY_SOURCE)
    sim = await start_si(hass, entry)
    await until(lambda: sim.accepted_ccl > 5)
    feeder.values[VOLTAGE_ENTITY] = None  # the SOC keeps updating
    frozen = time.time()
    await until(lambda: sim.accepted_ccl == 0.0, 20)
    zero = next(stamp for stamp, ccl in sent_ccl(sim, frozen) if ccl == 0.0)
    assert zero - frozen >= 4.0  # not before the stale time
    await until(lambda: state_value(hass, "binary_sensor.sunny_island_battery_data_stale") == "on")
    await unload(hass, entry)


async def test_no_temperature_anywhere_means_no_charging_unless_allowed(
    hass: HomeAssistant, feeder: Feeder
) -> None:
    source = {k: v for k, v in ENTITY_SOURCE.items() if k != "source_temperature_entity"}
    entry = si_entry("entities", {"ramp_rate": 100, "recovery_hold": 1}, **source)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    sim = runtime_of(entry).simulator
    assert sim is not None
    # The SI's own sensor is open too (it reads -273 °C): no valid temperature anywhere.
    sim.battery.temperature = sim.battery.ambient_temperature = -273.0
    await until(lambda: sim.accepted_soc == 60.0)
    await asyncio.sleep(3)
    assert sim.accepted_ccl == 0.0
    assert all(ccl == 0.0 for _, ccl in sent_ccl(sim))
    assert state_value(hass, f"{SI}_charge_limited_by") == "no_temperature"
    await until(lambda: issue(hass, missing_issue_id(entry.entry_id, "temperature")) is not None)
    hass.config_entries.async_update_entry(
        entry, options={**entry.options, "allow_charge_without_temperature": True}
    )
    await hass.async_block_till_done()
    await until(lambda: sim.accepted_ccl > 5)
    await unload(hass, entry)


# --- 6. unload leaves the SI not charging ---------------------------------------------------


async def test_unload_steps_ccl_through_one_amp_to_zero_and_it_stays(
    hass: HomeAssistant, bms: MockConfigEntry
) -> None:
    channel = "sma-victron-unload"
    async with watcher(channel) as sim:
        entry = bus_entry(bms.entry_id, channel, "unload", {"ramp_rate": 100})
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        await until(lambda: sim.accepted_ccl > 100)
        soc = sim.accepted_soc
        started = time.time()
        await unload(hass, entry)
        tail = [ccl for _, ccl in sent_ccl(sim, started)]
        assert tail[-2:] == [1.0, 0.0], tail
        assert sim.accepted_ccl == 0.0
        assert sim.accepted_soc == soc
        await asyncio.sleep(5)
        assert sim.accepted_ccl == 0.0
        assert not sim.can_charge


# --- 7. the encoder never moves a charge voltage up -----------------------------------------


async def test_charge_voltage_below_the_si_range_sends_safe_frames(
    hass: HomeAssistant, feeder: Feeder
) -> None:
    entry = si_entry("entities", {"ramp_rate": 100}, **ENTITY_SOURCE)
    sim = await start_si(hass, entry)
    await until(lambda: sim.accepted_ccl > 5 and sim.accepted_cvl == pytest.approx(54.4))
    runtime = runtime_of(entry)
    # A 12-cell pack, allowed only without the Sunny Island's ranges: its CVL comes down to
    # the absorption voltage (12 x 3.45 V = 41.4 V) at once, then to 12 x 3.40 V = 40.8 V.
    changed = time.time()
    settings = runtime.data.settings.replace(
        sunny_island_ranges=False, cells=12, cvl_ramp_rate=1000
    )
    runtime.apply_settings(settings)
    await until(lambda: sim.accepted_ccl == 0.0, 5)
    await asyncio.sleep(2)
    cvls = [v for stamp, v in sim.sent_values(LIMITS, "charge_voltage") if stamp >= changed]
    # The last CVL that fits stays; 40.8 V is never sent as 41.0 V.
    assert 41.0 not in cvls, cvls
    assert sim.accepted_cvl == pytest.approx(41.4)
    assert not [r for r in sim.rejections if r.field == "charge_voltage"]
    assert issue(hass, update_failed_issue_id(entry.entry_id)) is not None
    await unload(hass, entry)


# --- 8. the 200 ms inhibit holds across reloads ---------------------------------------------


async def test_reloads_keep_the_200_ms_inhibit(hass: HomeAssistant, bms: MockConfigEntry) -> None:
    channel = "sma-victron-reload-inhibit"
    async with watcher(channel) as sim:
        entry = bus_entry(bms.entry_id, channel, "inhibit")
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        await until(lambda: SOC in sim.received)
        for _ in range(3):
            assert await hass.config_entries.async_reload(entry.entry_id)
            await hass.async_block_till_done()
        await asyncio.sleep(1.5)
        for frame_id in (LIMITS, SOC):
            periods = sim.periods(frame_id)
            assert len(periods) >= 3
            assert min(periods) >= MIN_PERIOD, periods
        assert sim.min_interval_violations == 0
        await unload(hass, entry)


# --- 9. inverted current sign ---------------------------------------------------------------


async def test_inverted_current_sign_is_shown_and_does_not_end_absorption(
    hass: HomeAssistant, feeder: Feeder
) -> None:
    entry = si_entry("entities", {"ramp_rate": 100, "tail_hold": 5}, **ENTITY_SOURCE)
    sim = await start_si(hass, entry)
    sim.set_pv(4000)
    sim.set_load(300)
    # The pack sits at absorption voltage; its sensor counts charging as negative.
    feeder.values[VOLTAGE_ENTITY] = 54.5
    feeder.values[CURRENT_ENTITY] = -30.0
    await until(lambda: runtime_of(entry).controller.state is ChargeState.ABSORPTION, 20)
    # The SI charges from the PV surplus and measures it as charging (+).
    await until(lambda: float(runtime_of(entry).data.si.get("battery_current", 0.0)) > 5, 20)
    mismatch = "binary_sensor.sunny_island_battery_current_sign_mismatch"
    await until(lambda: state_value(hass, mismatch) == "on", 60)
    assert issue(hass, sign_issue_id(entry.entry_id)) is not None
    await until(lambda: AlarmItem.GENERAL in sim.active_warnings)
    # -30 A reads as a tail far below 14 A, held far longer than tail_hold: still absorbing.
    assert runtime_of(entry).controller.state is ChargeState.ABSORPTION
    assert sim.accepted_cvl == pytest.approx(54.4)
    await unload(hass, entry)


# --- 10. the charge state survives a restart -------------------------------------------------


async def test_float_survives_a_restart(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    bms: MockConfigEntry,
    jbd_sim: JbdSimulator,
) -> None:
    jbd_sim.cell_voltages = [3.35] * 16
    entry = si_entry(bms.entry_id, {"rebulk_soc": 0, "cvl_ramp_rate": 1000})
    sim = await start_si(hass, entry)
    await until(lambda: sim.accepted_cvl == pytest.approx(55.2))
    for mode in ("force_float", "auto"):
        await hass.services.async_call(
            "select",
            "select_option",
            {"entity_id": "select.sunny_island_charge_mode", "option": mode},
            blocking=True,
        )
    await until(lambda: sim.accepted_cvl == pytest.approx(54.0))
    runtime = runtime_of(entry)
    assert runtime.controller.state is ChargeState.FLOAT
    last_full = runtime.controller.export_state(time.monotonic(), time.time())["last_full_charge"]
    await unload(hass, entry)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    sim = runtime_of(entry).simulator
    await until(lambda: SOC in sim.received)
    await asyncio.sleep(2)
    # At the SI: the float voltage, never the bulk/absorption one.
    cvls = {float(v) for _, v in sim.sent_values(LIMITS, "charge_voltage")}
    assert cvls == {54.0}, cvls
    restored = runtime_of(entry).controller
    assert restored.state is ChargeState.FLOAT
    saved = restored.export_state(time.monotonic(), time.time())["last_full_charge"]
    assert saved == pytest.approx(last_full, abs=2.0)
    await unload(hass, entry)
    # Removing the entry forgets its charge history: a new entry starts from scratch.
    assert store_key(entry.entry_id) in hass_storage
    await hass.config_entries.async_remove(entry.entry_id)
    await hass.async_block_till_done()
    assert store_key(entry.entry_id) not in hass_storage


async def test_charge_state_is_saved_while_running_not_only_at_stop(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    bms: MockConfigEntry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A power cut gives no shutdown: the state on disk must follow the running one (here every
    # second instead of every minute), although the tick asks every second.
    monkeypatch.setattr(sunny_island_device, "STORE_SAVE_DELAY", 1.0)
    entry = si_entry(bms.entry_id)
    await start_si(hass, entry)
    key = store_key(entry.entry_id)
    await until(lambda: key in hass_storage)
    first = hass_storage[key]["data"]["saved_at"]
    await until(lambda: hass_storage[key]["data"]["saved_at"] > first + 1.5)
    await unload(hass, entry)
