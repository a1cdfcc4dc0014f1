"""A battery bank in Home Assistant: three simulated packs as one battery for a Sunny Island.

The packs are a JBD (100 Ah), a Daly (200 Ah) and a JK (280 Ah) simulator, each on its own PTY
and set up as its own serial BMS entry polling fast; the bank is made through the config flow.
Expected values are worked out here from what the packs' own entities show (their capacities and
their own computed limits) with the rules of ``docs/battery_banks.md``, and a simulated Sunny
Island on a virtual CAN bus shows what it accepted.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
import math
from typing import Any

from homeassistant.config_entries import (
    SOURCE_RECONFIGURE,
    SOURCE_USER,
    ConfigEntry,
    ConfigEntryState,
)
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import device_registry as dr, issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.sma_victron_bridge.const import DOMAIN
from custom_components.sma_victron_bridge.devices.battery_bank.runtime import (
    stale_pack_issue_id,
)
from custom_components.sma_victron_bridge.simulators.bms import (
    BmsSimulator,
    DalySimulator,
    JbdSimulator,
)
from custom_components.sma_victron_bridge.simulators.jk import JkSimulator

from .test_serial_bms import CELLS
from .test_sunny_island import float_state, si_entry, start_si
from .test_vedirect import state_value, wait_for

BANK = "sensor.battery_bank"
BANK_BINARY = "binary_sensor.battery_bank"
TOLERANCE = 0.1  # the bank's default share tolerance


@dataclass
class Pack:
    """One simulated pack and its entry."""

    name: str
    slug: str
    capacity: float
    sim: BmsSimulator
    entry: MockConfigEntry


def pack_entry(sim: BmsSimulator, protocol: str, title: str, **data: Any) -> MockConfigEntry:
    """A serial BMS entry as the config flow creates it, polling fast for the tests."""
    return MockConfigEntry(
        domain=DOMAIN,
        title=title,
        unique_id=f"{protocol}:{sim.serial_number}",
        data={
            "device": "serial_bms",
            "port": sim.port,
            "protocol": protocol,
            "address": data.get("address"),
            "invert_current": False,
            "serial_number": sim.serial_number,
            "cells": 16,
            "capacity_ah": sim.capacity_ah,
        },
        # Limits ramp up fast, so the tests need not wait for a real pack's 5 A/s.
        options={"poll_interval": 0.3, "ramp_rate": 100},
    )


@pytest.fixture
async def packs(hass: HomeAssistant) -> AsyncGenerator[list[Pack]]:
    """JBD 100 Ah at 40 %, Daly 200 Ah at 60 %, JK 280 Ah at 80 %: frozen, cells at rest."""
    made: list[tuple[str, float, BmsSimulator, str, dict[str, Any]]] = [
        (
            "Pack A",
            100.0,
            JbdSimulator(cells=16, capacity_ah=100.0, frozen=True, seed=11),
            "jbd",
            {},
        ),
        (
            "Pack B",
            200.0,
            DalySimulator(cells=16, capacity_ah=200.0, frozen=True, seed=12),
            "daly",
            {"address": 64},
        ),
        ("Pack C", 280.0, JkSimulator(cells=16, capacity_ah=280.0, frozen=True, seed=13), "jk", {}),
    ]
    result: list[Pack] = []
    for (name, capacity, sim, protocol, extra), soc, current, hot in zip(
        made, (40.0, 60.0, 80.0), (2.0, 4.0, 6.0), (21.0, 22.0, 23.0), strict=True
    ):
        sim.cell_voltages = list(CELLS)
        sim.soc = soc
        sim.current = current
        sim.temperatures = [hot, 18.0]
        await sim.start()
        entry = pack_entry(sim, protocol, name, **extra)
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        result.append(Pack(name, name.lower().replace(" ", "_"), capacity, sim, entry))
    await hass.async_block_till_done()
    yield result
    for pack in result:
        if pack.entry.state is ConfigEntryState.LOADED:
            await hass.config_entries.async_unload(pack.entry.entry_id)
        await pack.sim.stop()


async def create_bank(
    hass: HomeAssistant, packs: list[Pack], *, name: str = "Battery bank"
) -> ConfigEntry[Any] | dict[str, Any]:
    """Make a bank through the config flow; the entry, or the form with its errors."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert "battery_bank" in result["menu_options"]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "battery_bank"}
    )
    assert result["type"] is FlowResultType.FORM
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {"name": name, "packs": [p.entry.entry_id for p in packs], "shunt": "none"},
    )
    if result["type"] is not FlowResultType.CREATE_ENTRY:
        return dict(result)
    await hass.async_block_till_done()
    entry = hass.config_entries.async_get_entry(result["result"].entry_id)
    assert entry is not None
    return entry


