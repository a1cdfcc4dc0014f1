"""The Sunny Island BMS emulation in Home Assistant: each DESIGN.md safety invariant, proven.

A simulated Sunny Island listens on a python-can virtual bus (or behind a simulated slcan adapter
for the real driver path) and records every BMS frame with its arrival time; the battery source is
a JBD BMS simulator on a PTY set up as its own entry, or plain Home Assistant sensors.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
import itertools
import math
import time
from typing import Any

import can
from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.sma_victron_bridge.const import DOMAIN
from custom_components.sma_victron_bridge.devices.sunny_island.runtime import stale_issue_id
from custom_components.sma_victron_bridge.protocols.sma_can import AlarmItem
from custom_components.sma_victron_bridge.simulators.bms import JbdSimulator
from custom_components.sma_victron_bridge.simulators.slcan import SlcanAdapter
from custom_components.sma_victron_bridge.simulators.sunny_island import SunnyIslandSimulator

from .test_serial_bms import CELLS, bms_entry
from .test_vedirect import state_value, wait_for

SI = "sensor.sunny_island"
LIMITS, SOC = 0x351, 0x355


@pytest.fixture
async def jbd_sim() -> AsyncGenerator[JbdSimulator]:
    """The battery: a frozen 16s JBD pack at 64 % SOC."""
    sim = JbdSimulator(cells=16, capacity_ah=280.0, frozen=True, seed=5)
    sim.cell_voltages = list(CELLS)
    sim.current = 10.0
    sim.soc = 64.0
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def bms(hass: HomeAssistant, jbd_sim: JbdSimulator) -> AsyncGenerator[MockConfigEntry]:
    """The JBD pack set up as an entry (the Sunny Island's battery source)."""
    entry = bms_entry(jbd_sim, "jbd")
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    yield entry
    if entry.state is ConfigEntryState.LOADED:
        assert await hass.config_entries.async_unload(entry.entry_id)


def si_entry(source: str, options: dict[str, Any] | None = None, **data: Any) -> MockConfigEntry:
    """A simulated Sunny Island entry fed by ``source``."""
    return MockConfigEntry(
        domain=DOMAIN,
        title="Sunny Island",
        unique_id=f"sunny_island:simulated:{source}",
        data={
            "device": "sunny_island",
            "simulated": True,
            "can_interface": "virtual",
            "chemistry": "lifepo4",
            "cells": 16,
            "capacity_ah": 280.0,
            "source": source,
            **data,
        },
        options=options or {},
    )


async def start_si(hass: HomeAssistant, entry: MockConfigEntry) -> SunnyIslandSimulator:
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    runtime: Any = entry.runtime_data
    sim: SunnyIslandSimulator | None = runtime.simulator
    assert sim is not None
    return sim


def float_state(hass: HomeAssistant, entity_id: str) -> float:
    """A numeric state, NaN while unknown or missing."""
    try:
        return float(state_value(hass, entity_id) or "nan")
    except ValueError:
        return math.nan


def gaps(sim: SunnyIslandSimulator, frame_id: int, since: float) -> list[float]:
    """Intervals between arrivals of ``frame_id`` after wall time ``since``."""
    stamps = [t for t in sim.received.get(frame_id, []) if t >= since]
    return [b - a for a, b in itertools.pairwise(stamps)]


def assert_cadence(intervals: list[float], minimum: int) -> None:
    """Invariants 1 and 2: every 1 s ± 0.1 s, never faster than 200 ms."""
    assert len(intervals) >= minimum, intervals
    assert all(0.9 <= gap <= 1.1 for gap in intervals), intervals


async def test_frames_every_second_with_the_decided_limits(
    hass: HomeAssistant, bms: MockConfigEntry
) -> None:
    entry = si_entry(bms.entry_id)
    sim = await start_si(hass, entry)
    started = time.time()
    await asyncio.sleep(4.3)
    assert_cadence(gaps(sim, LIMITS, started), 3)
    assert_cadence(gaps(sim, SOC, started), 3)
    assert sim.min_interval_violations == 0
    # What the SI accepted is what the integration decided and shows.
    assert sim.accepted["soc"] == pytest.approx(64.0)
    assert sim.accepted["charge_voltage"] == pytest.approx(55.2)
    assert state_value(hass, f"{SI}_charge_voltage_limit") == "55.2"
    assert state_value(hass, f"{SI}_charge_state") == "bulk"
    assert sim.fault is None
    # First frames went out quickly after setup (invariant 6), measured by the runtime.
    runtime: Any = entry.runtime_data
    delay = runtime.data.first_frame_delay
    assert delay is not None
    assert delay < 1.0
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_si_traffic_becomes_sensors(hass: HomeAssistant, bms: MockConfigEntry) -> None:
    entry = si_entry(bms.entry_id)
    sim = await start_si(hass, entry)
    sim.set_load(2300)
    sim.set_grid(True)
    # The simulated loads wander by up to 10 %, and 0x308 carries 100 W steps.
    await wait_for(hass, lambda: 2000 <= float_state(hass, f"{SI}_load_power") <= 2600)
    grid = "binary_sensor.sunny_island_grid_connected"
    await wait_for(hass, lambda: state_value(hass, grid) == "on")
    # One frame without a valid grid (relay transfer) does not drop the grid: two frames do.
    sim.drop_grid_voltage_once()
    await asyncio.sleep(1.5)
    assert state_value(hass, "binary_sensor.sunny_island_grid_connected") == "on"
    sim.set_grid(False)
    await wait_for(
        hass, lambda: state_value(hass, "binary_sensor.sunny_island_grid_connected") == "off"
    )
    assert state_value(hass, "binary_sensor.sunny_island_bms_link") == "on"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_frames_keep_flowing_while_the_event_loop_is_blocked(
    hass: HomeAssistant, bms: MockConfigEntry
) -> None:
    entry = si_entry(bms.entry_id)
    sim = await start_si(hass, entry)
    await asyncio.sleep(1.2)
    started = time.time()
    time.sleep(5.0)  # noqa: ASYNC251 - the point: the event loop stalls, periodic tasks do not
    await asyncio.sleep(0.3)
    assert_cadence(gaps(sim, SOC, started), 4)
    assert_cadence(gaps(sim, LIMITS, started), 4)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_settings_change_live_without_a_gap(
    hass: HomeAssistant, bms: MockConfigEntry
) -> None:
    entry = si_entry(bms.entry_id)
    sim = await start_si(hass, entry)
    await asyncio.sleep(1.2)
    started = time.time()
    await hass.services.async_call(
        "number",
        "set_value",
        {"entity_id": "number.sunny_island_absorption_voltage_per_cell", "value": 3.5},
        blocking=True,
    )
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["step_id"] == "charge_settings"
    schema = result["data_schema"]
    assert schema is not None
    offered = {str(key) for key in schema.schema}
    assert {"ramp_rate", "absorption_spread", "tail_hold", "bulk_current"} <= offered
    await hass.config_entries.options.async_configure(
        result["flow_id"], {**entry.options, "bulk_current": 80, "ramp_rate": 10}
    )
    await hass.async_block_till_done()
    await asyncio.sleep(4.2)
    assert_cadence(gaps(sim, SOC, started), 3)
    assert entry.state is ConfigEntryState.LOADED
    assert entry.options["cell_absorption_voltage"] == 3.5
    runtime: Any = entry.runtime_data
    assert runtime.controller.settings.ramp_rate == 10
    assert sim.accepted["charge_voltage"] == pytest.approx(56.0)
    # Invariant 5: no setting above the chemistry's safe bounds.
    with pytest.raises(ServiceValidationError):
        await hass.services.async_call(
            "number",
            "set_value",
            {"entity_id": "number.sunny_island_absorption_voltage_per_cell", "value": 3.9},
            blocking=True,
        )
    assert sim.accepted["charge_voltage"] == pytest.approx(56.0)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_stale_source_stops_charging_and_raises_repair(
    hass: HomeAssistant, bms: MockConfigEntry, jbd_sim: JbdSimulator
) -> None:
    entry = si_entry(bms.entry_id, {"stale_after": 5})
    sim = await start_si(hass, entry)
    await wait_for(hass, lambda: sim.accepted["charge_current_limit"] > 0, timeout=10)
    started = time.time()
    await jbd_sim.unplug()
    issues = ir.async_get(hass)
    await wait_for(
        hass,
        lambda: issues.async_get_issue(DOMAIN, stale_issue_id(entry.entry_id)) is not None,
        timeout=10,
    )
    # Through 1 A (held longer than one frame period) to 0 A.
    await wait_for(hass, lambda: sim.accepted["charge_current_limit"] == 0.0, timeout=5)
    assert sim.accepted["soc"] == pytest.approx(64.0)  # held at the last value
    assert AlarmItem.BMS_INTERNAL in sim.active_warnings
    assert state_value(hass, "binary_sensor.sunny_island_battery_data_stale") == "on"
    # Frames never stopped while the source was stale (invariant 1).
    assert_cadence(gaps(sim, SOC, started), 5)
    await jbd_sim.replug()
    await wait_for(
        hass,
        lambda: issues.async_get_issue(DOMAIN, stale_issue_id(entry.entry_id)) is None,
        timeout=15,
    )
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_source_reload_does_not_interrupt_frames(
    hass: HomeAssistant, bms: MockConfigEntry
) -> None:
    entry = si_entry(bms.entry_id)
    sim = await start_si(hass, entry)
    await asyncio.sleep(1.2)
    started = time.time()
    assert await hass.config_entries.async_reload(bms.entry_id)
    await hass.async_block_till_done()
    await asyncio.sleep(2.5)
    # Every interval across the reload window is 1 s (a gap would show as one long interval).
    assert_cadence(gaps(sim, SOC, started), int(time.time() - started) - 1)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_cell_overvoltage_takes_ccl_to_zero_through_one_amp(
    hass: HomeAssistant, bms: MockConfigEntry, jbd_sim: JbdSimulator
) -> None:
    entry = si_entry(bms.entry_id, {"ramp_rate": 100})
    sim = await start_si(hass, entry)
    await wait_for(hass, lambda: sim.accepted["charge_current_limit"] > 5, timeout=10)
    seen: list[float] = []
    cells = list(CELLS)
    cells[3] = 3.62
    jbd_sim.cell_voltages = cells
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (not seen or seen[-1] != 0.0):
        await asyncio.sleep(0.2)
        value = sim.last_values.get(LIMITS, {}).get("charge_current_limit")
        if isinstance(value, float) and (not seen or seen[-1] != value):
            seen.append(value)
    assert seen[-1] == 0.0
    assert 1.0 in seen  # the last non-zero value on the way down was 1 A
    assert state_value(hass, f"{SI}_charge_limited_by") == "overvoltage"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_unload_sends_last_state_then_stops(
    hass: HomeAssistant, bms: MockConfigEntry
) -> None:
    entry = si_entry(bms.entry_id)
    sim = await start_si(hass, entry)
    await asyncio.sleep(1.5)
    await hass.services.async_call(
        "select",
        "select_option",
        {"entity_id": "select.sunny_island_charge_mode", "option": "charge_off"},
        blocking=True,
    )
    assert await hass.config_entries.async_unload(entry.entry_id)
    last = sim.last_values[LIMITS]["charge_current_limit"]
    assert isinstance(last, float)
    assert last <= 1.0
    count = len(sim.received[SOC])
    await asyncio.sleep(2.2)
    assert len(sim.received[SOC]) == count


async def test_restart_gap_is_short(hass: HomeAssistant, bms: MockConfigEntry) -> None:
    """Measures the silence a reload (like a Home Assistant restart) leaves on the bus."""
    channel = "sma-victron-restart-gap"
    listener_bus = can.Bus(interface="virtual", channel=channel)
    watcher = SunnyIslandSimulator(listener_bus)
    await watcher.start()
    try:
        entry = si_entry(bms.entry_id)
        entry.add_to_hass(hass)
        # Point the entry at the watcher's channel by making it a real 'virtual' interface.
        hass.config_entries.async_update_entry(
            entry,
            data={
                **entry.data,
                "simulated": False,
                "can_interface": "virtual",
                "can_channel": channel,
            },
        )
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        await asyncio.sleep(1.5)
        assert await hass.config_entries.async_reload(entry.entry_id)
        await hass.async_block_till_done()
        await asyncio.sleep(1.5)
        intervals = watcher.periods(SOC)
        worst = max(intervals)
        assert worst < 3.0, intervals
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await watcher.stop()
        listener_bus.shutdown()


async def test_flow_simulated_sunny_island(hass: HomeAssistant, bms: MockConfigEntry) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "simulated"}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"simulated_device": "sunny_island"}
    )
    assert result["step_id"] == "sunny_island_battery"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {"chemistry": "lifepo4", "cells": 16, "capacity_ah": 280, "source": bms.entry_id},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    entry = result["result"]
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    reported = "sensor.simulated_sunny_island_reported_state_of_charge"
    await wait_for(hass, lambda: state_value(hass, reported) == "64.0")
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_flow_over_slcan_with_entity_source(hass: HomeAssistant) -> None:
    """The real python-can slcan driver through a simulated adapter, fed by HA sensors."""
    hass.states.async_set("sensor.house_battery_soc", "55", {"unit_of_measurement": "%"})
    channel = "sma-victron-slcan-flow"
    adapter = SlcanAdapter(channel)
    await adapter.start()
    si_bus = can.Bus(interface="virtual", channel=channel)
    sim = SunnyIslandSimulator(si_bus)
    await sim.start()
    try:
        result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"next_step_id": "sunny_island"}
        )
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"can_interface": "slcan"}
        )
        assert result["step_id"] == "sunny_island_channel"
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"can_channel": adapter.port}
        )
        assert result["step_id"] == "sunny_island_battery"
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"],
            {"chemistry": "lifepo4", "cells": 16, "capacity_ah": 200, "source": "entities"},
        )
        assert result["step_id"] == "sunny_island_entities"
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"source_soc_entity": "sensor.house_battery_soc"}
        )
        assert result["type"] is FlowResultType.CREATE_ENTRY
        entry = result["result"]
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.LOADED
        await wait_for(hass, lambda: sim.accepted["soc"] == 55.0, timeout=10)
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await sim.stop()
        si_bus.shutdown()
        await adapter.stop()


