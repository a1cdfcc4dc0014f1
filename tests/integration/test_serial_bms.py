"""Serial BMS entries in Home Assistant, against JBD/Daly/ANT simulators on real PTYs."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from homeassistant.config_entries import SOURCE_RECONFIGURE, SOURCE_USER, ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.sma_victron_bridge.const import DOMAIN
from custom_components.sma_victron_bridge.simulators.bms import (
    AntSimulator,
    BmsSimulator,
    DalySimulator,
    JbdSimulator,
    JbdUpSimulator,
)

from .test_config_flow import start_simulated
from .test_vedirect import state_value, wait_for

PACK = "sensor.pack"
CELLS = [3.301, 3.305, 3.298, 3.310, 3.302, 3.299, 3.304, 3.300,
         3.303, 3.306, 3.297, 3.301, 3.302, 3.300, 3.305, 3.299]  # fmt: skip


@pytest.fixture
async def jbd_sim() -> AsyncGenerator[JbdSimulator]:
    """A 16s JBD pack with exact, frozen values."""
    sim = JbdSimulator(cells=16, capacity_ah=280.0, frozen=True, seed=3)
    sim.cell_voltages = list(CELLS)
    sim.current = 12.5
    sim.soc = 64.0
    sim.temperatures = [21.0, 22.5]
    await sim.start()
    yield sim
    await sim.stop()


def bms_entry(
    sim: BmsSimulator, protocol: str, options: dict[str, Any] | None = None, **data: Any
) -> MockConfigEntry:
    """An entry as the config flow creates it, polling fast for the tests."""
    return MockConfigEntry(
        domain=DOMAIN,
        title="Pack",
        unique_id=f"{protocol}:{sim.serial_number}",
        data={
            "device": "serial_bms",
            "port": sim.port,
            "protocol": protocol,
            "address": data.get("address"),
            "invert_current": data.get("invert_current", False),
            "serial_number": sim.serial_number,
            "cells": 16,
            "capacity_ah": 280.0,
        },
        options={"poll_interval": 0.3, **(options or {})},
    )


def fet_on(sim: BmsSimulator) -> bool:
    """The charge FET as the simulator sees it now (read afresh after each action)."""
    return sim.charge_fet


async def setup(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED


async def _start_flow(hass: HomeAssistant) -> dict[str, Any]:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert "serial_bms" in result["menu_options"]
    return dict(
        await hass.config_entries.flow.async_configure(
            result["flow_id"], {"next_step_id": "serial_bms"}
        )
    )


async def test_flow_detects_protocol_and_names_the_bms(
    hass: HomeAssistant, jbd_sim: JbdSimulator
) -> None:
    result = await _start_flow(hass)
    assert result["step_id"] == "serial_bms"
    result = dict(
        await hass.config_entries.flow.async_configure(
            result["flow_id"], {"port": "/dev/no-such-bms", "protocol": "auto"}
        )
    )
    assert result["errors"] == {"port": "port_not_found"}
    jbd_sim.set_silent(True)
    result = dict(
        await hass.config_entries.flow.async_configure(
            result["flow_id"], {"port": jbd_sim.port, "protocol": "auto"}
        )
    )
    assert result["errors"] == {"base": "no_answer"}
    jbd_sim.set_silent(False)
    result = dict(
        await hass.config_entries.flow.async_configure(
            result["flow_id"], {"port": jbd_sim.port, "protocol": "auto"}
        )
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"]["protocol"] == "jbd"
    assert result["data"]["cells"] == 16
    assert jbd_sim.model in result["title"]
    entry = result["result"]
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.parametrize("protocol", ["jbd", "daly", "ant", "jbd_up"])
async def test_flow_simulated_bms_from_the_simulated_step(
    hass: HomeAssistant, protocol: str
) -> None:
    result = await start_simulated(hass, f"serial_bms_{protocol}")
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"].startswith("Simulated ")
    assert result["data"]["simulated"] is True
    assert result["data"]["protocol"] == protocol
    assert result["data"]["port"] == ""
    entry = result["result"]
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)
    # A simulated BMS has no port to move to.
    result = dict(
        await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_RECONFIGURE, "entry_id": entry.entry_id}
        )
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "simulated_fixed"


def _jbd(soc: float, serial_number: str | None = None) -> JbdSimulator:
    sim = JbdSimulator(
        cells=16, capacity_ah=280.0, frozen=True, seed=3, serial_number=serial_number
    )
    sim.cell_voltages = list(CELLS)
    sim.soc = soc
    return sim


async def test_reconfigure_moves_the_bms_to_its_new_port(
    hass: HomeAssistant, jbd_sim: JbdSimulator
) -> None:
    entry = bms_entry(jbd_sim, "jbd")
    await setup(hass, entry)
    assert state_value(hass, f"{PACK}_state_of_charge") == "64.0"
    # The same BMS (same serial number) on another port, telling another state of charge.
    moved = _jbd(51.0, jbd_sim.serial_number)
    other = _jbd(30.0, "OTHERBMS01")
    await moved.start()
    await other.start()
    try:
        result = dict(await entry.start_reconfigure_flow(hass))
        assert result["step_id"] == "serial_bms_reconfigure"
        flow_id = result["flow_id"]
        result = dict(
            await hass.config_entries.flow.async_configure(flow_id, {"port": "/dev/no-such-bms"})
        )
        assert result["errors"] == {"port": "port_not_found"}
        moved.set_silent(True)
        result = dict(await hass.config_entries.flow.async_configure(flow_id, {"port": moved.port}))
        assert result["errors"] == {"base": "no_answer"}
        moved.set_silent(False)
        result = dict(await hass.config_entries.flow.async_configure(flow_id, {"port": other.port}))
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "wrong_device"
        assert entry.data["port"] == jbd_sim.port

        result = dict(await entry.start_reconfigure_flow(hass))
        result = dict(
            await hass.config_entries.flow.async_configure(result["flow_id"], {"port": moved.port})
        )
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "reconfigure_successful"
        assert entry.data["port"] == moved.port
        assert entry.unique_id == f"jbd:{jbd_sim.serial_number}"
        # The entry reloads and reads the BMS on its new port.
        await wait_for(hass, lambda: state_value(hass, f"{PACK}_state_of_charge") == "51.0")
        assert entry.state is ConfigEntryState.LOADED
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await moved.stop()
        await other.stop()


async def test_reconfigure_of_a_bms_without_serial_number(hass: HomeAssistant) -> None:
    """ANT packs never tell a serial number: the protocol and cell count must match."""
    first = AntSimulator(cells=16, frozen=True, seed=4)
    moved = AntSimulator(cells=16, frozen=True, seed=4)
    smaller = AntSimulator(cells=8, frozen=True, seed=4)
    for sim in (first, moved, smaller):
        await sim.start()
    moved.soc = 42.0
    try:
        entry = bms_entry(first, "ant")
        entry.add_to_hass(hass)
        hass.config_entries.async_update_entry(
            entry, unique_id=f"ant:{first.port}", data={**entry.data, "serial_number": None}
        )
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        result = dict(await entry.start_reconfigure_flow(hass))
        result = dict(
            await hass.config_entries.flow.async_configure(
                result["flow_id"], {"port": smaller.port}
            )
        )
        assert result["reason"] == "wrong_device"
        result = dict(await entry.start_reconfigure_flow(hass))
        result = dict(
            await hass.config_entries.flow.async_configure(result["flow_id"], {"port": moved.port})
        )
        assert result["reason"] == "reconfigure_successful"
        # The unique id (device and entity ids are made from it) stays.
        assert entry.unique_id == f"ant:{first.port}"
        await wait_for(hass, lambda: state_value(hass, f"{PACK}_state_of_charge") == "42.0")
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        for sim in (first, moved, smaller):
            await sim.stop()


async def test_jbd_states(hass: HomeAssistant, jbd_sim: JbdSimulator) -> None:
    entry = bms_entry(jbd_sim, "jbd")
    await setup(hass, entry)
    assert state_value(hass, f"{PACK}_state_of_charge") == "64.0"
    assert state_value(hass, f"{PACK}_battery_current") == "12.5"
    assert state_value(hass, f"{PACK}_cell_1_voltage") == "3.301"
    assert state_value(hass, f"{PACK}_lowest_cell_voltage") == "3.297"
    assert state_value(hass, f"{PACK}_highest_cell_voltage") == "3.31"
    assert state_value(hass, f"{PACK}_cell_voltage_spread") == "0.013"
    assert state_value(hass, f"{PACK}_highest_cell") == "4"
    assert state_value(hass, f"{PACK}_lowest_cell") == "11"
    assert state_value(hass, f"{PACK}_temperature_2") == "22.5"
    assert state_value(hass, "switch.pack_charging") == "on"
    assert state_value(hass, "binary_sensor.pack_cell_overvoltage") == "off"
    # Cells beyond the first few exist but start disabled.
    registry = er.async_get(hass)
    cell_9 = registry.async_get(f"{PACK}_cell_9_voltage")
    assert cell_9 is not None
    assert cell_9.disabled_by is er.RegistryEntryDisabler.INTEGRATION
    # Limits computed from the pack: bulk current ramps up at 5 A/s from 0.
    assert hass.states.get(f"{PACK}_charge_current_limit") is not None
    assert state_value(hass, f"{PACK}_charge_voltage_limit") == "55.2"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_protection_and_fet_switching(hass: HomeAssistant, jbd_sim: JbdSimulator) -> None:
    entry = bms_entry(jbd_sim, "jbd")
    await setup(hass, entry)
    await hass.services.async_call(
        "switch", "turn_off", {"entity_id": "switch.pack_charging"}, blocking=True
    )
    assert jbd_sim.charge_fet is False
    assert jbd_sim.fet_writes[-1][0] is False
    assert state_value(hass, "switch.pack_charging") == "off"

    jbd_sim.protections.add("cell_overvoltage")
    await wait_for(hass, lambda: state_value(hass, "binary_sensor.pack_cell_overvoltage") == "on")
    with pytest.raises(HomeAssistantError):
        await hass.services.async_call(
            "switch", "turn_on", {"entity_id": "switch.pack_charging"}, blocking=True
        )
    assert not fet_on(jbd_sim)
    jbd_sim.protections.clear()
    await wait_for(hass, lambda: state_value(hass, "binary_sensor.pack_cell_overvoltage") == "off")
    await hass.services.async_call(
        "switch", "turn_on", {"entity_id": "switch.pack_charging"}, blocking=True
    )
    assert fet_on(jbd_sim)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_cell_at_cutoff_stops_charging(hass: HomeAssistant, jbd_sim: JbdSimulator) -> None:
    entry = bms_entry(jbd_sim, "jbd", {"ramp_rate": 100})
    await setup(hass, entry)
    await wait_for(hass, lambda: float(state_value(hass, f"{PACK}_charge_current_limit") or 0) > 10)
    cells = list(CELLS)
    cells[6] = 3.60
    jbd_sim.cell_voltages = cells
    await wait_for(hass, lambda: state_value(hass, f"{PACK}_charge_limited_by") == "overvoltage")
    await wait_for(hass, lambda: state_value(hass, f"{PACK}_charge_current_limit") == "0.0")
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_unplug_and_bms_stopping_mid_frame(
    hass: HomeAssistant, jbd_sim: JbdSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    entry = bms_entry(jbd_sim, "jbd")
    await setup(hass, entry)
    soc = f"{PACK}_state_of_charge"
    runtime: Any = entry.runtime_data
    # One reply cut in half is absorbed by the client's retry: the entity never blinks.
    polls = runtime.data.polls
    jbd_sim.stop_mid_frame_once()
    await wait_for(hass, lambda: runtime.data.polls >= polls + 3)
    assert runtime.data.failures == 0
    assert state_value(hass, soc) == "64.0"
    # A BMS that stops mid-frame and stays silent: unavailable, then back when it answers.
    jbd_sim.stop_mid_frame_once()
    jbd_sim.set_silent(True)
    await wait_for(hass, lambda: state_value(hass, soc) == STATE_UNAVAILABLE, timeout=10)
    jbd_sim.set_silent(False)
    await wait_for(hass, lambda: state_value(hass, soc) == "64.0", timeout=10)
    await jbd_sim.unplug()
    await wait_for(hass, lambda: state_value(hass, soc) == STATE_UNAVAILABLE, timeout=10)
    jbd_sim.soc = 71.0
    await jbd_sim.replug()
    await wait_for(hass, lambda: state_value(hass, soc) == "71.0", timeout=15)
    assert caplog.text.count("Pack is back") == 2
    assert caplog.text.count("Pack stopped answering") == 2
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_energy_integrated_and_restored(hass: HomeAssistant, jbd_sim: JbdSimulator) -> None:
    entry = bms_entry(jbd_sim, "jbd")
    await setup(hass, entry)
    runtime: Any = entry.runtime_data
    runtime.data.energy.restore(10.0, 4.0)
    await wait_for(hass, lambda: float(state_value(hass, f"{PACK}_charged_energy") or 0) > 10.0)
    assert float(state_value(hass, f"{PACK}_discharged_energy") or 0) == 4.0
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.parametrize(
    ("sim_factory", "protocol", "extra"),
    [
        (lambda: DalySimulator(cells=16, frozen=True, seed=1), "daly", {"address": 64}),
        (lambda: AntSimulator(cells=16, frozen=True, seed=1), "ant", {}),
        (lambda: AntSimulator(protocol="new", cells=16, frozen=True, seed=1), "ant_new", {}),
    ],
)
async def test_daly_and_ant(
    hass: HomeAssistant, sim_factory: Any, protocol: str, extra: dict[str, Any]
) -> None:
    sim: BmsSimulator = sim_factory()
    sim.soc = 42.0
    sim.current = -8.0
    await sim.start()
    try:
        entry = bms_entry(sim, protocol, **extra)
        await setup(hass, entry)
        assert float(state_value(hass, f"{PACK}_state_of_charge") or 0) == pytest.approx(42, abs=1)
        current = float(state_value(hass, f"{PACK}_battery_current") or 0)
        assert current == pytest.approx(-8, abs=0.2)
        assert entry.runtime_data.snapshot is not None
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await sim.stop()


async def test_options_every_setting_refuses_unsafe_and_applies(
    hass: HomeAssistant, jbd_sim: JbdSimulator
) -> None:
    entry = bms_entry(jbd_sim, "jbd")
    await setup(hass, entry)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["step_id"] == "bms_settings"
    schema = result["data_schema"]
    assert schema is not None
    offered = {str(key) for key in schema.schema}
    assert {"poll_interval", "bulk_current", "ramp_rate", "absorption_spread"} <= offered
    # Float above absorption is refused and names the field.
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {"poll_interval": 1.0, "cell_float_voltage": 3.44, "cell_absorption_voltage": 3.40},
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"]
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"poll_interval": 1.0, "bulk_current": 40, "ramp_rate": 20}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    runtime: Any = entry.runtime_data
    assert runtime.controller.settings.bulk_current == 40
    assert runtime.controller.settings.ramp_rate == 20
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.parametrize(("cells", "cvl"), [(4, "13.8"), (8, "27.6")])
async def test_small_pack_sets_up_outside_the_sunny_island_ranges(
    hass: HomeAssistant, cells: int, cvl: str
) -> None:
    """A 4s/8s pack on its own BMS is fine: only a Sunny Island entry needs 41-63 V packs."""
    sim = JbdSimulator(cells=cells, capacity_ah=100.0, frozen=True, seed=5)
    sim.cell_voltages = CELLS[:cells]
    await sim.start()
    try:
        entry = bms_entry(sim, "jbd")
        entry.add_to_hass(hass)
        # A stored flag cannot switch the ranges back on (or off) for a Sunny Island either.
        hass.config_entries.async_update_entry(
            entry,
            data={**entry.data, "cells": cells, "capacity_ah": 100.0},
            options={**entry.options, "sunny_island_ranges": True},
        )
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.LOADED
        runtime: Any = entry.runtime_data
        assert runtime.controller.settings.sunny_island_ranges is False
        assert state_value(hass, f"{PACK}_charge_voltage_limit") == cvl
        result = await hass.config_entries.options.async_init(entry.entry_id)
        assert result["step_id"] == "bms_settings"
        result = await hass.config_entries.options.async_configure(
            result["flow_id"], {"poll_interval": 1.0, "cell_discharge_cutoff": 2.8}
        )
        assert result["type"] is FlowResultType.CREATE_ENTRY
        await hass.async_block_till_done()
        assert entry.runtime_data.controller.settings.cell_discharge_cutoff == 2.8
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await sim.stop()


async def test_jbd_up_pack_through_the_flow_without_fet_switches(hass: HomeAssistant) -> None:
    """A JBD UP rack pack at bus address 2: detected on its port, read, and never switched."""
    sim = JbdUpSimulator(
        cells=16, capacity_ah=100.0, frozen=True, seed=4, address=2, model="JBD48100000"
    )
    sim.cell_voltages = list(CELLS)
    sim.current = -6.5
    sim.soc = 55.0
    await sim.start()
    try:
        result = await _start_flow(hass)
        result = dict(
            await hass.config_entries.flow.async_configure(
                result["flow_id"], {"port": sim.port, "protocol": "auto"}
            )
        )
        # Detection asks the pack address of the form (1 unless changed): pack 2 stays quiet.
        assert result["errors"] == {"base": "no_answer"}
        result = dict(
            await hass.config_entries.flow.async_configure(
                result["flow_id"], {"port": sim.port, "protocol": "auto", "pack_address": 2}
            )
        )
        assert result["type"] is FlowResultType.CREATE_ENTRY
        assert result["title"] == "JBD48100000"
        data = result["data"]
        assert (data["protocol"], data["address"], data["cells"]) == ("jbd_up", 2, 16)
        assert data["capacity_ah"] == 100.0
        entry = result["result"]
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.LOADED
        name = "sensor.jbd48100000"
        assert float(state_value(hass, f"{name}_state_of_charge") or 0) == 55.0
        assert float(state_value(hass, f"{name}_battery_current") or 0) == -6.5
        # 52.832 V of cells, sent in 10 mV
        assert float(state_value(hass, f"{name}_battery_voltage") or 0) == 52.83
        registry = er.async_get(hass)
        platforms = {
            item.domain for item in er.async_entries_for_config_entry(registry, entry.entry_id)
        }
        assert platforms == {"sensor", "binary_sensor"}  # no FET switch to offer
        assert entry.runtime_data.client.address == 2
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await sim.stop()
