"""Bluetooth BMSes in Home Assistant: discovery, entities, range, failures, options, SI source.

The BMS is a fake peer from ``simulators/ble_bms.py`` behind a connectable scanner registered with
Home Assistant's Bluetooth manager like an ESPHome proxy's; its connector's client backend is the
simulator's bleak backend. Discovery, ``bms_identify``, Home Assistant's ``BleakClient`` wrapper,
bleak-retry-connector and ``aiobmsble`` itself all run for real against it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from unittest.mock import patch

from habluetooth.const import UNAVAILABLE_TRACK_SECONDS
from homeassistant.components import bluetooth
from homeassistant.config_entries import (
    SOURCE_RECONFIGURE,
    SOURCE_USER,
    ConfigEntryState,
)
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType, InvalidData
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.sma_victron_bridge.const import DOMAIN
from custom_components.sma_victron_bridge.devices.ble_bms import runtime as ble_runtime
from custom_components.sma_victron_bridge.devices.ble_bms.runtime import (
    SIMULATED_BMSES,
    BleBmsRuntime,
    SimulatedBms,
    SimulatedBmsScanner,
    use_home_assistant_bleak_client,
)
from custom_components.sma_victron_bridge.simulators.ble_bms import (
    BleBatteryState,
    BlePeer,
    DalyBlePeer,
    JbdBlePeer,
    JkBlePeer,
    register_peer,
)
from tests.integration.devices import find_device

pytestmark = pytest.mark.usefixtures("enable_bluetooth")

ADDRESS = "C0:DE:B5:00:00:01"
JK = SIMULATED_BMSES["jk"]
CELLS = [3.301, 3.302, 3.300, 3.304, 3.299, 3.303, 3.301, 3.302] * 2
ENTITY = "sensor.jk_b2a8s20p"


def frozen_pack() -> BleBatteryState:
    """A 16s 280 Ah pack at 64 % that keeps exactly what is set (+10 A charging)."""
    battery = BleBatteryState(cells=16, capacity_ah=280.0, soc=64.0, frozen=True, seed=3)
    battery.cell_voltages = list(CELLS)
    battery.current = 10.0
    battery.temperatures = [21.0, 23.0]
    battery.mosfet_temperature = 27.0
    return battery


@dataclass
class Radio:
    """A fake BMS in range of a simulated connectable proxy."""

    hass: HomeAssistant
    address: str
    bms: SimulatedBms
    peer: BlePeer
    scanner: SimulatedBmsScanner
    cancel: list[Callable[[], None]]

    def advertise(self) -> None:
        self.scanner.async_advertise()

    def close(self) -> None:
        while self.cancel:
            self.cancel.pop()()


def radio(
    hass: HomeAssistant, peer: BlePeer, address: str = ADDRESS, bms: SimulatedBms = JK
) -> Radio:
    """Put ``peer`` in range: registered for the backend, heard by a proxy-like scanner."""
    scanner = SimulatedBmsScanner(address, bms)
    cancel = [
        register_peer(address, peer),
        bluetooth.async_register_scanner(hass, scanner, connection_slots=3),
        scanner.async_setup(),
    ]
    result = Radio(hass, address, bms, peer, scanner, cancel)
    result.advertise()
    return result


@pytest.fixture
async def jk(hass: HomeAssistant) -> AsyncGenerator[Radio]:
    """A JK BMS (frozen pack) heard through a simulated proxy."""
    heard = radio(hass, JkBlePeer(battery=frozen_pack()))
    yield heard
    heard.close()


def state(hass: HomeAssistant, entity_id: str) -> str | None:
    current = hass.states.get(entity_id)
    return None if current is None else current.state


def select_options(result: Any, key: str) -> list[dict[str, str]]:
    schema = result["data_schema"]
    assert schema is not None
    options: list[dict[str, str]] = schema.schema[key].config["options"]
    return options


def number(hass: HomeAssistant, entity_id: str) -> float | None:
    try:
        return float(state(hass, entity_id) or "")
    except ValueError:
        return None


async def wait_for(
    hass: HomeAssistant, predicate: Callable[[], bool], timeout: float = 10.0
) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)
            await hass.async_block_till_done()


def entry_for(
    address: str = ADDRESS, options: dict[str, Any] | None = None, **data: Any
) -> MockConfigEntry:
    return MockConfigEntry(
        domain=DOMAIN,
        title="JK_B2A8S20P",
        unique_id=address,
        data={
            "device": "ble_bms",
            "address": address,
            "family": "jikong_bms",
            "simulated": False,
            "cells": 16,
            "capacity_ah": 280.0,
            **data,
        },
        options=options or {},
    )


async def setup(hass: HomeAssistant, entry: MockConfigEntry) -> BleBmsRuntime:
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    runtime = entry.runtime_data
    assert isinstance(runtime, BleBmsRuntime)
    return runtime


def entry_state(entry: MockConfigEntry) -> ConfigEntryState:
    current: ConfigEntryState = entry.state
    return current


async def go_out_of_range(hass: HomeAssistant, heard: Radio) -> None:
    """The BMS leaves: no more adverts, no connection; Home Assistant's tracking notices."""
    heard.peer.refuse_connections = True
    later = bluetooth.MONOTONIC_TIME() + 1000
    with (
        patch("habluetooth.base_scanner.monotonic_time_coarse", return_value=later),
        patch("habluetooth.manager.monotonic_time_coarse", return_value=later),
    ):
        async_fire_time_changed(
            hass, dt_util.utcnow() + timedelta(seconds=UNAVAILABLE_TRACK_SECONDS + 1)
        )
        await hass.async_block_till_done()


