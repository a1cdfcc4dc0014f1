"""The Sunny Island diagnostics report what the simulated SI received, per BMS frame id.

A soak run reads this section over the REST API to prove, from outside Home Assistant, that no
BMS frame came late (DESIGN invariant 1: every 1 s ± 0.1 s) or too fast (invariant 2: never
below 200 ms). The battery source here is a plain Home Assistant sensor, so the test needs no
serial BMS.
"""

from __future__ import annotations

import asyncio
from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from .test_sunny_island import si_entry, start_si

SOC_ENTITY = "sensor.house_battery_soc"


async def test_diagnostics_show_bms_frame_gaps_seen_by_the_simulator(
    hass: HomeAssistant, hass_client: ClientSessionGenerator
) -> None:
    hass.states.async_set(SOC_ENTITY, "55", {"unit_of_measurement": "%"})
    entry = si_entry("entities", source_soc_entity=SOC_ENTITY)
    sim = await start_si(hass, entry)
    await asyncio.sleep(3.3)
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    device: Any = diagnostics["device"]
    received = device["simulator_received"]
    # The six BMS ids of [SMA-TI] 5.3, all sent every second.
    assert set(received) == {"0x351", "0x355", "0x356", "0x35A", "0x35E", "0x35F"}
    for frame_id in ("0x351", "0x355"):
        stats = received[frame_id]
        # Counts match what the simulator recorded (at least the frames of the last 3 s); a
        # frame may arrive between the diagnostics and this look at the simulator.
        assert len(sim.received[int(frame_id, 16)]) - stats["count"] in (0, 1)
        assert stats["count"] >= 3
        assert 0.9 <= stats["max_gap"] <= 1.1
        assert 0.9 <= stats["min_gap"] <= stats["max_gap"]
        assert 0.0 <= stats["since_last"] < 1.1
    assert sim.accepted["soc"] == 55.0
    # The dead-man guard's state: a soak run proves from this that it never had to step in.
    link = device["link"]
    assert link["guard_time"] == 10.0
    assert link["guard_tripped"] is False
    assert link["guard_trips"] == 0
    assert device["update_failing"] is False
    assert device["charge_state_saved"]["state"] == "bulk"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_diagnostics_of_a_real_bus_have_no_simulator_section(
    hass: HomeAssistant, hass_client: ClientSessionGenerator
) -> None:
    hass.states.async_set(SOC_ENTITY, "55", {"unit_of_measurement": "%"})
    entry = MockConfigEntry(
        domain="sma_victron_bridge",
        title="Sunny Island",
        unique_id="sunny_island:diagnostics",
        data={
            "device": "sunny_island",
            "simulated": False,
            "can_interface": "virtual",
            "can_channel": "sma-victron-diagnostics",
            "chemistry": "lifepo4",
            "cells": 16,
            "capacity_ah": 280.0,
            "source": "entities",
            "source_soc_entity": SOC_ENTITY,
        },
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    device: Any = diagnostics["device"]
    assert device["simulated"] is False
    assert device["simulator_received"] is None
    assert await hass.config_entries.async_unload(entry.entry_id)
