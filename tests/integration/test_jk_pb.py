"""JK PB inverter batteries on one RS485 bus in Home Assistant: one entry, one device per pack.

The bus is :class:`JkPbBusSimulator`: several addressed packs answering Modbus triggers on ONE
PTY, each with its own state, and any of them can be made silent. Entries are made by the config
flow or as the flow makes them; a Sunny Island fed by one pack is checked at the simulated SI.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import device_registry as dr, entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.sma_victron_bridge import async_remove_config_entry_device
from custom_components.sma_victron_bridge.const import DOMAIN
from custom_components.sma_victron_bridge.devices.battery_source import (
    EntryBatterySource,
    battery_source_options,
)
from custom_components.sma_victron_bridge.devices.serial_bms.bus import async_scan_bus
from custom_components.sma_victron_bridge.devices.serial_bms.bus_entry import bus_addresses
from custom_components.sma_victron_bridge.devices.serial_bms.flow import same_bus
from custom_components.sma_victron_bridge.devices.sunny_island.flow import battery_sources
from custom_components.sma_victron_bridge.simulators.jk import JkPbBusSimulator
from custom_components.sma_victron_bridge.simulators.vedirect import VeDirectSimulator

from .conftest import vedirect_entry
from .test_config_flow import start_simulated
from .test_forwarding import SENSE_T, SENSE_V, writes_of
from .test_serial_bms import CELLS, _start_flow
from .test_sunny_island import si_entry, start_si
from .test_vedirect import setup_entry, state_value, wait_for

SERIALS = ("PBSER00001", "PBSER00002", "PBSER00003")
SOCS = {1: 81.0, 2: 47.0, 3: 12.0}
CURRENTS = {1: 5.5, 2: -20.0, 3: 0.0}
PACK = "sensor.bus_pack"


def _pack_cells(address: int) -> list[float]:
    """Each pack its own cells: pack n's first cell reads 3.30n V."""
    cells = list(CELLS)
    cells[0] = round(3.300 + address / 1000, 3)
    return cells


@pytest.fixture
async def bus_sim() -> AsyncGenerator[JkPbBusSimulator]:
    """Three frozen 16s packs at addresses 1-3, each with its own state."""
    sim = JkPbBusSimulator(addresses=(1, 2, 3), frozen=True, seed=11, serial_numbers=SERIALS)
    for address, pack in sim.packs.items():
        pack.cell_voltages = _pack_cells(address)
        pack.soc = SOCS[address]
        pack.current = CURRENTS[address]
    await sim.start()
    yield sim
    await sim.stop()


def bus_entry(
    sim: JkPbBusSimulator,
    addresses: list[int] | None = None,
    known: tuple[int, ...] = (1, 2, 3),
) -> MockConfigEntry:
    """A bus entry as the config flow creates it, polling fast for the tests."""
    return MockConfigEntry(
        domain=DOMAIN,
        title="Bus",
        unique_id=f"jk_pb:{SERIALS[0]}",
        data={
            "device": "serial_bms",
            "port": sim.port,
            "protocol": "jk_pb",
            "packs": {
                str(a): {"serial_number": SERIALS[a - 1], "model": sim.packs[a].model}
                for a in known
            },
            "invert_current": False,
            "serial_number": None,
            "simulated": False,
            "cells": 16,
            "capacity_ah": 280.0,
        },
        options={"poll_interval": 0.3, "addresses": addresses or list(known)},
    )