# --- discovery --------------------------------------------------------------------------------


async def test_discovery_confirm_entities_range_and_back(
    hass: HomeAssistant, jk: Radio, caplog: pytest.LogCaptureFixture
) -> None:
    # The advertisement reaches HA through the proxy; the manifest's matcher starts a flow,
    # which the Victron step routes to the BMS steps, and the library names the family.
    await wait_for(hass, lambda: bool(hass.config_entries.flow.async_progress_by_handler(DOMAIN)))
    (flow,) = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert flow["step_id"] == "ble_bms_confirm"
    assert flow["context"]["unique_id"] == ADDRESS
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == JK.name
    assert result["data"] == {
        "device": "ble_bms",
        "address": ADDRESS,
        "family": "jikong_bms",
        "simulated": False,
        "cells": 16,
        "capacity_ah": pytest.approx(280.0),
    }
    await hass.async_block_till_done()
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    assert entry.state is ConfigEntryState.LOADED
    # The probe closed its connection; the runtime holds exactly one.
    assert jk.peer.connections == 1
    assert number(hass, f"{ENTITY}_state_of_charge") == 64
    assert float(state(hass, f"{ENTITY}_battery_voltage") or 0) == pytest.approx(
        sum(CELLS), abs=0.01
    )
    assert float(state(hass, f"{ENTITY}_battery_current") or 0) == pytest.approx(10.0, abs=0.01)
    assert float(state(hass, f"{ENTITY}_cell_4_voltage") or 0) == pytest.approx(3.304)
    assert float(state(hass, f"{ENTITY}_cell_voltage_spread") or 0) == pytest.approx(0.005)
    assert float(state(hass, f"{ENTITY}_mosfet_temperature") or 0) == pytest.approx(27.0)
    assert state(hass, f"{ENTITY}_charge_limited_by") is not None
    device = find_device(hass, ADDRESS)
    assert device is not None
    assert device.model == "JK_PB2A16S20P"
    # The serial number the BMS reports in its device information frame.
    assert device.serial_number
    assert "5061234567A".startswith(device.serial_number)
    # A second discovery of the same BMS is not offered again.
    jk.advertise()
    await hass.async_block_till_done()
    assert not hass.config_entries.flow.async_progress_by_handler(DOMAIN)

    await go_out_of_range(hass, jk)
    assert state(hass, f"{ENTITY}_state_of_charge") == STATE_UNAVAILABLE
    assert "stopped answering: out of Bluetooth range" in caplog.text

    jk.peer.refuse_connections = False
    jk.peer.battery.soc = 65.0
    jk.advertise()  # heard again: read at once, not at the next interval
    await wait_for(hass, lambda: number(hass, f"{ENTITY}_state_of_charge") == 65)
    assert "is back" in caplog.text
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert jk.peer.connections == 0


