"""The simulated plant: a simulated Sunny Island and the simulated BMS feeding it share a battery.

In the demo the simulated Sunny Island drives the battery current (its PV, its loads, the limits it
accepted). The simulated BMS it is fed by must report that same current, or the integration's own
sign check (source current against the SI's 0x305 measurement) would warn about a battery that is
really two unrelated simulations.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.sma_victron_bridge.const import DOMAIN
from custom_components.sma_victron_bridge.devices.sunny_island.runtime import sign_issue_id

from .test_sunny_island import si_entry, start_si


def simulated_bms_entry() -> MockConfigEntry:
    """A simulated JBD pack as the simulated-device menu creates it."""
    return MockConfigEntry(
        domain=DOMAIN,
        title="Simulated JBD",
        unique_id="jbd:SIMPLANT1",
        data={
            "device": "serial_bms",
            "simulated": True,
            "port": "",
            "protocol": "jbd",
            "address": None,
            "invert_current": False,
            "serial_number": "SIMPLANT1",
            "cells": 16,
            "capacity_ah": 280.0,
        },
        options={"poll_interval": 0.3},
    )


async def test_simulated_bms_reports_the_current_the_simulated_si_drives(
    hass: HomeAssistant,
) -> None:
    bms = simulated_bms_entry()
    bms.add_to_hass(hass)
    assert await hass.config_entries.async_setup(bms.entry_id)
    await hass.async_block_till_done()
    bms_sim: Any = bms.runtime_data.simulator
    assert bms_sim is not None
    own = bms_sim.current
    si = si_entry(bms.entry_id)
    si_sim = await start_si(hass, si)
    # The SI's house draws 3 kW and nothing charges: it discharges the battery into the load.
    si_sim.set_load(3000.0)
    # The SI hands its current over once per tick (1 s) and its plant moves in between (the
    # load wanders), so the BMS must report one of the currents the SI had just before: watch
    # the SI closely and look the BMS's value up among the SI's recent ones.
    seen: deque[tuple[float, float]] = deque()
    driven: list[tuple[float, float]] = []
    matched = False
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20.0
    while not matched and loop.time() < deadline:
        await asyncio.sleep(0.02)
        now = loop.time()
        seen.append((now, si_sim.battery.current))
        while seen and seen[0][0] < now - 3.0:
            seen.popleft()
        bms_current = bms_sim.current
        driven.append((si_sim.battery.current, bms_current))
        matched = si_sim.battery.current < -2 and any(
            abs(bms_current - value) < 0.01 for _, value in seen
        )
    assert matched, driven[-40:]
    si_current, bms_current = driven[-1]
    assert si_current < -2
    assert bms_current != own
    assert ir.async_get(hass).async_get_issue(DOMAIN, sign_issue_id(si.entry_id)) is None
    # (When the handed value goes stale the pack lives its own day again: test_bms_sim.py.)
    assert await hass.config_entries.async_unload(si.entry_id)
    assert si.state is ConfigEntryState.NOT_LOADED
    assert await hass.config_entries.async_unload(bms.entry_id)
