"""The bank bench's measurement runs on real entries, and its report ends with the RATIO line."""

from __future__ import annotations

import math
from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from bench.bank_ha import (
    PACKS,
    SETTLED_OPTIONS,
    Figures,
    measure,
    pack_entry_data,
    reading,
    report_lines,
)
from custom_components.sma_victron_bridge.const import DOMAIN

from .test_vedirect import state_value


def test_readings_move_every_round_and_stay_plausible() -> None:
    first, second = reading(3, 0), reading(3, 1)
    assert first.cell_voltages != second.cell_voltages
    assert first.current != second.current
    for pack in range(PACKS):
        value = reading(pack, 7)
        assert len(value.cell_voltages) == 16
        assert all(3.0 < cell < 3.5 for cell in value.cell_voltages)
        assert value.voltage == pytest.approx(sum(value.cell_voltages), abs=0.001)
        assert value.nominal_capacity is not None
        assert value.remaining_capacity is not None
        assert value.remaining_capacity < value.nominal_capacity


def test_report_ends_with_the_ratio() -> None:
    lines = report_lines(Figures(single=0.002, bank=0.0023, idle_refresh=0.0002))
    assert lines[-1] == "RATIO bank_update_over_single 1.150"
    assert "2.000 ms" in lines[0]
    assert "2.300 ms" in lines[1]


async def test_measure_refreshes_the_packs_and_the_bank(hass: HomeAssistant) -> None:
    packs = [
        MockConfigEntry(
            domain=DOMAIN,
            title=f"Pack {n + 1}",
            unique_id=f"bench:{n}",
            data=pack_entry_data(n),
            options=dict(SETTLED_OPTIONS),
        )
        for n in range(PACKS)
    ]
    for pack in packs:
        pack.add_to_hass(hass)
        assert await hass.config_entries.async_setup(pack.entry_id)
    await hass.async_block_till_done()
    bank = MockConfigEntry(
        domain=DOMAIN,
        title="Bench bank",
        unique_id="battery_bank:bench",
        data={"device": "battery_bank", "chemistry": "lifepo4", "cells": 16},
        options={"packs": [p.entry_id for p in packs], "shunt": "none"},
    )
    bank.add_to_hass(hass)
    assert await hass.config_entries.async_setup(bank.entry_id)
    await hass.async_block_till_done()
    runtimes: list[Any] = [p.runtime_data for p in packs]
    figures = await measure(hass, runtimes, bank.runtime_data, rounds=3, repeats=1)
    assert figures.single > 0
    assert figures.bank > 0
    assert math.isfinite(figures.ratio)
    # The last round's readings reached the packs' and the bank's entities.
    last = reading(0, 2)
    assert float(state_value(hass, "sensor.pack_1_battery_current") or "nan") == last.current
    assert state_value(hass, "sensor.bench_bank_packs_online") == str(PACKS)
    total = sum(reading(pack, 2).current or 0.0 for pack in range(PACKS))
    assert float(state_value(hass, "sensor.bench_bank_battery_current") or "nan") == (
        pytest.approx(total)
    )
    for entry in (bank, *packs):
        assert await hass.config_entries.async_unload(entry.entry_id)
        assert entry.state is ConfigEntryState.NOT_LOADED