async def setup(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED


def pack_devices(hass: HomeAssistant, entry: MockConfigEntry) -> dict[str, dr.DeviceEntry]:
    """The entry's devices by name."""
    registry = dr.async_get(hass)
    return {
        str(device.name): device
        for device in dr.async_entries_for_config_entry(registry, entry.entry_id)
    }


async def test_flow_detects_the_bus_scans_it_and_makes_a_device_per_pack(
    hass: HomeAssistant, bus_sim: JkPbBusSimulator
) -> None:
    result = await _start_flow(hass)
    # Detect finds no single BMS but PB packs, and scans the bus for every pack.
    result = dict(
        await hass.config_entries.flow.async_configure(
            result["flow_id"], {"port": bus_sim.port, "protocol": "auto"}
        )
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "serial_bms_bus"
    placeholders = result["description_placeholders"]
    assert placeholders["count"] == "3"
    for serial in SERIALS:
        assert serial in placeholders["packs"]
    result = dict(
        await hass.config_entries.flow.async_configure(result["flow_id"], {"addresses": []})
    )
    assert result["errors"] == {"addresses": "no_addresses"}
    result = dict(
        await hass.config_entries.flow.async_configure(
            result["flow_id"], {"addresses": ["1", "2", "3"]}
        )
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "JK PB bus"
    assert result["data"]["protocol"] == "jk_pb"
    assert set(result["data"]["packs"]) == {"1", "2", "3"}
    assert result["data"]["packs"]["2"]["serial_number"] == SERIALS[1]
    assert result["options"]["addresses"] == [1, 2, 3]
    entry = result["result"]
    assert entry.unique_id == f"jk_pb:{SERIALS[0]}"
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    # Three packs → three devices, named after the bus, each with its own serial number.
    devices = pack_devices(hass, entry)
    assert set(devices) == {"JK PB bus pack 1", "JK PB bus pack 2", "JK PB bus pack 3"}
    assert devices["JK PB bus pack 3"].serial_number == SERIALS[2]
    assert devices["JK PB bus pack 3"].manufacturer == "JK"
    # Each pack's values, on its own device.
    for address in (1, 2, 3):
        name = f"sensor.jk_pb_bus_pack_{address}"
        assert float(state_value(hass, f"{name}_state_of_charge") or 0) == SOCS[address]
        current = float(state_value(hass, f"{name}_battery_current") or 0)
        assert current == pytest.approx(CURRENTS[address])
        assert state_value(hass, f"{name}_cell_1_voltage") == f"{3.300 + address / 1000:.3f}"
    # The running entry holds the port: nobody else can open it.
    result = await _start_flow(hass)
    result = dict(
        await hass.config_entries.flow.async_configure(
            result["flow_id"], {"port": bus_sim.port, "protocol": "jk_pb"}
        )
    )
    assert result["errors"] == {"base": "cannot_connect"}
    # The same bus again, while its entry is not running: already configured.
    assert await hass.config_entries.async_unload(entry.entry_id)
    result = await _start_flow(hass)
    result = dict(
        await hass.config_entries.flow.async_configure(
            result["flow_id"], {"port": bus_sim.port, "protocol": "jk_pb"}
        )
    )
    result = dict(
        await hass.config_entries.flow.async_configure(
            result["flow_id"], {"addresses": ["1", "2", "3"]}
        )
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_flow_on_a_bus_without_packs(hass: HomeAssistant, bus_sim: JkPbBusSimulator) -> None:
    for address in bus_sim.addresses:
        bus_sim.set_silent(address, True)
    result = await _start_flow(hass)
    result = dict(
        await hass.config_entries.flow.async_configure(
            result["flow_id"], {"port": bus_sim.port, "protocol": "jk_pb"}
        )
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "serial_bms"
    assert result["errors"] == {"base": "no_packs"}


async def test_values_snapshots_and_entities_per_pack(
    hass: HomeAssistant, bus_sim: JkPbBusSimulator
) -> None:
    entry = bus_entry(bus_sim)
    await setup(hass, entry)
    runtime: Any = entry.runtime_data
    for address in (1, 2, 3):
        snapshot = runtime.member_snapshot(str(address))
        assert snapshot is not None
        assert snapshot.soc == SOCS[address]
        assert snapshot.cell_voltages[0] == pytest.approx(3.300 + address / 1000)
        source = EntryBatterySource(hass, f"{entry.entry_id}:{address}")
        assert source.name == f"Bus pack {address}"
        source_snapshot = source.snapshot()
        assert source_snapshot is not None
        assert source_snapshot.soc == SOCS[address]
    assert runtime.member_snapshot("9") is None
    assert runtime.member_snapshot("x") is None
    # The bus entry itself is no battery: only its packs are.
    assert runtime.snapshot is None
    # Every serial BMS entity, per pack; no FET switch (the PB protocol's writes are not known).
    registry = er.async_get(hass)
    items = er.async_entries_for_config_entry(registry, entry.entry_id)
    assert {item.domain for item in items} == {"sensor", "binary_sensor"}
    per_pack = {
        address: {i.unique_id for i in items if f"_pack_{address}_" in i.unique_id}
        for address in (1, 2, 3)
    }
    assert len(per_pack[1]) == len(per_pack[2]) == len(per_pack[3]) > 50
    assert f"{PACK}_2_charge_current_limit" in {i.entity_id for i in items}
    assert state_value(hass, f"{PACK}_2_charge_voltage_limit") == "55.2"
    # Each pack changes on its own.
    bus_sim.packs[3].soc = 13.0
    await wait_for(hass, lambda: state_value(hass, f"{PACK}_3_state_of_charge") == "13.0")
    assert state_value(hass, f"{PACK}_1_state_of_charge") == "81.0"
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_silent_pack_goes_unavailable_alone_and_comes_back(
    hass: HomeAssistant, bus_sim: JkPbBusSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    entry = bus_entry(bus_sim)
    await setup(hass, entry)
    runtime: Any = entry.runtime_data
    bus_sim.set_silent(2, True)
    await wait_for(
        hass, lambda: state_value(hass, f"{PACK}_2_state_of_charge") == STATE_UNAVAILABLE
    )
    # The others keep going: their values still change while pack 2 is away.
    polls = runtime.packs[1].data.polls
    bus_sim.packs[1].soc = 80.0
    await wait_for(hass, lambda: state_value(hass, f"{PACK}_1_state_of_charge") == "80.0")
    assert runtime.packs[1].data.polls > polls
    assert state_value(hass, f"{PACK}_3_state_of_charge") == "12.0"
    assert runtime.packs[2].data.failures >= 1
    assert "Bus pack 2 stopped answering" in caplog.text
    bus_sim.packs[2].soc = 45.0
    bus_sim.set_silent(2, False)
    await wait_for(hass, lambda: state_value(hass, f"{PACK}_2_state_of_charge") == "45.0")
    assert "Bus pack 2 is back" in caplog.text
    # Pulling the bus cable takes every pack away; all return when it is back.
    await bus_sim.unplug()
    socs = [f"{PACK}_{address}_state_of_charge" for address in (1, 2, 3)]
    await wait_for(
        hass,
        lambda: all(state_value(hass, soc) == STATE_UNAVAILABLE for soc in socs),
        timeout=10,
    )
    await bus_sim.replug()
    await wait_for(
        hass,
        lambda: all(state_value(hass, soc) != STATE_UNAVAILABLE for soc in socs),
        timeout=15,
    )
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_setup_waits_while_no_pack_answers(
    hass: HomeAssistant, bus_sim: JkPbBusSimulator
) -> None:
    for address in bus_sim.addresses:
        bus_sim.set_silent(address, True)
    entry = bus_entry(bus_sim)
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY


async def test_a_pack_silent_at_setup_appears_when_it_answers(
    hass: HomeAssistant, bus_sim: JkPbBusSimulator
) -> None:
    bus_sim.set_silent(3, True)
    entry = bus_entry(bus_sim)
    await setup(hass, entry)
    assert state_value(hass, f"{PACK}_1_state_of_charge") == "81.0"
    assert hass.states.get(f"{PACK}_3_state_of_charge") is None
    bus_sim.set_silent(3, False)
    await wait_for(hass, lambda: state_value(hass, f"{PACK}_3_state_of_charge") == "12.0")
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_options_choose_packs_rescan_and_stale_pack_removal(
    hass: HomeAssistant, bus_sim: JkPbBusSimulator
) -> None:
    # The entry knows packs 1 and 2 only (pack 3 was off when the bus was scanned).
    entry = bus_entry(bus_sim, known=(1, 2))
    await setup(hass, entry)
    assert set(pack_devices(hass, entry)) == {"Bus pack 1", "Bus pack 2"}
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["step_id"] == "bus_packs"
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"addresses": [], "rescan": False}
    )
    assert result["errors"] == {"addresses": "no_addresses"}
    # A rescan over the running entry's port finds pack 3 and ticks it.
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"addresses": ["1", "2"], "rescan": True}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "bus_packs"
    schema = result["data_schema"]
    assert schema is not None
    defaults = {str(key): key.default() for key in schema.schema}
    assert defaults["addresses"] == ["1", "2", "3"]
    # Keep packs 1 and 3; then the charge settings of every pack, as for any serial BMS.
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"addresses": ["1", "3"], "rescan": False}
    )
    assert result["step_id"] == "bms_settings"
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"poll_interval": 1.0, "bulk_current": 60}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert entry.options["addresses"] == [1, 3]
    assert set(entry.data["packs"]) == {"1", "2", "3"}
    assert entry.data["packs"]["3"]["serial_number"] == SERIALS[2]
    await wait_for(hass, lambda: state_value(hass, f"{PACK}_3_state_of_charge") == "12.0")
    runtime: Any = entry.runtime_data
    assert set(runtime.packs) == {1, 3}
    assert runtime.packs[3].controller.settings.bulk_current == 60
    # Pack 2 is no longer read: its entities stay unavailable, and its device may go.
    assert state_value(hass, f"{PACK}_2_state_of_charge") == STATE_UNAVAILABLE
    devices = pack_devices(hass, entry)
    assert not await async_remove_config_entry_device(hass, entry, devices["Bus pack 1"])
    assert not await async_remove_config_entry_device(hass, entry, devices["Bus pack 3"])
    assert await async_remove_config_entry_device(hass, entry, devices["Bus pack 2"])
    dr.async_get(hass).async_remove_device(devices["Bus pack 2"].id)
    assert set(pack_devices(hass, entry)) == {"Bus pack 1", "Bus pack 3"}
    # The source pickers list the packs read, not the bus.
    values = {option["value"] for option in battery_source_options(hass)}
    assert values == {f"{entry.entry_id}:1", f"{entry.entry_id}:3"}
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_rescan_of_an_entry_that_is_not_running(
    hass: HomeAssistant, bus_sim: JkPbBusSimulator
) -> None:
    entry = bus_entry(bus_sim, known=(1,))
    entry.add_to_hass(hass)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"addresses": ["1"], "rescan": True}
    )
    schema = result["data_schema"]
    assert schema is not None
    defaults = {str(key): key.default() for key in schema.schema}
    assert defaults["addresses"] == ["1", "2", "3"]
    for address in bus_sim.addresses:
        bus_sim.set_silent(address, True)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"addresses": ["1"], "rescan": True}
    )
    assert result["errors"] == {"base": "no_packs"}