async def test_discovery_of_something_else_aborts(hass: HomeAssistant) -> None:
    stranger = SimulatedBms("none", "Kettle-01", ("0000ffe0-0000-1000-8000-00805f9b34fb",), {})
    heard = radio(hass, JkBlePeer(), "C0:DE:B5:00:00:09", stranger)
    try:
        result = await hass.config_entries.flow.async_init(
            DOMAIN,
            context={"source": "bluetooth"},
            data=bluetooth.async_last_service_info(hass, "C0:DE:B5:00:00:09", connectable=True),
        )
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "not_supported"
    finally:
        heard.close()


async def test_user_step_lists_heard_bmses_and_cannot_connect(hass: HomeAssistant) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "ble_bms"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "no_devices_found"
    heard = radio(hass, JkBlePeer(battery=frozen_pack()))
    try:
        # Discovery started its own flow; the list still offers the BMS (not configured yet).
        result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"next_step_id": "ble_bms"}
        )
        assert result["step_id"] == "ble_bms"
        options = select_options(result, "address")
        assert [option["value"] for option in options] == [ADDRESS]
        assert "Jikong" in options[0]["label"] or "JK" in options[0]["label"]
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"address": ADDRESS}
        )
        assert result["step_id"] == "ble_bms_confirm"
        heard.peer.refuse_connections = True
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
        assert result["errors"] == {"base": "cannot_connect"}
        heard.peer.refuse_connections = False
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
        assert result["type"] is FlowResultType.CREATE_ENTRY
        await hass.async_block_till_done()
        entry = hass.config_entries.async_entries(DOMAIN)[0]
        # Configured BMSes are no longer listed.
        result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {"next_step_id": "ble_bms"}
        )
        assert result["reason"] == "no_devices_found"
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        heard.close()


# --- runtime ----------------------------------------------------------------------------------