async def make_bank(hass: HomeAssistant, packs: list[Pack]) -> ConfigEntry[Any]:
    entry = await create_bank(hass, packs)
    assert not isinstance(entry, dict), entry
    assert entry.state is ConfigEntryState.LOADED
    return entry


def pack_limit(hass: HomeAssistant, pack: Pack, which: str = "charge") -> float:
    return float_state(hass, f"sensor.{pack.slug}_{which}_current_limit")


def expected_limit(
    hass: HomeAssistant, taking: list[Pack], which: str = "charge"
) -> tuple[float, str]:
    """min over the packs taking current of (own limit / capacity share), and which pack."""
    total = sum(p.capacity for p in taking)
    bounds = {
        p.name: pack_limit(hass, p, which) / min(1.0, p.capacity / total * (1 + TOLERANCE))
        for p in taking
    }
    name = min(bounds, key=bounds.__getitem__)
    return bounds[name], name


def settled(
    hass: HomeAssistant, taking: list[Pack], which: str = "charge", *, positive: bool = True
) -> bool:
    """The bank's limit is what its packs' limits, shown now, make of it.

    ``positive``: and every pack allows some current (their limits ramp up after a start).
    """
    if positive and not all(pack_limit(hass, p, which) > 1.0 for p in taking):
        return False
    limit, _name = expected_limit(hass, taking, which)
    shown = float_state(hass, f"{BANK}_{which}_current_limit")
    return math.isfinite(limit) and shown == pytest.approx(limit, abs=0.06)