async def test_reconfigure_needs_one_of_the_bus_packs(
    hass: HomeAssistant, bus_sim: JkPbBusSimulator
) -> None:
    entry = bus_entry(bus_sim)
    await setup(hass, entry)
    # The same bus on another adapter: one of its packs (pack 2) answers there.
    moved = JkPbBusSimulator(addresses=(2,), frozen=True, seed=11, serial_numbers=[SERIALS[1]])
    moved.packs[2].cell_voltages = list(CELLS)
    moved.packs[2].soc = 33.0
    other = JkPbBusSimulator(addresses=(1,), frozen=True, seed=12, serial_numbers=["OTHER0001"])
    await moved.start()
    await other.start()
    try:
        result = dict(await entry.start_reconfigure_flow(hass))
        assert result["step_id"] == "serial_bms_reconfigure"
        flow_id = result["flow_id"]
        moved.set_silent(2, True)
        result = dict(await hass.config_entries.flow.async_configure(flow_id, {"port": moved.port}))
        assert result["errors"] == {"base": "no_packs"}
        moved.set_silent(2, False)
        result = dict(await hass.config_entries.flow.async_configure(flow_id, {"port": other.port}))
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "wrong_device"
        assert entry.data["port"] == bus_sim.port

        result = dict(await entry.start_reconfigure_flow(hass))
        result = dict(
            await hass.config_entries.flow.async_configure(result["flow_id"], {"port": moved.port})
        )
        assert result["reason"] == "reconfigure_successful"
        assert entry.data["port"] == moved.port
        await wait_for(hass, lambda: state_value(hass, f"{PACK}_2_state_of_charge") == "33.0")
        # Packs 1 and 3 are not on this adapter: unavailable, not gone.
        assert state_value(hass, f"{PACK}_1_state_of_charge") == STATE_UNAVAILABLE
        assert entry.state is ConfigEntryState.LOADED
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await moved.stop()
        await other.stop()