async def test_failing_updates_make_unavailable_and_recover(
    hass: HomeAssistant, jk: Radio, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An update that cannot connect gives up after this long (30 s in use).
    monkeypatch.setattr(ble_runtime, "UPDATE_TIMEOUT", 3.0)
    entry = entry_for(options={"poll_interval": 2})
    runtime = await setup(hass, entry)
    assert number(hass, f"{ENTITY}_state_of_charge") == 64
    jk.peer.refuse_connections = True
    jk.peer.drop_link()
    await wait_for(hass, lambda: state(hass, f"{ENTITY}_state_of_charge") == STATE_UNAVAILABLE)
    assert runtime.data.failures >= 1
    jk.peer.refuse_connections = False
    jk.peer.battery.soc = 66.0
    await wait_for(hass, lambda: number(hass, f"{ENTITY}_state_of_charge") == 66)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_not_in_range_at_setup_retries(hass: HomeAssistant) -> None:
    entry = entry_for()
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.SETUP_RETRY
    heard = radio(hass, JkBlePeer(battery=frozen_pack(), refuse_connections=True))
    try:
        await hass.config_entries.async_reload(entry.entry_id)
        assert entry_state(entry) is ConfigEntryState.SETUP_RETRY
    finally:
        heard.close()


async def test_options_apply_live_and_release_reloads(hass: HomeAssistant, jk: Radio) -> None:
    entry = entry_for()
    runtime = await setup(hass, entry)
    assert runtime.keep_connection
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["step_id"] == "ble_bms_options"
    values = {"poll_interval": 3, "release_connection": False, "bulk_current": 50}
    result = await hass.config_entries.options.async_configure(result["flow_id"], values)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    assert entry.runtime_data is runtime  # applied without a reload
    assert runtime.poll_interval == 3
    assert runtime.controller.settings.bulk_current == 50
    # Releasing the connection between updates needs a new link: reload.
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**values, "release_connection": True}
    )
    await hass.async_block_till_done()
    reloaded = entry.runtime_data
    assert reloaded is not runtime
    assert isinstance(reloaded, BleBmsRuntime)
    assert not reloaded.keep_connection
    await wait_for(hass, lambda: jk.peer.connections == 0)
    before = jk.peer.connect_count
    reloaded._wake.set()
    await wait_for(hass, lambda: jk.peer.connect_count > before and jk.peer.connections == 0)
    # A setting outside its safe bounds is refused.
    result = await hass.config_entries.options.async_init(entry.entry_id)
    with pytest.raises(InvalidData):
        await hass.config_entries.options.async_configure(
            result["flow_id"], {**values, "bulk_current": 100000}
        )
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_reconfigure_while_the_entry_holds_the_connection(
    hass: HomeAssistant, jk: Radio
) -> None:
    """The BMS takes one connection: the running entry lets go of it for the flow's test."""
    entry = entry_for(cells=8, capacity_ah=100.0)
    await setup(hass, entry)
    assert jk.peer.max_connections == 1
    assert jk.peer.connections == 1  # the entry holds the connection between updates
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_RECONFIGURE, "entry_id": entry.entry_id}
    )
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data["cells"] == 16
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_reconfigure_reads_the_same_bms_again(hass: HomeAssistant, jk: Radio) -> None:
    entry = entry_for(cells=8, capacity_ah=100.0)
    await setup(hass, entry)
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_RECONFIGURE, "entry_id": entry.entry_id}
    )
    assert result["step_id"] == "ble_bms_reconfigure"
    jk.peer.refuse_connections = True
    jk.peer.drop_link()
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["errors"] == {"base": "cannot_connect"}
    jk.peer.refuse_connections = False
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data["cells"] == 16
    assert entry.data["capacity_ah"] == pytest.approx(280.0)
    await hass.async_block_till_done()
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_reconfigure_of_a_bms_no_longer_heard_and_of_a_simulated_one(
    hass: HomeAssistant,
) -> None:
    entry = entry_for("C0:DE:B5:00:00:07")
    entry.add_to_hass(hass)
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_RECONFIGURE, "entry_id": entry.entry_id}
    )
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["errors"] == {"base": "cannot_connect"}
    simulated = entry_for("C0:DE:B5:00:00:08", simulated=True)
    simulated.add_to_hass(hass)
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_RECONFIGURE, "entry_id": simulated.entry_id}
    )
    assert result["reason"] == "simulated_fixed"


async def test_diagnostics_redact_the_address(
    hass: HomeAssistant, jk: Radio, hass_client: ClientSessionGenerator
) -> None:
    entry = entry_for()
    await setup(hass, entry)
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    assert ADDRESS not in str(diagnostics)
    assert diagnostics["device"]["family"] == "jikong_bms"
    assert diagnostics["device"]["polls"] >= 1
    assert "5061234567A" not in str(diagnostics)
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_library_is_pointed_at_home_assistants_client(hass: HomeAssistant) -> None:
    """aiobmsble imported before HA's Bluetooth set up holds plain bleak: it is moved."""
    from aiobmsble import basebms  # type: ignore[import-untyped]
    import bleak
    from habluetooth.usage import ORIGINAL_BLEAK_CLIENT

    assert bleak.BleakClient is not ORIGINAL_BLEAK_CLIENT  # HA's wrapper is installed
    basebms.BleakClient = ORIGINAL_BLEAK_CLIENT
    assert use_home_assistant_bleak_client() is True
    assert basebms.BleakClient is bleak.BleakClient
    assert use_home_assistant_bleak_client() is False