async def test_bank_values_and_limits(hass: HomeAssistant, packs: list[Pack]) -> None:
    bank = await make_bank(hass, packs)
    [device] = dr.async_entries_for_config_entry(dr.async_get(hass), bank.entry_id)
    assert device.model == "Battery bank, 16S LiFePO4"
    await wait_for(hass, lambda: state_value(hass, f"{BANK}_packs_online") == "3", timeout=10)
    # SOC weighted by capacity: (100·40 + 200·60 + 280·80) / 580.
    expected_soc = (100 * 40 + 200 * 60 + 280 * 80) / 580
    await wait_for(
        hass,
        lambda: (
            float_state(hass, f"{BANK}_state_of_charge") == pytest.approx(expected_soc, abs=0.6)
        ),
    )
    assert float_state(hass, f"{BANK}_nominal_capacity") == pytest.approx(580.0)
    assert float_state(hass, f"{BANK}_battery_current") == pytest.approx(12.0, abs=0.3)
    voltage = sum(CELLS)
    assert float_state(hass, f"{BANK}_battery_voltage") == pytest.approx(voltage, abs=0.05)
    assert float_state(hass, f"{BANK}_battery_power") == pytest.approx(voltage * 12.0, rel=0.03)
    low, high = min(CELLS), max(CELLS)
    assert float_state(hass, f"{BANK}_lowest_cell_voltage") == pytest.approx(low, abs=0.002)
    assert float_state(hass, f"{BANK}_highest_cell_voltage") == pytest.approx(high, abs=0.002)
    lowest = hass.states.get(f"{BANK}_lowest_cell_voltage")
    assert lowest is not None
    assert lowest.attributes["cell"] == CELLS.index(low) + 1
    assert lowest.attributes["pack"] in ("Pack A", "Pack B", "Pack C")
    assert float_state(hass, f"{BANK}_cell_spread") == pytest.approx(high - low, abs=0.002)
    assert float_state(hass, f"{BANK}_coldest_temperature") == pytest.approx(18.0)
    hottest = hass.states.get(f"{BANK}_hottest_temperature")
    assert hottest is not None
    assert float(hottest.state) == pytest.approx(23.0)
    assert hottest.attributes["pack"] == "Pack C"
    # The limits: every pack within its own, through its capacity share.
    await wait_for(hass, lambda: settled(hass, packs), timeout=15)
    await wait_for(hass, lambda: settled(hass, packs, "discharge"), timeout=15)
    _limit, name = expected_limit(hass, packs)
    assert state_value(hass, f"{BANK}_charge_limited_by_pack") == name
    assert state_value(hass, f"{BANK_BINARY}_pack_stale") == "off"
    assert state_value(hass, f"{BANK_BINARY}_pack_voltages_disagree") == "off"
    assert state_value(hass, f"{BANK}_stale_packs") == "none"
    # Energy for the dashboard: integrated from the bank's power, charging.
    await wait_for(hass, lambda: float_state(hass, f"{BANK}_charged_energy") > 0, timeout=10)
    assert float_state(hass, f"{BANK}_discharged_energy") == 0.0
    # A pack already in this bank cannot go into another one.
    refused = await create_bank(hass, packs[:2], name="Second bank")
    assert isinstance(refused, dict)
    assert refused["errors"] == {"packs": "pack_in_other_bank"}
    assert await hass.config_entries.async_unload(bank.entry_id)


async def test_one_cell_over_voltage_tapers_the_bank(
    hass: HomeAssistant, packs: list[Pack]
) -> None:
    await make_bank(hass, packs)
    await wait_for(hass, lambda: settled(hass, packs), timeout=15)
    before = float_state(hass, f"{BANK}_charge_current_limit")
    daly = packs[1]
    cells = list(CELLS)
    cells[4] = 3.52  # one cell of pack B in its taper curve
    daly.sim.cell_voltages = cells
    await wait_for(hass, lambda: pack_limit(hass, daly) < before * 0.2, timeout=15)
    await wait_for(hass, lambda: settled(hass, packs, positive=False), timeout=15)
    after = float_state(hass, f"{BANK}_charge_current_limit")
    assert after < before
    assert after == pytest.approx(pack_limit(hass, daly) / (200 / 580 * 1.1), abs=0.06)
    assert state_value(hass, f"{BANK}_charge_limited_by_pack") == "Pack B"
    assert state_value(hass, f"{BANK}_charge_limited_by") in ("cell_voltage", "overvoltage")
    highest = hass.states.get(f"{BANK}_highest_cell_voltage")
    assert highest is not None
    assert highest.attributes == {**highest.attributes, "pack": "Pack B", "cell": 5}


async def test_a_pack_with_its_charge_fet_off_drops_out_of_charging(
    hass: HomeAssistant, packs: list[Pack]
) -> None:
    await make_bank(hass, packs)
    await wait_for(hass, lambda: settled(hass, packs), timeout=15)
    packs[0].sim.charge_fet = False
    await wait_for(
        hass, lambda: state_value(hass, f"{BANK_BINARY}_pack_charge_fet_off") == "on", timeout=10
    )
    assert state_value(hass, f"{BANK}_packs_not_charging") == "Pack A"
    # Charging is shared by B and C alone; discharging by all three.
    await wait_for(hass, lambda: settled(hass, packs[1:]), timeout=15)
    await wait_for(hass, lambda: settled(hass, packs, "discharge"), timeout=15)
    assert state_value(hass, f"{BANK_BINARY}_pack_discharge_fet_off") == "off"
    packs[0].sim.charge_fet = True
    await wait_for(
        hass, lambda: state_value(hass, f"{BANK_BINARY}_pack_charge_fet_off") == "off", timeout=10
    )