async def test_diagnostics_per_pack_without_identifying_values(
    hass: HomeAssistant, bus_sim: JkPbBusSimulator, hass_client: ClientSessionGenerator
) -> None:
    bus_sim.set_silent(3, True)
    entry = bus_entry(bus_sim)
    await setup(hass, entry)
    await asyncio.sleep(0.5)
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    assert diagnostics["entry"]["data"]["port"] == "**REDACTED**"
    device: Any = diagnostics["device"]
    assert device["protocol"] == "jk_pb"
    assert device["link_up"] is True
    assert set(device["packs"]) == {"1", "2", "3"}
    assert device["packs"]["1"]["link_up"] is True
    assert device["packs"]["3"]["link_up"] is False
    assert device["packs"]["3"]["failures"] >= 1
    assert device["packs"]["2"]["polls"] >= 1
    assert set(device["error_counters"]) == {"checksum_errors", "discarded_bytes"}
    assert "cell_voltages=(3.302" in device["packs"]["2"]["reading"]
    text = repr(diagnostics)
    assert bus_sim.port not in text
    # Serial numbers stay out, also inside the readings.
    for serial in SERIALS:
        assert serial not in text
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_sunny_island_fed_by_pack_2(hass: HomeAssistant, bus_sim: JkPbBusSimulator) -> None:
    bus = bus_entry(bus_sim)
    await setup(hass, bus)
    # A Bluetooth BMS entry and a plain serial BMS entry are offered too.
    MockConfigEntry(
        domain=DOMAIN, title="BLE pack", data={"device": "ble_bms"}, entry_id="blebms"
    ).add_to_hass(hass)

    class _Flow:
        pass

    flow: Any = _Flow()
    flow.hass = hass
    options = {option["value"]: option["label"] for option in battery_sources(flow)}
    assert options[f"{bus.entry_id}:2"] == "Bus pack 2"
    assert options["blebms"] == "BLE pack"
    assert bus.entry_id not in options
    assert "entities" in options

    si = si_entry(f"{bus.entry_id}:2")
    sim = await start_si(hass, si)
    await wait_for(hass, lambda: sim.accepted.get("soc") == pytest.approx(SOCS[2]), timeout=10)
    # The SI gets pack 2's values, not pack 1's or 3's.
    assert sim.accepted["soc"] == pytest.approx(47.0)
    bus_sim.packs[2].soc = 44.0
    await wait_for(hass, lambda: sim.accepted.get("soc") == pytest.approx(44.0), timeout=10)
    si_runtime: Any = si.runtime_data
    assert si_runtime.diagnostics()["source"] == "Bus pack 2"
    assert await hass.config_entries.async_unload(si.entry_id)
    assert await hass.config_entries.async_unload(bus.entry_id)