# --- simulation and the Sunny Island ----------------------------------------------------------


async def test_simulated_jk_through_home_assistants_bluetooth(hass: HomeAssistant) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "simulated"}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"simulated_device": "ble_bms_jk"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    entry = hass.config_entries.async_get_entry(result["result"].entry_id)
    assert entry is not None
    assert entry.state is ConfigEntryState.LOADED
    runtime = entry.runtime_data
    assert isinstance(runtime, BleBmsRuntime)
    assert runtime.scanner is not None
    assert runtime.peer is not None
    assert runtime.peer.connections == 1
    snapshot = runtime.snapshot
    assert snapshot is not None
    assert snapshot.cell_voltages
    # Home Assistant reaches the simulated BMS only through the simulated proxy.
    assert bluetooth.async_scanner_count(hass, connectable=True) >= 1
    address = entry.data["address"]
    assert bluetooth.async_ble_device_from_address(hass, address, connectable=True) is not None
    assert await hass.config_entries.async_remove(entry.entry_id)
    await hass.async_block_till_done()
    assert runtime.peer.connections == 0


@pytest.mark.parametrize("choice", ["ble_bms_jbd", "ble_bms_daly"])
async def test_other_simulated_bmses(hass: HomeAssistant, choice: str) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "simulated"}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"simulated_device": choice}
    )
    await hass.async_block_till_done()
    entry = hass.config_entries.async_get_entry(result["result"].entry_id)
    assert entry is not None
    assert entry.state is ConfigEntryState.LOADED
    assert isinstance(entry.runtime_data, BleBmsRuntime)
    assert entry.runtime_data.snapshot is not None
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_bluetooth_bms_feeds_the_sunny_island(hass: HomeAssistant, jk: Radio) -> None:
    bms = entry_for()
    await setup(hass, bms)
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "simulated"}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"simulated_device": "sunny_island"}
    )
    assert result["step_id"] == "sunny_island_battery"
    sources = select_options(result, "source")
    assert bms.entry_id in [source["value"] for source in sources]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {"chemistry": "lifepo4", "cells": 16, "capacity_ah": 280, "source": bms.entry_id},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    island = hass.config_entries.async_get_entry(result["result"].entry_id)
    assert island is not None
    runtime: Any = island.runtime_data
    sim = runtime.simulator

    def accepted(key: str) -> float | None:
        value = sim.accepted.get(key)
        return None if value is None else float(value)

    await wait_for(hass, lambda: accepted("soc") == pytest.approx(64.0))
    assert accepted("charge_current_limit") is not None
    assert sim.fault is None
    # The pack's own cells decide: one cell over its cut-off takes the charge current to 0.
    jk.peer.battery.cell_voltages = [*CELLS[:-1], 3.70]
    ble_runtime_of: Any = bms.runtime_data
    ble_runtime_of._wake.set()
    await wait_for(hass, lambda: (accepted("charge_current_limit") or 1.0) <= 1.0)
    assert await hass.config_entries.async_unload(island.entry_id)
    assert await hass.config_entries.async_unload(bms.entry_id)


def test_simulated_table_names_library_families() -> None:
    assert {bms.family for bms in ble_runtime.SIMULATED_BMSES.values()} == {
        "jikong_bms",
        "jbd_bms",
        "daly_bms",
    }


# --- charge/discharge switches ----------------------------------------------------------------

FET_PEERS: dict[str, Callable[[BleBatteryState], BlePeer]] = {
    "jk": lambda battery: JkBlePeer(battery=battery),
    "jbd": lambda battery: JbdBlePeer(battery=battery),
    "daly": lambda battery: DalyBlePeer(battery=battery),
}