async def test_stale_pack_stops_charging_at_the_sunny_island(
    hass: HomeAssistant, packs: list[Pack]
) -> None:
    bank = await make_bank(hass, packs)
    hass.config_entries.async_update_entry(bank, options={**bank.options, "stale_after": 5.0})
    await hass.async_block_till_done()
    si = await start_si(hass, si_entry(bank.entry_id, capacity_ah=580.0))
    await wait_for(hass, lambda: si.accepted.get("charge_current_limit", 0.0) > 5, timeout=15)
    # What the SI accepted never exceeds the bank's limit.
    await wait_for(hass, lambda: settled(hass, packs), timeout=15)
    assert (
        si.accepted["charge_current_limit"]
        <= float_state(hass, f"{BANK}_charge_current_limit") + 0.1
    )
    issues = ir.async_get(hass)
    issue_id = stale_pack_issue_id(bank.entry_id)
    packs[2].sim.set_silent(True)
    await wait_for(hass, lambda: si.accepted["charge_current_limit"] == 0.0, timeout=15)
    await wait_for(hass, lambda: issues.async_get_issue(DOMAIN, issue_id) is not None, timeout=10)
    issue = issues.async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["packs"] == "Pack C"
    assert state_value(hass, f"{BANK}_charge_limited_by") == "stale_pack"
    assert state_value(hass, f"{BANK}_charge_limited_by_pack") == "Pack C"
    assert state_value(hass, f"{BANK_BINARY}_pack_stale") == "on"
    # Discharging goes on within A's and B's shares.
    assert si.accepted["discharge_current_limit"] > 0
    assert state_value(hass, f"{BANK}_packs_online") == "2"
    packs[2].sim.set_silent(False)
    await wait_for(hass, lambda: si.accepted["charge_current_limit"] > 0.5, timeout=20)
    await wait_for(hass, lambda: issues.async_get_issue(DOMAIN, issue_id) is None, timeout=10)
    assert state_value(hass, f"{BANK_BINARY}_pack_stale") == "off"


async def test_packs_removed_and_added_in_the_options(
    hass: HomeAssistant, packs: list[Pack]
) -> None:
    bank = await make_bank(hass, packs)
    await wait_for(hass, lambda: state_value(hass, f"{BANK}_packs_online") == "3", timeout=10)

    async def set_packs(chosen: list[Pack]) -> dict[str, Any]:
        result = await hass.config_entries.options.async_init(bank.entry_id)
        assert result["step_id"] == "bank_options"
        result = await hass.config_entries.options.async_configure(
            result["flow_id"],
            {
                "packs": [p.entry.entry_id for p in chosen],
                "shunt": "none",
                "stale_after": 30,
                "voltage_disagreement": 0.5,
                "share_tolerance": 10,
                "allow_charging_with_stale_pack": False,
            },
        )
        await hass.async_block_till_done()
        return dict(result)

    refused = await set_packs(packs[:1])
    assert refused["errors"] == {"packs": "too_few_packs"}
    removed = await set_packs(packs[:2])
    assert removed["type"] is FlowResultType.CREATE_ENTRY
    assert bank.state is ConfigEntryState.LOADED  # applied live
    await wait_for(hass, lambda: state_value(hass, f"{BANK}_packs_online") == "2", timeout=5)
    assert float_state(hass, f"{BANK}_nominal_capacity") == pytest.approx(300.0)
    await wait_for(hass, lambda: settled(hass, packs[:2]), timeout=15)
    # The removed pack is free for another bank now.
    other = await create_bank(hass, [packs[2], packs[2]], name="Lonely")
    assert isinstance(other, dict)
    assert other["errors"] == {"packs": "too_few_packs"}
    added = await set_packs(packs)
    assert added["type"] is FlowResultType.CREATE_ENTRY
    await wait_for(hass, lambda: state_value(hass, f"{BANK}_packs_online") == "3", timeout=5)
    assert float_state(hass, f"{BANK}_nominal_capacity") == pytest.approx(580.0)
    await wait_for(hass, lambda: settled(hass, packs), timeout=15)