def forwarding_mppt(options: dict[str, Any] | None = None) -> MockConfigEntry:
    """An MPPT entry (never set up) whose options flow offers the battery-sense sources."""
    return MockConfigEntry(
        domain=DOMAIN,
        title="MPPT",
        data={"device": "vedirect", "port": "/dev/null", "family": "mppt"},
        options=options or {},
    )


async def forward_source_picker(hass: HomeAssistant, entry: MockConfigEntry) -> Any:
    """The options form's forward_source key (its default) and selector, the flow aborted."""
    result = await hass.config_entries.options.async_init(entry.entry_id)
    schema = result["data_schema"]
    assert schema is not None
    hass.config_entries.options.async_abort(result["flow_id"])
    return next(item for item in schema.schema.items() if str(item[0]) == "forward_source")


async def test_forwarding_picker_lists_the_packs(
    hass: HomeAssistant, bus_sim: JkPbBusSimulator
) -> None:
    bus = bus_entry(bus_sim, addresses=[2])
    bus.add_to_hass(hass)
    mppt = forwarding_mppt()
    mppt.add_to_hass(hass)
    _key, picker = await forward_source_picker(hass, mppt)
    offered = {option["value"]: option["label"] for option in picker.config["options"]}
    assert offered[f"{bus.entry_id}:2"] == "Bus pack 2"
    assert f"{bus.entry_id}:1" not in offered


