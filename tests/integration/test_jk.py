"""A JK-B BMS on its serial port in Home Assistant: detected, read, switched, simulated.

The BMS is :class:`JkSimulator` on a real PTY, answering the ``4E 57`` read-all request like
the captured boards; the entry is made by the config flow, as a user would.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.sma_victron_bridge.simulators.jk import JkSimulator

from .test_config_flow import start_simulated
from .test_serial_bms import CELLS, _start_flow, bms_entry, fet_on
from .test_vedirect import state_value, wait_for


@pytest.fixture
async def jk_sim() -> AsyncGenerator[JkSimulator]:
    """A 16s JK-B board with exact, frozen values."""
    sim = JkSimulator(cells=16, capacity_ah=280.0, frozen=True, seed=7, serial_number="20230815")
    sim.cell_voltages = list(CELLS)
    sim.current = -9.5
    sim.soc = 71.0
    sim.temperatures = [19.0, 22.0]
    await sim.start()
    yield sim
    await sim.stop()


async def test_jk_detected_read_and_switched_with_read_back(
    hass: HomeAssistant, jk_sim: JkSimulator
) -> None:
    result = await _start_flow(hass)
    result = dict(
        await hass.config_entries.flow.async_configure(
            result["flow_id"], {"port": jk_sim.port, "protocol": "auto"}
        )
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"]["protocol"] == "jk"
    assert result["data"]["cells"] == 16
    assert result["title"] == f"{jk_sim.model} 20230815"
    entry = result["result"]
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    name = "sensor." + jk_sim.model.lower().replace("-", "_") + "_20230815"
    await wait_for(hass, lambda: state_value(hass, f"{name}_state_of_charge") == "71.0")
    assert float(state_value(hass, f"{name}_battery_current") or 0) == pytest.approx(-9.5)
    assert state_value(hass, f"{name}_cell_1_voltage") == "3.301"
    assert state_value(hass, f"{name}_cell_voltage_spread") == "0.013"
    assert state_value(hass, f"{name}_temperature_2") == "22.0"
    snapshot = entry.runtime_data.snapshot
    assert snapshot is not None
    assert snapshot.soc == 71.0
    # The same entity set as every serial BMS, switches included (JK can switch its FETs).
    registry = er.async_get(hass)
    platforms = {
        item.domain for item in er.async_entries_for_config_entry(registry, entry.entry_id)
    }
    assert platforms == {"sensor", "binary_sensor", "switch"}
    switch = "switch." + name.removeprefix("sensor.") + "_charging"
    assert state_value(hass, switch) == "on"
    await hass.services.async_call("switch", "turn_off", {"entity_id": switch}, blocking=True)
    # Written, then read back from the board: the switch shows what the BMS reports.
    assert jk_sim.charge_fet is False
    assert state_value(hass, switch) == "off"
    # A protection holds the FET off: switching on is refused before anything is written.
    jk_sim.protections.add("cell_overvoltage")
    overvoltage = "binary_sensor." + name.removeprefix("sensor.") + "_cell_overvoltage"
    await wait_for(hass, lambda: state_value(hass, overvoltage) == "on")
    with pytest.raises(HomeAssistantError):
        await hass.services.async_call("switch", "turn_on", {"entity_id": switch}, blocking=True)
    assert not fet_on(jk_sim)
    jk_sim.protections.clear()
    await wait_for(hass, lambda: state_value(hass, overvoltage) == "off")
    await hass.services.async_call("switch", "turn_on", {"entity_id": switch}, blocking=True)
    assert fet_on(jk_sim)
    assert state_value(hass, switch) == "on"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_jk_chosen_explicitly_and_silent_board(
    hass: HomeAssistant, jk_sim: JkSimulator
) -> None:
    result = await _start_flow(hass)
    jk_sim.set_silent(True)
    result = dict(
        await hass.config_entries.flow.async_configure(
            result["flow_id"], {"port": jk_sim.port, "protocol": "jk"}
        )
    )
    assert result["errors"] == {"base": "no_answer"}
    jk_sim.set_silent(False)
    result = dict(
        await hass.config_entries.flow.async_configure(
            result["flow_id"], {"port": jk_sim.port, "protocol": "jk"}
        )
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["result"].unique_id == "jk:20230815"
    await hass.async_block_till_done()
    assert await hass.config_entries.async_unload(result["result"].entry_id)


async def test_simulated_jk_from_the_simulated_menu(hass: HomeAssistant) -> None:
    result = await start_simulated(hass, "serial_bms_jk")
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"].startswith("Simulated JK-")
    assert result["data"]["protocol"] == "jk"
    assert result["data"]["simulated"] is True
    entry = result["result"]
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    runtime = entry.runtime_data
    assert runtime.snapshot is not None
    registry = er.async_get(hass)
    switches = [
        item.entity_id
        for item in er.async_entries_for_config_entry(registry, entry.entry_id)
        if item.domain == "switch"
    ]
    assert len(switches) == 2
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_jk_diagnostics_keep_the_serial_number_out(
    hass: HomeAssistant, jk_sim: JkSimulator, hass_client: ClientSessionGenerator
) -> None:
    entry = bms_entry(jk_sim, "jk")
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    device: Any = diagnostics["device"]
    assert device["protocol"] == "jk"
    assert "soc=71.0" in device["reading"]
    assert device["info"].startswith("BmsInfo(")
    assert "20230815" not in repr(diagnostics)
    assert await hass.config_entries.async_unload(entry.entry_id)