async def test_a_pack_whose_entry_is_deleted(hass: HomeAssistant, packs: list[Pack]) -> None:
    """Charging stops and the repair names the pack as it was; saving the options drops it."""
    bank = await make_bank(hass, packs)
    # The repair waits for stale_after after the bank's start (its packs may still be starting).
    hass.config_entries.async_update_entry(bank, options={**bank.options, "stale_after": 5.0})
    await hass.async_block_till_done()
    await wait_for(hass, lambda: state_value(hass, f"{BANK}_packs_online") == "3", timeout=10)
    await wait_for(hass, lambda: float_state(hass, f"{BANK}_charge_current_limit") > 1, timeout=15)
    assert await hass.config_entries.async_remove(packs[2].entry.entry_id)
    await hass.async_block_till_done()
    issues = ir.async_get(hass)
    issue_id = stale_pack_issue_id(bank.entry_id)
    await wait_for(hass, lambda: issues.async_get_issue(DOMAIN, issue_id) is not None, timeout=8)
    issue = issues.async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["packs"] == "Pack C"  # not its entry id
    assert float_state(hass, f"{BANK}_charge_current_limit") == 0.0
    assert state_value(hass, f"{BANK}_charge_limited_by_pack") == "Pack C"

    # The options form no longer offers or presets the deleted pack, so what it shows can be
    # saved as it is (a preset the picker does not offer would be refused by the picker).
    form = await hass.config_entries.options.async_init(bank.entry_id)
    schema = form["data_schema"]
    assert schema is not None
    defaults = {str(key): key.default() for key in schema.schema if callable(key.default)}
    remaining = [p.entry.entry_id for p in packs[:2]]
    assert defaults["packs"] == remaining
    picker = next(value for key, value in schema.schema.items() if str(key) == "packs")
    assert [o["value"] for o in picker.config["options"]] == remaining
    assert defaults["stale_after"] == 5.0
    defaults["share_tolerance"] = 10  # the form shows percent, the entry keeps a fraction
    saved = await hass.config_entries.options.async_configure(form["flow_id"], defaults)
    assert saved["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert bank.options["packs"] == remaining
    await wait_for(hass, lambda: issues.async_get_issue(DOMAIN, issue_id) is None, timeout=5)
    await wait_for(hass, lambda: float_state(hass, f"{BANK}_charge_current_limit") > 1, timeout=15)
    assert state_value(hass, f"{BANK}_packs_online") == "2"


async def test_reconfigure_and_sunny_island_cell_count(
    hass: HomeAssistant, packs: list[Pack]
) -> None:
    bank = await make_bank(hass, packs)
    # A Sunny Island set up for another cell count than the bank's is refused.
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "simulated"}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"simulated_device": "sunny_island"}
    )
    assert result["step_id"] == "sunny_island_battery"
    answer = {"chemistry": "lifepo4", "cells": 15, "capacity_ah": 580, "source": bank.entry_id}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], answer)
    assert result["errors"] == {"source": "bank_cells_mismatch"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {**answer, "cells": 16}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    # Reconfigure: the bank is made of two packs now.
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_RECONFIGURE, "entry_id": bank.entry_id}
    )
    assert result["step_id"] == "battery_bank_reconfigure"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {"packs": [packs[0].entry.entry_id, packs[2].entry.entry_id], "shunt": "none"},
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "battery_bank_reconfigured"
    await hass.async_block_till_done()
    assert bank.state is ConfigEntryState.LOADED
    await wait_for(hass, lambda: state_value(hass, f"{BANK}_packs_online") == "2", timeout=5)
    assert float_state(hass, f"{BANK}_nominal_capacity") == pytest.approx(380.0)