def switches(hass: HomeAssistant, entry: MockConfigEntry) -> dict[str, str]:
    """The entry's switch entities by description key."""
    registry = er.async_get(hass)
    return {
        item.unique_id.rsplit("_", 2)[-2] + "_fet": item.entity_id
        for item in er.async_entries_for_config_entry(registry, entry.entry_id)
        if item.domain == "switch"
    }


def fet(peer: BlePeer, which: str) -> bool:
    """The pack's FET, read afresh (keeps mypy from carrying an earlier assert forward)."""
    return bool(peer.battery.charge_fet if which == "charge" else peer.battery.discharge_fet)


async def switch(hass: HomeAssistant, entity_id: str, on: bool) -> None:
    service = "turn_on" if on else "turn_off"
    await hass.services.async_call("switch", service, {"entity_id": entity_id}, blocking=True)


@pytest.mark.parametrize("kind", ["jk", "jbd"])
async def test_fet_switches_are_written_and_read_back(hass: HomeAssistant, kind: str) -> None:
    address = "C0:DE:B5:00:0F:01" if kind == "jk" else "C0:DE:B5:00:0F:02"
    bms = SIMULATED_BMSES[kind]
    peer = FET_PEERS[kind](frozen_pack())
    heard = radio(hass, peer, address, bms)
    try:
        entry = entry_for(address, family=bms.family)
        runtime = await setup(hass, entry)
        found = switches(hass, entry)
        assert sorted(found) == ["charge_fet", "discharge_fet"]
        charge, discharge = found["charge_fet"], found["discharge_fet"]
        assert (state(hass, charge), state(hass, discharge)) == ("on", "on")

        # Off: written through the library's connection, read back, shown at once.
        await switch(hass, charge, False)
        assert peer.battery.charge_fet is False
        assert (state(hass, charge), state(hass, discharge)) == ("off", "on")
        assert runtime.data.reading is not None
        assert runtime.data.reading.charge_fet is False
        assert peer.connections == 1

        # A protection the BMS reports: switching on is refused before anything is written.
        peer.battery.protections.add("cell_overvoltage")
        peer.battery.problem_code = 0x0001
        runtime._wake.set()
        await wait_for(
            hass, lambda: bool(runtime.data.reading and runtime.data.reading.protections)
        )
        writes = len(peer.writes)
        with pytest.raises(HomeAssistantError) as refused:
            await switch(hass, charge, True)
        assert refused.value.translation_key == "fet_refused_fault"
        assert len(peer.writes) == writes

        # A protection holding the FET that the BMS does not report: the read-back tells.
        peer.battery.problem_code = 0
        runtime._wake.set()
        await wait_for(
            hass, lambda: bool(runtime.data.reading and not runtime.data.reading.protections)
        )
        with pytest.raises(HomeAssistantError) as rejected:
            await switch(hass, charge, True)
        assert rejected.value.translation_key == "fet_write_failed"
        assert peer.battery.charge_fet is False

        # Cleared: on again.
        peer.battery.protections.clear()
        await switch(hass, charge, True)
        assert fet(peer, "charge") is True
        assert state(hass, charge) == "on"
        await switch(hass, discharge, False)
        assert (state(hass, charge), state(hass, discharge)) == ("on", "off")
        assert peer.battery.discharge_fet is False
        assert await hass.config_entries.async_unload(entry.entry_id)
        assert peer.connections == 0
    finally:
        heard.close()


async def test_a_daly_shows_no_switch(hass: HomeAssistant) -> None:
    address = "C0:DE:B5:00:0F:03"
    bms = SIMULATED_BMSES["daly"]
    peer = FET_PEERS["daly"](frozen_pack())
    heard = radio(hass, peer, address, bms)
    try:
        entry = entry_for(address, family=bms.family)
        runtime = await setup(hass, entry)
        assert runtime.data.reading is not None
        assert runtime.data.reading.charge_fet is True  # reported, but not switchable
        assert switches(hass, entry) == {}
        assert hass.states.async_entity_ids("switch") == []
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        heard.close()
