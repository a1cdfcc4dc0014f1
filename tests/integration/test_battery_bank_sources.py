"""A bank's other sources and conditions: JK PB bus packs, a shunt, disagreeing voltages,
another cell count, energy across a restart, a bank that is not running.

Every pack is a simulator on a real PTY behind its own entry, as in ``test_battery_bank``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant, State
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    mock_restore_cache_with_extra_data,
)

from custom_components.sma_victron_bridge.const import DOMAIN
from custom_components.sma_victron_bridge.devices.battery_bank.bank_entry import (
    bank_settings_from_entry,
)
from custom_components.sma_victron_bridge.diagnostics import async_get_config_entry_diagnostics
from custom_components.sma_victron_bridge.simulators.bms import JbdSimulator
from custom_components.sma_victron_bridge.simulators.jk import JkPbBusSimulator
from custom_components.sma_victron_bridge.simulators.vedirect import VeDirectSimulator

from .conftest import vedirect_entry
from .test_battery_bank import (
    BANK,
    Pack,
    create_bank,
    make_bank,
    pack_entry,
    packs,  # noqa: F401 - the fixture
)
from .test_ble_bms import Radio, entry_for, jk, setup as ble_setup  # noqa: F401 - the fixture
from .test_serial_bms import CELLS
from .test_sunny_island import float_state, si_entry, start_si
from .test_vedirect import MPPT, state_value, wait_for

BINARY = "binary_sensor.battery_bank"


def bank_entry(pack_ids: list[str], **options: Any) -> MockConfigEntry:
    """A bank entry as the config flow makes it."""
    return MockConfigEntry(
        domain=DOMAIN,
        title="Battery bank",
        unique_id="battery_bank:test",
        data={"device": "battery_bank", "chemistry": "lifepo4", "cells": 16},
        options={"packs": pack_ids, "shunt": "none", **options},
    )


@pytest.fixture
async def bus(hass: HomeAssistant) -> AsyncGenerator[MockConfigEntry]:
    """A JK PB bus of two packs at addresses 1 and 2, set up as one entry."""
    sim = JkPbBusSimulator(addresses=(1, 2), frozen=True, seed=21, serial_numbers=["B1", "B2"])
    for pack in sim.packs.values():
        pack.cell_voltages = list(CELLS)
        pack.soc = 50.0
        pack.current = 3.0
    await sim.start()
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Bus",
        unique_id="jk_pb:B1",
        data={
            "device": "serial_bms",
            "port": sim.port,
            "protocol": "jk_pb",
            "packs": {"1": {"serial": "B1", "model": None}, "2": {"serial": "B2", "model": None}},
            "invert_current": False,
            "serial_number": None,
            "simulated": False,
            "cells": 16,
            "capacity_ah": 280.0,
        },
        options={"poll_interval": 0.3, "addresses": [1, 2]},
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    yield entry
    if entry.state is ConfigEntryState.LOADED:
        await hass.config_entries.async_unload(entry.entry_id)
    await sim.stop()


async def test_bus_packs_and_a_shunt(
    hass: HomeAssistant, bus: MockConfigEntry, bmv_sim: VeDirectSimulator
) -> None:
    shunt = vedirect_entry(bmv_sim, "battery_monitor")
    shunt.add_to_hass(hass)
    assert await hass.config_entries.async_setup(shunt.entry_id)
    await hass.async_block_till_done()
    members = [f"{bus.entry_id}:1", f"{bus.entry_id}:2"]
    bank = bank_entry(members, shunt=shunt.entry_id)
    bank.add_to_hass(hass)
    assert await hass.config_entries.async_setup(bank.entry_id)
    await hass.async_block_till_done()
    await wait_for(hass, lambda: state_value(hass, f"{BANK}_packs_online") == "2", timeout=10)
    packs_online = hass.states.get(f"{BANK}_packs_online")
    assert packs_online is not None
    assert packs_online.attributes["packs"] == {"Bus pack 1": "online", "Bus pack 2": "online"}
    # The current is the shunt's (the BMV's), not the packs' 6 A.
    runtime: Any = shunt.runtime_data

    def shunt_current() -> bool:
        snapshot = runtime.snapshot
        shown = hass.states.get(f"{BANK}_battery_current")
        return (
            snapshot is not None
            and shown is not None
            and shown.attributes.get("source") == "shunt"
            and float(shown.state) == pytest.approx(snapshot.current, abs=0.01)
        )

    await wait_for(hass, shunt_current, timeout=10)
    assert state_value(hass, f"{BINARY}_shunt_stale") == "off"
    # A shunt that stops is a problem; the bank falls back to the packs' sum.
    await bmv_sim.stop()
    assert await hass.config_entries.async_unload(shunt.entry_id)
    await wait_for(hass, lambda: state_value(hass, f"{BINARY}_shunt_stale") == "on", timeout=40)
    await wait_for(
        hass,
        lambda: float_state(hass, f"{BANK}_battery_current") == pytest.approx(6.0, abs=0.1),
        timeout=10,
    )
    # The flow offers the bus packs and the shunt where they belong; one bus pack is too few.
    result = await create_bank(hass, [])
    assert isinstance(result, dict)
    schema = result["data_schema"].schema
    pack_field = next(k for k in schema if k == "packs")
    offered = [o["value"] for o in schema[pack_field].config["options"]]
    assert set(members) <= set(offered)
    diagnostics = await async_get_config_entry_diagnostics(hass, bank)
    assert diagnostics["device"]["packs"] == members
    assert await hass.config_entries.async_unload(bank.entry_id)


async def test_disagreeing_voltages_and_the_repair_text(
    hass: HomeAssistant,
    packs: list[Pack],  # noqa: F811 - the fixture
) -> None:
    await make_bank(hass, packs)
    await wait_for(hass, lambda: state_value(hass, f"{BANK}_packs_online") == "3", timeout=10)
    packs[2].sim.voltage = sum(CELLS) - 2.0  # its BMS says the pack is off the bus
    await wait_for(
        hass, lambda: state_value(hass, f"{BINARY}_pack_voltages_disagree") == "on", timeout=10
    )
    assert state_value(hass, f"{BANK}_packs_disagreeing_on_voltage") == "Pack C"
    # The median ignores the odd one out.
    assert float_state(hass, f"{BANK}_battery_voltage") == pytest.approx(sum(CELLS), abs=0.05)
    packs[2].sim.voltage = None
    await wait_for(
        hass, lambda: state_value(hass, f"{BINARY}_pack_voltages_disagree") == "off", timeout=10
    )


async def test_a_pack_of_another_cell_count_is_refused(
    hass: HomeAssistant,
    packs: list[Pack],  # noqa: F811 - the fixture
) -> None:
    sim = JbdSimulator(cells=15, capacity_ah=100.0, frozen=True, seed=31)
    await sim.start()
    try:
        odd = pack_entry(sim, "jbd", "Pack D")
        odd.add_to_hass(hass)
        assert await hass.config_entries.async_setup(odd.entry_id)
        await hass.async_block_till_done()
        pack_d = Pack("Pack D", "pack_d", 100.0, sim, odd)
        result = await create_bank(hass, [packs[0], pack_d])
        assert isinstance(result, dict)
        assert result["errors"] == {"packs": "pack_mismatch"}
        assert result["description_placeholders"]["pack"] == "Pack D"
        assert result["description_placeholders"]["cells"] == "16"
        assert await hass.config_entries.async_unload(odd.entry_id)
    finally:
        await sim.stop()


async def test_energy_continues_after_a_restart(hass: HomeAssistant) -> None:
    """The totals come back before the packs do (they may still be starting)."""
    mock_restore_cache_with_extra_data(
        hass,
        (
            (
                State(f"{BANK}_charged_energy", "12.5"),
                {"native_value": 12.5, "native_unit_of_measurement": "kWh"},
            ),
            (
                State(f"{BANK}_discharged_energy", "3.25"),
                {"native_value": 3.25, "native_unit_of_measurement": "kWh"},
            ),
        ),
    )
    bank = bank_entry(["not-yet-a", "not-yet-b"])
    bank.add_to_hass(hass)
    assert await hass.config_entries.async_setup(bank.entry_id)
    await hass.async_block_till_done()
    assert float_state(hass, f"{BANK}_charged_energy") == pytest.approx(12.5)
    assert float_state(hass, f"{BANK}_discharged_energy") == pytest.approx(3.25)
    charged = hass.states.get(f"{BANK}_charged_energy")
    assert charged is not None
    assert charged.attributes["state_class"] == "total_increasing"
    runtime: Any = bank.runtime_data
    assert runtime.diagnostics()["energy"] == {"charged_kwh": 12.5, "discharged_kwh": 3.25}
    assert await hass.config_entries.async_unload(bank.entry_id)


async def test_sunny_island_holds_the_last_bank_limits_while_the_bank_reloads(
    hass: HomeAssistant,
    packs: list[Pack],  # noqa: F811 - the fixture
) -> None:
    bank = bank_entry(
        [p.entry.entry_id for p in packs],
        stale_after=5.0,
        allow_charging_with_stale_pack=True,
        share_tolerance=0.2,
        voltage_disagreement=0.5,
    )
    bank.add_to_hass(hass)
    assert await hass.config_entries.async_setup(bank.entry_id)
    await hass.async_block_till_done()
    settings = bank_settings_from_entry(bank)
    assert settings.allow_charging_with_stale_pack
    assert settings.share_tolerance == pytest.approx(0.2)
    si = await start_si(hass, si_entry(bank.entry_id, {"stale_after": 5.0}, capacity_ah=580.0))
    await wait_for(hass, lambda: si.accepted.get("charge_current_limit", 0.0) > 5, timeout=15)
    # A stale pack with charging allowed: charging goes on within the others' shares.
    packs[0].sim.set_silent(True)
    await wait_for(hass, lambda: state_value(hass, f"{BANK}_packs_online") == "2", timeout=15)
    await wait_for(
        hass,
        lambda: (
            float_state(hass, f"{BANK}_charge_current_limit") > 0
            and state_value(hass, f"{BANK}_stale_packs") == "Pack A"
        ),
        timeout=10,
    )
    assert si.accepted["charge_current_limit"] > 0
    packs[0].sim.set_silent(False)
    await wait_for(hass, lambda: state_value(hass, f"{BANK}_packs_online") == "3", timeout=15)
    # The bank reloads: the Sunny Island's frames go on, capped by the bank's last state.
    assert await hass.config_entries.async_reload(bank.entry_id)
    await hass.async_block_till_done()
    await wait_for(hass, lambda: si.accepted["charge_current_limit"] > 5, timeout=15)
    # A bank that is not running: its last state still caps, and its snapshot ages out.
    assert await hass.config_entries.async_unload(bank.entry_id)
    await wait_for(hass, lambda: si.accepted["charge_current_limit"] == 0.0, timeout=20)


async def test_packs_that_are_gone_count_as_stale(
    hass: HomeAssistant, bus: MockConfigEntry
) -> None:
    never = MockConfigEntry(
        domain=DOMAIN,
        title="Unplugged BMS",
        unique_id="jbd:never",
        data={"device": "serial_bms", "port": "/dev/null", "protocol": "jbd"},
    )
    never.add_to_hass(hass)  # never set up: nothing is known of it, not even its cells
    result = await create_bank(
        hass, [Pack("Unplugged BMS", "unplugged_bms", 100.0, JbdSimulator(), never)]
    )
    assert isinstance(result, dict)
    assert result["errors"] == {"packs": "too_few_packs"}
    flow = await hass.config_entries.flow.async_init(DOMAIN, context={"source": "user"})
    flow = await hass.config_entries.flow.async_configure(
        flow["flow_id"], {"next_step_id": "battery_bank"}
    )
    flow = await hass.config_entries.flow.async_configure(
        flow["flow_id"],
        {"name": "B", "packs": [never.entry_id, f"{bus.entry_id}:1"], "shunt": "none"},
    )
    assert flow["errors"] == {"packs": "pack_unknown"}
    placeholders = flow["description_placeholders"]
    assert placeholders is not None
    assert placeholders["pack"] == "Unplugged BMS"
    bank = bank_entry(["gone", f"{bus.entry_id}:9", never.entry_id])
    bank.add_to_hass(hass)
    assert await hass.config_entries.async_setup(bank.entry_id)
    await hass.async_block_till_done()
    runtime: Any = bank.runtime_data
    assert runtime.snapshot is None  # nothing was ever read: no battery to follow
    assert state_value(hass, f"{BANK}_packs_online") == "0"
    assert state_value(hass, f"{BINARY}_pack_stale") == "on"
    assert state_value(hass, f"{BANK}_stale_packs") == "gone, Bus pack 9, Unplugged BMS"
    assert state_value(hass, f"{BANK}_charge_current_limit") == "0.0"
    assert state_value(hass, f"{BANK}_charge_limited_by") == "stale_pack"
    assert await hass.config_entries.async_unload(bank.entry_id)
    runtime.refresh()  # a refresh after the bank stopped changes nothing
    assert runtime.data.refreshes == runtime.diagnostics()["refreshes"]


async def test_bank_forwarded_to_an_mppt(
    hass: HomeAssistant,
    packs: list[Pack],  # noqa: F811 - the fixture
    mppt_sim: VeDirectSimulator,
) -> None:
    bank = await make_bank(hass, packs)
    await wait_for(hass, lambda: state_value(hass, f"{BANK}_packs_online") == "3", timeout=10)
    mppt = vedirect_entry(mppt_sim, "mppt")
    mppt.add_to_hass(hass)
    assert await hass.config_entries.async_setup(mppt.entry_id)
    await hass.async_block_till_done()
    result = await hass.config_entries.options.async_init(mppt.entry_id)
    await hass.config_entries.options.async_configure(
        result["flow_id"], {"forward_source": bank.entry_id, "stale_after": 30}
    )
    await hass.async_block_till_done()
    await wait_for(
        hass,
        lambda: state_value(hass, f"{MPPT}_battery_sense_voltage") == f"{round(sum(CELLS), 2):g}",
        timeout=10,
    )
    assert state_value(hass, f"{MPPT}_battery_sense") == "forwarding"
    assert await hass.config_entries.async_unload(mppt.entry_id)


async def test_a_bluetooth_bms_is_a_pack_too(
    hass: HomeAssistant,
    packs: list[Pack],  # noqa: F811 - the fixture
    jk: Radio,  # noqa: F811 - the fixture
) -> None:
    ble = entry_for()
    await ble_setup(hass, ble)
    result = await create_bank(hass, [])
    assert isinstance(result, dict)
    schema = result["data_schema"].schema
    offered = [
        o["value"] for o in schema[next(k for k in schema if k == "packs")].config["options"]
    ]
    assert ble.entry_id in offered
    bank = bank_entry([packs[0].entry.entry_id, packs[1].entry.entry_id, ble.entry_id])
    bank.add_to_hass(hass)
    assert await hass.config_entries.async_setup(bank.entry_id)
    await hass.async_block_till_done()
    await wait_for(hass, lambda: state_value(hass, f"{BANK}_packs_online") == "3", timeout=15)
    assert float_state(hass, f"{BANK}_nominal_capacity") == pytest.approx(580.0)
    # 100 Ah at 40 %, 200 Ah at 60 %, the Bluetooth pack's 280 Ah at 64 %.
    soc = (100 * 40 + 200 * 60 + 280 * 64) / 580
    assert float_state(hass, f"{BANK}_state_of_charge") == pytest.approx(soc, abs=0.6)
    assert await hass.config_entries.async_unload(bank.entry_id)
    assert await hass.config_entries.async_unload(ble.entry_id)