async def test_forwarding_picker_drops_a_deleted_source(
    hass: HomeAssistant, bus_sim: JkPbBusSimulator
) -> None:
    bus = bus_entry(bus_sim, addresses=[2])
    bus.add_to_hass(hass)
    mppt = forwarding_mppt({"forward_source": f"{bus.entry_id}:2", "stale_after": 30.0})
    mppt.add_to_hass(hass)
    key, _picker = await forward_source_picker(hass, mppt)
    assert key.default() == f"{bus.entry_id}:2"
    assert await hass.config_entries.async_remove(bus.entry_id)
    # Not offered any more, so not preset (the picker would refuse its own preset): "Off".
    key, _picker = await forward_source_picker(hass, mppt)
    assert key.default() == "none"


async def test_simulated_bus_from_the_simulated_menu(hass: HomeAssistant) -> None:
    result = await start_simulated(hass, "serial_bms_jk_pb")
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Simulated JK PB bus"
    assert result["data"]["simulated"] is True
    assert result["options"]["addresses"] == [1, 2, 3]
    entry = result["result"]
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    serial = entry.data["serial_number"]
    assert entry.data["packs"]["2"]["serial_number"] == f"{serial}P2"
    devices = pack_devices(hass, entry)
    assert len(devices) == 3
    runtime: Any = entry.runtime_data
    assert isinstance(runtime.simulator, JkPbBusSimulator)
    for address in (1, 2, 3):
        assert runtime.member_snapshot(str(address)) is not None
    assert await hass.config_entries.async_unload(entry.entry_id)
    result = dict(
        await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": "reconfigure", "entry_id": entry.entry_id}
        )
    )
    assert result["reason"] == "simulated_fixed"


async def test_bus_entry_helpers(hass: HomeAssistant, bus_sim: JkPbBusSimulator) -> None:
    """Packs without serial numbers are recognised by address; no option reads every pack."""
    entry = bus_entry(bus_sim)
    entry = MockConfigEntry(
        domain=DOMAIN, data={**entry.data}, options={"poll_interval": 0.3}, title="Bus"
    )
    assert bus_addresses(entry) == [1, 2, 3]
    scan = await async_scan_bus(bus_sim.port, (2, 5))
    assert set(scan.packs) == {2}
    assert same_bus({1: {"serial_number": SERIALS[0]}, 2: {"serial_number": "GONE"}}, scan) is False
    assert same_bus({2: {"serial_number": SERIALS[1]}}, scan) is True
    assert same_bus({2: {"serial_number": None}}, scan) is True
    assert same_bus({4: {}}, scan) is False
    # The bus itself has no device and no entities: its packs have.
    await setup(hass, entry)
    runtime: Any = entry.runtime_data
    assert runtime.device_info == {}
    assert runtime.descriptions("sensor") == ()
    assert runtime.coordinator.link_up
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_pack_2_forwarded_to_an_mppt(
    hass: HomeAssistant, bus_sim: JkPbBusSimulator, mppt_sim: VeDirectSimulator
) -> None:
    """Battery-sense forwarding follows one pack of the bus like any battery source."""
    bus = bus_entry(bus_sim)
    await setup(hass, bus)
    bus_sim.packs[2].temperatures = [31.0, 28.0]
    runtime: Any = bus.runtime_data
    await wait_for(
        hass,
        lambda: (
            (snapshot := runtime.member_snapshot("2")) is not None and snapshot.temperature == 31.0
        ),
    )
    mppt = vedirect_entry(
        mppt_sim, "mppt", {"forward_source": f"{bus.entry_id}:2", "stale_after": 30.0}
    )
    await setup_entry(hass, mppt)
    await wait_for(hass, lambda: bool(writes_of(mppt_sim, SENSE_T)), timeout=8)
    await wait_for(hass, lambda: bool(writes_of(mppt_sim, SENSE_V)), timeout=8)
    voltage = runtime.member_snapshot("2").voltage
    written = int.from_bytes(writes_of(mppt_sim, SENSE_V)[-1][1], "little")
    assert written == round(voltage * 100)
    # Pack 2's hottest sensor, not pack 1's or 3's.
    assert writes_of(mppt_sim, SENSE_T)[0][1] == (3100).to_bytes(2, "little", signed=True)
    assert await hass.config_entries.async_unload(mppt.entry_id)
    assert await hass.config_entries.async_unload(bus.entry_id)