async def test_a_lost_can_adapter_makes_the_entities_unavailable_until_it_is_back(
    hass: HomeAssistant,
) -> None:
    """The SI's entities follow the CAN link: the BMS tick that goes on meanwhile (it must, to
    reach the frames as soon as the adapter is back) does not make them available again."""
    hass.states.async_set("sensor.house_battery_soc", "55", {"unit_of_measurement": "%"})
    channel = "sma-victron-slcan-unplug"
    adapter = SlcanAdapter(channel)
    await adapter.start()
    si_bus = can.Bus(interface="virtual", channel=channel)
    sim = SunnyIslandSimulator(si_bus)
    await sim.start()
    entry = si_entry(
        "entities",
        can_interface="slcan",
        can_channel=adapter.port,
        simulated=False,
        source_soc_entity="sensor.house_battery_soc",
    )
    try:
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        await wait_for(hass, lambda: sim.accepted.get("soc") == 55.0, timeout=10)
        limit = f"{SI}_charge_voltage_limit"
        await wait_for(hass, lambda: state_value(hass, limit) not in (None, STATE_UNAVAILABLE))
        await adapter.unplug()
        await wait_for(hass, lambda: state_value(hass, limit) == STATE_UNAVAILABLE, timeout=10)
        for _ in range(3):  # three BMS ticks while the adapter is gone
            await asyncio.sleep(1.0)
            await hass.async_block_till_done()
            assert state_value(hass, limit) == STATE_UNAVAILABLE
        await adapter.replug()
        await wait_for(hass, lambda: state_value(hass, limit) != STATE_UNAVAILABLE, timeout=20)
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await sim.stop()
        si_bus.shutdown()
        await adapter.stop()
